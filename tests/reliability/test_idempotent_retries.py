"""kill -9 during keyed writes: retries of a write never write it twice (issue #19, item 2).

8 writer threads create chats through a raw stub, each logical create with
one idempotency key that every retry repeats; the server (a child process)
is killed with SIGKILL 10 times mid-stream and restarted on the same data
directory. A create the server committed but never answered is retried, and
without the key it would be written again: a duplicate, or a "ghost" the
user never got the id of. At the end the chats listed must be exactly the
acknowledged ones, one per logical create.
"""

from __future__ import annotations

import collections
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_proto.apex.v1 import apex_pb2_grpc as pb_grpc

from ._process import KEY

ROUNDS = 10
WRITERS = 8
AUTH = ("authorization", f"Bearer {KEY}")
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,  # a stream reset by the dying server
    grpc.StatusCode.UNKNOWN,
}
# Reconnect quickly after each restart (grpc's default backoff grows to minutes).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


class Writers:
    """Writer threads creating chats, retrying each create with its key until it is answered."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acknowledged: dict[str, str] = {}  # prompt -> the chat id its create answered
        self.attempts = 0

    def run(self, number: int) -> None:
        with grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.ApexServiceStub(channel)
            count = 0
            while not self.stop.is_set():
                prompt = f"writer{number} call{count}"
                chat_id = self.create(stub, prompt, uuid.uuid4().hex)
                with self.lock:
                    self.acknowledged[prompt] = chat_id
                count += 1

    def create(self, stub: pb_grpc.ApexServiceStub, prompt: str, key: str) -> str:
        request = pb.CreateChatAndCompletionRequest(user_prompt=prompt)
        deadline = time.monotonic() + 60
        while True:
            with self.lock:
                self.attempts += 1
            try:
                answer = stub.CreateChatAndCompletion(
                    request,
                    metadata=(AUTH, ("idempotency-key", key)),
                    timeout=5,
                    wait_for_ready=True,
                )
                return str(answer.parsed_chat.id)
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


def test_kill_9_rounds_during_keyed_writes_leave_no_duplicate(server_process: Any) -> None:
    server = server_process()
    writers = Writers(server.target)
    with ThreadPoolExecutor(WRITERS) as pool:
        running = [pool.submit(writers.run, n) for n in range(WRITERS)]
        try:
            for _ in range(ROUNDS):
                time.sleep(random.uniform(0.3, 0.8))
                server.kill()
                server.start()  # the same port and data directory
            time.sleep(0.5)
        finally:
            writers.stop.set()
        for future in running:
            future.result()
    with grpc.insecure_channel(server.target) as channel:
        listed = pb_grpc.ApexServiceStub(channel).GetChatSessions(
            pb.GetChatSessionsRequest(), metadata=(AUTH,), timeout=30
        )
    titles = collections.Counter(chat.title for chat in listed.chat_sessions)
    duplicates = sum(count - 1 for count in titles.values())
    ghosts = {chat.id for chat in listed.chat_sessions} - set(writers.acknowledged.values())
    summary = (
        f"{ROUNDS} kill -9 rounds, {len(writers.acknowledged)} acknowledged creates in "
        f"{writers.attempts} attempts: {duplicates} duplicates, {len(ghosts)} unacknowledged chats"
    )
    print(summary)
    assert writers.attempts > len(writers.acknowledged), f"no create was retried: {summary}"
    assert duplicates == 0 and not ghosts, summary
    assert set(titles) == set(writers.acknowledged), summary  # nothing acknowledged was lost
