"""The openai engine: forward to any OpenAI-compatible ``/v1/chat/completions`` endpoint.

vLLM, the llama.cpp server, Ollama or a hosted API serve the completions;
this server adds the Apex API, auth, storage and retrieval in front. Answers
stream through as server-sent events arrive, and upstream failures map to
the gRPC status a client can act on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import grpc

from apex_grpc_server._config import DEFAULT_MAX_NEW_TOKENS, ServerConfig
from apex_grpc_server._engines.base import (
    ChatEngine,
    ChatRequest,
    Delta,
    EngineUnavailable,
    Finish,
    Usage,
)
from apex_grpc_server._status import PUSHBACK, MetadataPairs, RpcAbort

HTTP_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
"""Upstream HTTP status to gRPC status; other 4xx are UNKNOWN, every 5xx UNAVAILABLE."""


def grpc_status_for_http(status: int) -> grpc.StatusCode:
    """The gRPC status for an upstream HTTP error status."""
    if status >= 500:
        return grpc.StatusCode.UNAVAILABLE
    return HTTP_STATUS.get(status, grpc.StatusCode.UNKNOWN)


def endpoint(base_url: str, path: str) -> str:
    """``http://host:8000`` or ``http://host:8000/v1`` plus ``/chat/completions``."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + path


class OpenAIEngine(ChatEngine):
    """Chat completions from an OpenAI-compatible HTTP server, streamed (SSE).

    The model is ``model`` if configured, else the request's model, else the
    first model the upstream lists at ``/v1/models``. max_new_tokens becomes
    ``max_tokens`` (clamped to ``max_new_tokens``); top_k is sent only when
    set (OpenAI itself rejects it); usage is what the upstream reports.

    A continuation (``ChatRequest.continue_final``) is sent as vLLM's
    ``continue_final_message: true`` with ``add_generation_prompt: false``
    (documented in vLLM's OpenAI-compatible server, "Extra Parameters for Chat
    API"; llama.cpp's server accepts the same pair, and continues a final
    assistant message by default), so the upstream streams only what follows the
    prefix. With ``continue_answers`` off (an upstream that cannot, such as
    OpenAI's own API) a continuation is FAILED_PRECONDITION: this server's
    configuration cannot serve it, so trying it again here is pointless, while
    the method itself is implemented (not UNIMPLEMENTED). The upstream counts
    the prefix as prompt tokens: usage and max_tokens are its, not adjusted.
    """

    kind = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float = 120.0,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        continue_answers: bool = True,
    ) -> None:
        self.base_url = base_url
        self.continue_answers = continue_answers
        self._api_key = api_key
        self._model = model
        self.timeout_s = timeout_s
        self.max_new_tokens = max_new_tokens
        self._client: Any = None

    @classmethod
    def from_config(cls, config: ServerConfig) -> OpenAIEngine:
        """The engine for ``config`` (openai_base_url is required)."""
        try:
            import httpx  # noqa: F401
        except ImportError:
            raise EngineUnavailable(
                "the openai engine needs httpx: pip install 'apex-grpc[server]'"
            ) from None
        if not config.openai_base_url:
            raise EngineUnavailable("the openai engine needs --openai-base-url")
        return cls(
            config.openai_base_url,
            api_key=config.openai_api_key,
            model=config.openai_model,
            timeout_s=config.openai_timeout_s,
            max_new_tokens=config.max_new_tokens,
            continue_answers=config.openai_continue,
        )

    @property
    def model(self) -> str:
        """The configured (or discovered) upstream model."""
        return self._model or "openai-compatible"

    async def start(self) -> None:
        """Open the HTTP connection pool (the upstream may still be down: calls say so)."""
        import httpx

        headers = {"accept": "text/event-stream"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)),
            headers=headers,
        )

    async def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """POST the chat to the upstream and yield its streamed deltas."""
        import httpx

        if self._client is None:
            raise RpcAbort(grpc.StatusCode.UNAVAILABLE, "openai engine: not started")
        if request.continue_final and not self.continue_answers:
            raise RpcAbort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "openai engine: this server's upstream cannot continue an answer"
                " (--no-openai-continue), so a resumed stream cannot go on here",
            )
        model = self._model or request.model or await self._discover_model()
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": request.temperature if request.do_sample else 0.0,
            "top_p": request.top_p,
            "max_tokens": min(request.max_new_tokens or self.max_new_tokens, self.max_new_tokens),
        }
        if request.top_k:
            body["top_k"] = request.top_k
        if request.seed is not None:
            body["seed"] = request.seed
        if request.json_format:
            body["response_format"] = {"type": "json_object"}
        if request.continue_final:  # the final assistant message is left open
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        usage: Usage | None = None
        finish = "stop"
        try:
            async with self._client.stream(
                "POST", endpoint(self.base_url, "/chat/completions"), json=body
            ) as response:
                if response.status_code >= 400:
                    raise _http_error(response.status_code, await response.aread(), response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, "event:" lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = _parse_event(data)
                    if event.get("usage"):
                        usage = _usage(event["usage"])
                    for choice in event.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            yield Delta(content)
                        if choice.get("finish_reason"):
                            finish = str(choice["finish_reason"])
        except httpx.TimeoutException as error:
            raise RpcAbort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"upstream timed out after {self.timeout_s:g} s ({type(error).__name__})",
            ) from None
        except httpx.TransportError as error:
            raise RpcAbort(
                grpc.StatusCode.UNAVAILABLE,
                f"upstream unreachable: {type(error).__name__}: {error}",
            ) from None
        yield Delta("", Finish(finish, usage))

    async def _discover_model(self) -> str:
        import httpx

        try:
            response = await self._client.get(endpoint(self.base_url, "/models"))
        except httpx.TimeoutException:
            raise RpcAbort(grpc.StatusCode.DEADLINE_EXCEEDED, "upstream timed out") from None
        except httpx.TransportError as error:
            raise RpcAbort(
                grpc.StatusCode.UNAVAILABLE,
                f"upstream unreachable: {type(error).__name__}: {error}",
            ) from None
        if response.status_code >= 400:
            raise _http_error(response.status_code, response.content, response)
        try:
            models = [str(entry["id"]) for entry in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            models = []
        if not models:
            raise RpcAbort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "upstream lists no models at /v1/models: configure one with --openai-model",
            )
        self._model = models[0]
        return self._model


