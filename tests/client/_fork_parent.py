"""The parent side of the fork test, run in a fresh interpreter: ``python _fork_parent.py
<target> <api key>`` prints one JSON line with what the forked child and the parent got.

A fresh process has no gRPC users but this client, so at fork time no other thread is inside
gRPC (grpc skips its fork handlers when one is, and the child's call may then hang).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from typing import Any

import apex_grpc as mc

USER = [{"role": "user", "content": "hello"}]


def child_call(client: mc.ApexClient, queue: Any) -> None:
    """In the child: one call on the client inherited from the parent, and whether the
    client put it on connections of its own (the parent's pool is the parent's)."""
    inherited = client._transport._pool
    try:
        response = client.chat.completions.create(messages=USER, timeout=10)
        own = client._transport._pool is not inherited
        queue.put(("ok", response.choices[0].message.content, os.getpid(), own))
    except BaseException as error:  # report anything to the parent
        queue.put(("error", repr(error), os.getpid(), False))


def main(target: str, key: str) -> None:
    with mc.ApexClient(api_key=key, base_url=target, secure=False) as client:
        client.chat.completions.create(messages=USER)  # the parent's channel is live
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=child_call, args=(client, queue))
        child.start()
        outcome = queue.get(timeout=30)
        child.join(30)
        after = client.chat.completions.create(messages=USER).choices[0].message.content
    print(json.dumps({"child": outcome, "parent_pid": os.getpid(), "parent_after": after}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
