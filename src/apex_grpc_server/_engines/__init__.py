"""Chat engines behind one interface; ``create_engine`` picks one from the config."""

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
    """The engine ``config.engine`` names (not started; call ``start()``)."""
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
