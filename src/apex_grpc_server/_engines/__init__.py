"""Chat engines behind one interface; ``create_engine`` picks one from the config.

- ``base.py``: the interface (`ChatEngine`, `ChatRequest`, `Delta`) and shared helpers.
- ``echo.py``, ``llama.py`` (the local model), ``openai.py``: the engines; ``model.py``
  finds the default GGUF.
- ``process.py``: `ProcessEngine`, any engine in a child process the server supervises
  and restarts (the local engine's default); ``child.py`` is that process's entry point
  and ``pipe.py`` what the two say to each other.
"""

from __future__ import annotations

from apex_grpc_server._config import ServerConfig
from apex_grpc_server._engines.base import (
    ChatEngine,
    ChatRequest,
    Delta,
    EngineUnavailable,
    Finish,
    Message,
    Usage,
)
from apex_grpc_server._engines.echo import EchoEngine


def create_engine(config: ServerConfig) -> ChatEngine:
    """The engine ``config.engine`` names (not started; call ``start()``).

    With ``config.engine_in_child`` it runs in a supervised child process
    (``process.ProcessEngine``); its settings are checked here all the same.
    """
    engine = _engine_here(config)
    if config.engine_in_child:
        from apex_grpc_server._engines.process import ProcessEngine

        return ProcessEngine(engine, config)
    return engine


def _engine_here(config: ServerConfig) -> ChatEngine:
    """The engine ``config.engine`` names, to run in this process."""
    if config.engine == "echo":
        return EchoEngine(
            config.echo_chunks,
            config.echo_chunk_size,
            config.echo_delay_s,
            max_concurrency=config.echo_concurrency,
            context=config.echo_context,
        )
    if config.engine == "local":
        from apex_grpc_server._engines.llama import LlamaEngine

        return LlamaEngine.from_config(config)
    if config.engine == "openai":
        from apex_grpc_server._engines.openai import OpenAIEngine

        return OpenAIEngine.from_config(config)
    raise ValueError(f"engine: unknown engine {config.engine!r}")


__all__ = [
    "ChatEngine",
    "ChatRequest",
    "Delta",
    "EchoEngine",
    "EngineUnavailable",
    "Finish",
    "Message",
    "Usage",
    "create_engine",
]
