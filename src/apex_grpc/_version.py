"""The apex-grpc version, sent to servers as `x-client-version`."""

__version__ = "0.1.0"
