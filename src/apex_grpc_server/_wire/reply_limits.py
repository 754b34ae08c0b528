"""Nothing is stored that a read cannot return: the size checks of writes (issue #19, item 3).

Every reply must fit in one message of the server's ``--max-message-bytes``
(grpc refuses to send a larger one, on every read, for good). A write that
would make a listing too large to send is refused inside its transaction
(``ListingLimit``, the ``check=`` of the store's writes); a deep-research job,
whose answer arrives piece by piece with no caller to refuse, keeps its own
reply within the limit as it writes its chunks (``JobReplyBudget``) and is
checked like any other write when it stores its answer.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import Message as ProtoMessage

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._status import RpcAbort
from apex_grpc_server._store import Listings
from apex_grpc_server._wire import convert

JOB_ERROR_CHARS = 1200
"""The longest error a failed deep-research job stores (cut past it): a failure is written
without a listing check, so what it adds to the job's reply and entry must stay small."""
_JOB_ERROR_ROOM = 4 * JOB_ERROR_CHARS + 64  # UTF-8 bytes of the longest error, and its tags
_JOB_HEADER_ROOM = 64  # timestamps and status of another length than the ones measured


class ListingTooLarge(RpcAbort):
    """INVALID_ARGUMENT: after the write, ``what`` would take ``size`` bytes, past ``limit``."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.what = what
        self.size = size
        self.limit = limit
        super().__init__(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"request: after this write {what} would take {size} bytes, more than"
            f" the server's {limit}-byte message limit (--max-message-bytes)",
        )


class ListingLimit:
    """The ``Check`` (``_store.interface``) of every write that stores a completion.

    Every listing (a chat's completions; the user's deep-research entries across
    chats) must fit in one message; a write that a read could no longer carry
    would leave its rows stored but unreadable, so it raises ``ListingTooLarge``
    and its transaction is undone.
    """

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes

    def __call__(self, listings: Listings) -> None:
        """Raise ``ListingTooLarge`` when a listing's reply would not fit in one message."""
        replies: list[tuple[str, ProtoMessage]] = [
            (
                "the chat's completions (GetStoredChatCompletions)",
                pb.GetStoredChatCompletionsResponse(
                    chat_completions=[convert.stored_completion(r) for r in listings.chat]
                ),
            )
        ]
        if listings.deep_research is not None:
            replies.append(
                (
                    "your deep-research entries (GetCompletionsWithDeepResearcherEntry)",
                    pb.GetCompletionsWithDeepResearcherEntryResponse(
                        completions=[convert.parsed_completion(r) for r in listings.deep_research]
                    ),
                )
            )
        for what, reply in replies:
            size = reply.ByteSize()
            if size > self.max_message_bytes:
                raise ListingTooLarge(what, size, self.max_message_bytes)


class JobReplyBudget:
    """What is left of a job's GetDeepResearcherJob reply for its result chunks.

    The reply carries every chunk stored so far; a job whose answer would not fit
    fails instead (``add`` raises), keeping the chunks before it readable. Room
    is kept for the longest error (``JOB_ERROR_CHARS``) the job may end with.
    """

    def __init__(self, job_id: str, stamp_us: int, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        header = pb.GetDeepResearcherJobResponse(
            job_id=job_id,
            status="completed",
            created_at=convert.rfc3339(stamp_us),
            updated_at=convert.rfc3339(stamp_us),
        )
        self.size = header.ByteSize() + _JOB_HEADER_ROOM + _JOB_ERROR_ROOM

    def add(self, seq_id: int, chunk: str) -> None:
        """Count one more chunk; RESOURCE_EXHAUSTED (nothing counted) if it would not fit."""
        entry = pb.DeepResearcherResultChunk(seq_id=seq_id, chunk=chunk)
        grows = pb.GetDeepResearcherJobResponse(result=[entry]).ByteSize()
        if self.size + grows > self.max_message_bytes:
            raise RpcAbort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"result: the answer is too large for one GetDeepResearcherJob reply under the"
                f" server's {self.max_message_bytes}-byte message limit (--max-message-bytes);"
                f" the {seq_id} chunk(s) before it are kept",
            )
        self.size += grows


def answer_too_large(refused: ListingTooLarge) -> RpcAbort:
    """Why a job's answer was not stored: it would have made ``refused.what`` unreadable."""
    return RpcAbort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"result: the answer was not stored: with it {refused.what} would take"
        f" {refused.size} bytes, more than the server's {refused.limit}-byte message limit"
        " (--max-message-bytes); its chunks are kept in this job's result",
    )


def job_error(abort: RpcAbort) -> str:
    """The error a failed job stores for ``abort``, cut to ``JOB_ERROR_CHARS``."""
    return cut_job_error(f"{abort.code.name}: {abort.details}")


def cut_job_error(text: str) -> str:
    """``text`` cut to ``JOB_ERROR_CHARS`` characters (with a note of its length past them)."""
    if len(text) <= JOB_ERROR_CHARS:
        return text
    suffix = f"... ({len(text)} characters)"
    return text[: JOB_ERROR_CHARS - len(suffix)] + suffix