def _parse_event(data: str) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except ValueError:
        raise RpcAbort(
            grpc.StatusCode.UNAVAILABLE, f"upstream sent an invalid event: {data[:200]!r}"
        ) from None
    if not isinstance(event, dict):
        raise RpcAbort(
            grpc.StatusCode.UNAVAILABLE, f"upstream sent an invalid event: {data[:200]!r}"
        )
    if event.get("error"):
        raise RpcAbort(
            grpc.StatusCode.UNAVAILABLE, f"upstream failed mid-stream: {_error_text(event)}"
        )
    return event


def _usage(value: Any) -> Usage | None:
    try:
        return Usage(int(value["prompt_tokens"]), int(value["completion_tokens"]))
    except (KeyError, TypeError, ValueError):
        return None


def _error_text(payload: Any) -> str:
    """The human part of an OpenAI-style error body."""
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail", payload.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)[:500]
    return str(payload)[:500]


def _http_error(status: int, body: bytes, response: Any) -> RpcAbort:
    text = body.decode("utf-8", "replace")
    try:
        detail = _error_text(json.loads(text))
    except ValueError:
        detail = text.strip()[:500] or "(no body)"
    trailing: MetadataPairs = ()
    retry_after = response.headers.get("retry-after", "")
    if status == 429 and retry_after.isdigit():
        trailing = ((PUSHBACK, str(int(retry_after) * 1000)),)
    return RpcAbort(
        grpc_status_for_http(status), f"upstream returned HTTP {status}: {detail}", trailing
    )
