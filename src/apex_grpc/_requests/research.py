"""Deep-research requests: submitting a job and fetching it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

from apex_grpc import _methods as m
from apex_grpc._requests import Prepared, builds
from apex_grpc._requests import validate as v
from apex_grpc._requests.chat import (
    DEEP_RESEARCH_SAMPLING_DEFAULTS,
    ChatRequestFields,
    MessageParam,
    prepare_chat,
)
from apex_grpc._settings.call import CallOptions
from apex_grpc._settings.client import ClientSettings
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

DEEP_RESEARCH_FIXED = {
    "task": "InferenceTask",
    "inference_mode": "Chain-of-Thought",
    "mixture": False,
}


class DeepResearchParams(ChatRequestFields, CallOptions, total=False):
    """Keyword arguments of ``deep_research.submit``: the chat request fields and CallOptions."""


@builds(m.SUBMIT_DEEP_RESEARCHER_JOB)
def submit_deep_research(
    settings: ClientSettings,
    messages: Sequence[MessageParam | pb.ChatMessage],
    **params: Unpack[DeepResearchParams],
) -> Prepared[pb.ChatCompletionRequest, pb.SubmitDeepResearcherJobResponse]:
    """Start a deep-research job; returns its id and status at once.

    Takes the chat-completion keywords (messages, sampling_parameters, seed,
    model, uids, ...) with the official SDK's (2.1.0) deep-research defaults: task
    "InferenceTask", inference_mode "Chain-of-Thought", mixture False,
    max_new_tokens 8192, do_sample False.
    """
    chat = prepare_chat(
        settings,
        {"messages": messages, **params},
        stream=True,
        sampling_defaults=DEEP_RESEARCH_SAMPLING_DEFAULTS,
        fixed=DEEP_RESEARCH_FIXED,
        stream_options=False,
    )
    return Prepared(m.SUBMIT_DEEP_RESEARCHER_JOB, chat.request, chat.settings)


@builds(m.GET_DEEP_RESEARCHER_JOB)
def get_deep_research(
    settings: ClientSettings, job_id: str, **options: Unpack[CallOptions]
) -> Prepared[pb.GetDeepResearcherJobRequest, pb.GetDeepResearcherJobResponse]:
    """Fetch a deep-research job: its status and the result chunks so far."""
    request = pb.GetDeepResearcherJobRequest(job_id=v.required_text(job_id, "job_id"))
    return Prepared(m.GET_DEEP_RESEARCHER_JOB, request, settings.for_call(options))
