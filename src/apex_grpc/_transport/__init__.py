"""Transports: channels and the loops that run calls, for grpcio (`sync`) and grpc.aio (`aio`)."""
