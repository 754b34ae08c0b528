"""Generated protobuf and gRPC modules of apex-grpc (do not edit; see protos/)."""
