"""Deep-research requests: submitting a job and fetching it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

from apex_grpc import _methods as m
from apex_grpc._requests import Prepared
from apex_grpc._requests import validate as v
from apex_grpc._requests.chat import (
    DEEP_RESEARCH_SAMPLING_DEFAULTS,
    ChatRequestFields,
    MessageParam,
    prepare_chat,
)
from apex_grpc._settings.call import GivenOptions
from apex_grpc._settings.client import ClientSettings
from apex_grpc_proto.apex.v1 import apex_pb2 as pb


def submit_deep_research(
    settings: ClientSettings,
    options: GivenOptions,
    messages: Sequence[MessageParam | pb.ChatMessage],
    **fields: Unpack[ChatRequestFields],
) -> Prepared[pb.ChatCompletionRequest, pb.SubmitDeepResearcherJobResponse]:
    """The request of ``deep_research.submit``: a chat request with the official SDK's (2.1.0)
    deep-research defaults (task "InferenceTask", inference_mode "Chain-of-Thought",
    mixture False, max_new_tokens 8192, do_sample False) where the caller gives None."""
    if fields.get("task") is None:
        fields["task"] = "InferenceTask"
    if fields.get("inference_mode") is None:
        fields["inference_mode"] = "Chain-of-Thought"
    if fields.get("mixture") is None:
        fields["mixture"] = False
    return prepare_chat(
        settings,
        options,
        messages,
        stream=True,
        sampling_defaults=DEEP_RESEARCH_SAMPLING_DEFAULTS,
        stream_options=False,
        method=m.SUBMIT_DEEP_RESEARCHER_JOB,
        **fields,
    )


def get_deep_research(
    settings: ClientSettings, options: GivenOptions, job_id: str
) -> Prepared[pb.GetDeepResearcherJobRequest, pb.GetDeepResearcherJobResponse]:
    """Fetch a deep-research job: its status and the result chunks so far."""
    try:
        request = pb.GetDeepResearcherJobRequest(job_id=v.required_text(job_id, "job_id"))
    except ValueError as error:
        raise v.unencodable(error, {"job_id": job_id}) from None
    return Prepared(m.GET_DEEP_RESEARCHER_JOB, request, settings.for_call(options))
