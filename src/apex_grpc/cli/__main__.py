"""``python -m apex_grpc.cli``: the same as ``apex-grpc``."""

from __future__ import annotations

import sys

from apex_grpc.cli import main

if __name__ == "__main__":
    sys.exit(main())
