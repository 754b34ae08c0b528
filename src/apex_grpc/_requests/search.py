"""The web-search request: ``client.web_search.search(...)``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from apex_grpc import _methods as m
from apex_grpc._errors import ValidationError
from apex_grpc._requests import Prepared
from apex_grpc._requests import validate as v
from apex_grpc._settings.call import GivenOptions
from apex_grpc._settings.client import ClientSettings
from apex_grpc_proto.apex.v1 import apex_pb2 as pb

WEB_SEARCH_DEFAULTS = {"n_miners": 5, "n_results": 5, "max_response_time": 30}
WEB_SEARCH_DEADLINE_MARGIN = 10.0
"""Seconds added to max_response_time for the default deadline of a web search."""


def web_search(
    settings: ClientSettings,
    options: GivenOptions,
    search_query: str,
    *,
    n_results: int | None = None,
    max_response_time: float | None = None,
    n_miners: int | None = None,
    uids: Sequence[int] | None = None,
    max_results_per_miner: int | None = None,
) -> Prepared[pb.WebRetrievalRequest, pb.WebRetrievalResponse]:
    """The request of ``web_search.search`` (its docstring, in tools/resource_table.py,
    says what each argument means); the deadline defaults to max_response_time + 10 s."""
    if None not in (n_results, max_results_per_miner) and n_results != max_results_per_miner:
        raise ValidationError("max_results_per_miner", "is an alias of n_results; give one of them")
    if n_results is None:
        n_results = max_results_per_miner
    try:
        request = pb.WebRetrievalRequest(
            search_query=v.required_text(search_query, "search_query"),
            n_results=v.integer(_or(n_results, "n_results"), "n_results", minimum=1),
            n_miners=v.integer(_or(n_miners, "n_miners"), "n_miners", minimum=1),
            max_response_time=_whole_seconds(_or(max_response_time, "max_response_time")),
        )
    except ValueError as error:
        raise v.unencodable(error, {"search_query": search_query}) from None
    if uids:
        request.uids.extend(v.uids(uids))
    call = settings.for_call(options, request.max_response_time + WEB_SEARCH_DEADLINE_MARGIN)
    if "timeout" in options and call.timeout is not None:
        request.timeout = max(1, math.ceil(call.timeout))
    return Prepared(m.WEB_RETRIEVAL, request, call)


def _or(value: object, name: str) -> object:
    return WEB_SEARCH_DEFAULTS[name] if value is None else value


def _whole_seconds(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(
            "max_response_time", f"must be a number of seconds, got {type(value).__name__}"
        )
    if not 0 < value < 2**31:
        raise ValidationError("max_response_time", f"must be > 0 seconds, got {value}")
    return math.ceil(value)
