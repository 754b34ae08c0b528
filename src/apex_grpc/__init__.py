"""apex-grpc: the typed, fast gRPC SDK for Apex (Bittensor subnet 1)."""

from apex_grpc._version import __version__

__all__ = ["__version__"]
