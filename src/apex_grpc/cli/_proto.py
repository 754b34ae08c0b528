"""``apex-grpc proto --out DIR``: the apex.v1 contract, written out from the installed package.

The wheel carries ``apex/v1/apex.proto`` and the well-known types it imports
(``google/protobuf/empty.proto``, ...) under ``apex_grpc_proto/protos`` (the
codegen step copies them; its drift check keeps them current). Writing that
tree to DIR lets ``protoc -I DIR`` or ``buf`` compile the contract from DIR
alone, in any language, with no network and no server extra.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from apex_grpc.cli._errors import EXIT_ERROR
from apex_grpc.cli._terminal import Terminal

PROTO_PACKAGE = "apex_grpc_proto"
PROTO_TREE = "protos"
CONTRACT = "apex/v1/apex.proto"
"""The contract's path inside the tree (the one to pass to protoc)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags; it runs without a client (``standalone``)."""
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        required=True,
        help="folder to write the tree into (created if missing; files of the"
        " same name are replaced)",
    )
    parser.set_defaults(standalone=run)


def proto_files() -> dict[str, bytes]:
    """Every shipped .proto file by its import path (``apex/v1/apex.proto``, ...)."""
    return dict(_walk(files(PROTO_PACKAGE) / PROTO_TREE, ""))


def _walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, bytes]]:
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            yield from _walk(entry, f"{name}/")
        elif entry.name.endswith(".proto"):
            yield name, entry.read_bytes()


def run(args: argparse.Namespace, term: Terminal) -> int:
    """Write the tree under ``args.out``; print each file written."""
    out: Path = args.out
    tree = proto_files()
    if CONTRACT not in tree:
        term.error(
            f"error: this installation has no {CONTRACT} under {PROTO_PACKAGE}/{PROTO_TREE};"
            " reinstall apex-grpc"
        )
        return EXIT_ERROR
    try:
        for name, content in tree.items():
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            term.line(str(target))
    except OSError as error:
        term.error(f"error: cannot write the .proto files under {out}: {error}")
        return EXIT_ERROR
    term.note(f"compile with: protoc -I {out} --LANG_out=OUT {CONTRACT}")
    return 0
