"""The ``apex-grpc`` command line: chat, search, research, chats, serve and index.

``apex-grpc --help`` lists the commands; ``main(argv)`` runs one and returns
the exit status. Output is plain text when stdout is not a terminal, with
colours and progress (the ``cli`` extra, rich) when it is.
"""

from __future__ import annotations

from apex_grpc.cli._main import main

__all__ = ["main"]
