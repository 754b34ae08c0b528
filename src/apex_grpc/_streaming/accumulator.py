"""Folding a chat stream's chunks into a ChatCompletionResponse, with no I/O.

`ChatCompletionAccumulator.add` is on the streaming hot path, so it only
keeps a reference; chunks are folded in batches (and on demand), which
keeps memory bounded for long streams without per-chunk work.
"""

from __future__ import annotations

from apex_grpc_proto.apex.v1 import apex_pb2 as pb

_FOLD_EVERY = 256


class _ChoiceState:
    __slots__ = ("finish_reason", "parts", "refusal", "role")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.refusal: list[str] = []
        self.role = ""
        self.finish_reason = ""


class ChatCompletionAccumulator:
    """Assembles the chunks of one ChatCompletionStream into a final response."""

    __slots__ = ("_choices", "_folded", "_pending", "created", "id", "model", "usage")

    def __init__(self) -> None:
        self._pending: list[pb.ChatCompletionChunkResponse] = []
        self._choices: dict[int, _ChoiceState] = {}
        self._folded = 0
        self.id = ""
        self.model = ""
        self.created = 0
        self.usage: pb.CompletionUsage | None = None

    def add(self, chunk: pb.ChatCompletionChunkResponse) -> None:
        """Record one chunk (cheap: the work happens in batches)."""
        self._pending.append(chunk)
        if len(self._pending) >= _FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        pending, self._pending = self._pending, []
        self._folded += len(pending)
        for chunk in pending:
            if chunk.id and not self.id:
                self.id = chunk.id
            if chunk.model and not self.model:
                self.model = chunk.model
            if chunk.created and not self.created:
                self.created = chunk.created
            if chunk.HasField("usage"):
                self.usage = chunk.usage
            for choice in chunk.choices:
                state = self._choices.get(choice.index)
                if state is None:
                    state = self._choices[choice.index] = _ChoiceState()
                delta = choice.delta
                if delta.content:
                    state.parts.append(delta.content)
                if delta.refusal:
                    state.refusal.append(delta.refusal)
                if delta.role and not state.role:
                    state.role = delta.role
                if choice.finish_reason:
                    state.finish_reason = choice.finish_reason

    @property
    def chunk_count(self) -> int:
        """How many chunks were added."""
        return self._folded + len(self._pending)

    def text(self, index: int = 0) -> str:
        """The content received so far for choice `index`."""
        self._fold()
        state = self._choices.get(index)
        return "".join(state.parts) if state else ""

    @property
    def finish_reason(self) -> str:
        """Why choice 0 stopped ("" while it has not)."""
        self._fold()
        state = self._choices.get(0)
        return state.finish_reason if state else ""

    def response(self) -> pb.ChatCompletionResponse:
        """The ChatCompletionResponse these chunks add up to."""
        self._fold()
        response = pb.ChatCompletionResponse(
            id=self.id, created=self.created, model=self.model, object="chat.completion"
        )
        for index in sorted(self._choices):
            state = self._choices[index]
            choice = response.choices.add(index=index, finish_reason=state.finish_reason)
            choice.message.role = state.role or "assistant"
            choice.message.content = "".join(state.parts)
            if state.refusal:
                choice.message.refusal = "".join(state.refusal)
        if self.usage is not None:
            response.usage.CopyFrom(self.usage)
        return response
