"""``python -m apex_grpc_server``: the same as ``apex-grpc serve``."""

from __future__ import annotations

import sys

from apex_grpc_server.cli import main

if __name__ == "__main__":
    sys.exit(main())
