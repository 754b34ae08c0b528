"""The requests a user of the raw generated stub builds (the same fields the SDKs send)."""

from __future__ import annotations

import random

from apex_grpc_proto.apex.v1 import apex_pb2 as pb

from ._common import MESSAGES, SEARCH_QUERY


def raw_chat_request(stream: bool) -> pb.ChatCompletionRequest:
    """The request a raw-stub user builds: same fields and defaults as the SDK sends."""
    return pb.ChatCompletionRequest(
        messages=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in MESSAGES],
        sampling_parameters=pb.SamplingParameters(
            temperature=0.7, top_p=0.95, max_new_tokens=4096, do_sample=True
        ),
        seed=random.randint(0, 65535),
        stream=stream,
    )


def raw_search_request() -> pb.WebRetrievalRequest:
    """The raw-stub web search request (the SDK's defaults)."""
    return pb.WebRetrievalRequest(
        search_query=SEARCH_QUERY, n_results=5, n_miners=5, max_response_time=30
    )
