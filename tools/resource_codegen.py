"""The client's resource classes, written as plain code from the proto and a small table.

`tools/codegen.py` calls `resource_sources(rpcs)` with each RPC's response type
(read from the service descriptor) and writes the result under
src/apex_grpc/_resources/; `make check-generated` fails on any drift.

The table in tools/resource_table.py is the hand-written part: each public
method's ergonomic name, its own parameters with their defaults, the request
builder it calls and its docstring. The call options every method also takes are read from
`CallOptions` (and `StreamOptions`, `PollOptions`, `ChatRequestFields`, and for the
write RPCs of `WRITES`, `WriteOptions`) in the package, so a new option reaches every
method at the next `make generate`.
Each method becomes one plain ``def`` (sync class) and one ``async def`` (the
async class beside it) spelling every parameter; no descriptors, nothing
rebuilt at import time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from resource_table import CHATS, DEEP_RESEARCH, MESSAGES, WEB_SEARCH, WRITES, Rpc

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "src" / "apex_grpc" / "_resources"


class Resource(NamedTuple):
    """One resource: its module, class name, docstring and methods."""

    module: str
    cls: str
    doc: str
    rpcs: tuple[Rpc, ...]
    imports: str


COMMON_IMPORTS = """\
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Literal, overload

from apex_grpc._requests import chats, research, search
from apex_grpc._requests.chat import MessageParam, SamplingParams, prepare_chat
from apex_grpc._research import DEFAULT_POLL, JobProgress, JobWatch, PollPolicy
from apex_grpc._resources._base import {base}
from apex_grpc._retry import RetryPolicy
from apex_grpc._settings.call import CallInfo, call_options
from apex_grpc._settings.checks import NOT_GIVEN, MetadataArg, NotGiven
{stream}
from apex_grpc_proto.apex.v1 import apex_pb2 as pb
"""

RESOURCE_LIST = (
    Resource("chat", "Completions", "``client.chat.completions``.", (), ""),
    Resource("web_search", "WebSearch", "``client.web_search``.", WEB_SEARCH, ""),
    Resource(
        "deep_research",
        "DeepResearch",
        "``client.deep_research``: submit jobs, fetch them, follow them to the end.",
        DEEP_RESEARCH,
        "import asyncio\nimport time\n",
    ),
    Resource(
        "chats", "Chats", "``client.chats``: stored chat sessions and completions.", CHATS, ""
    ),
)


def typed_keys(module: str, name: str) -> list[tuple[str, str]]:
    """(key, annotation as written) of the TypedDict `name` in src/apex_grpc/`module`.

    Read from the source, not imported: the package imports the modules
    generated here, which may be missing or stale while they are generated.
    """
    source = (ROOT / "src" / "apex_grpc" / module).read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return [
                (item.target.id, ast.get_source_segment(source, item.annotation) or "")
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            ]
    sys.exit(f"codegen: no TypedDict {name} in {module}")


def _option_params(keys: list[tuple[str, str]]) -> list[str]:
    return [f"{name}: {_or_not_given(annotation)} = NOT_GIVEN" for name, annotation in keys]


def _or_not_given(annotation: str) -> str:
    """``float | None`` -> ``float | NotGiven | None`` (None last, as ruff wants it)."""
    if annotation.endswith(" | None"):
        return annotation.removesuffix(" | None") + " | NotGiven | None"
    return annotation + " | NotGiven"


def _field_params(keys: list[tuple[str, str]]) -> list[str]:
    return [f"{name}: {annotation} = None" for name, annotation in keys]


def _names(params: list[str]) -> list[str]:
    return [p.split(":")[0] for p in params if p != "*"]


def _doc(text: str, indent: str = "        ") -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return f'{indent}"""{text}"""'
    body = "\n".join((indent + line) if line else "" for line in lines[1:])
    return f'{indent}"""{lines[0]}\n{body}\n{indent}"""'


class Keys(NamedTuple):
    """The keyword groups read from the package's TypedDicts."""

    call: list[tuple[str, str]]
    stream: list[tuple[str, str]]
    poll: list[tuple[str, str]]
    fields: list[tuple[str, str]]
    write: list[tuple[str, str]]


def _keys() -> Keys:
    return Keys(
        typed_keys("_settings/call.py", "CallOptions"),
        typed_keys("_settings/call.py", "StreamOptions"),
        typed_keys("_research.py", "PollOptions"),
        typed_keys("_requests/chat.py", "ChatRequestFields"),
        typed_keys("_settings/call.py", "WriteOptions"),
    )


def _call_options(keys: Keys, stream: bool = False, write: bool = False) -> str:
    names = [name for name, _ in keys.call] + ([n for n, _ in keys.stream] if stream else [])
    extra = [f"{name}={name}" for name, _ in keys.write] if write else []
    return f"call_options({', '.join(names + extra)})"


def _unary(rpc: Rpc, response: str, keys: Keys, is_async: bool) -> str:
    own = [p for p in rpc.params if p != "FIELDS"]
    if "FIELDS" in rpc.params:
        own += _field_params(keys.fields)
    params = [*own]
    if "*" not in params:
        params.append("*")
    params += _option_params(keys.call)
    write = rpc.rpc in WRITES
    if write:
        params += _option_params(keys.write)
    arguments = ", ".join(f"{name}={name}" for name in _names(own))
    call = f"{rpc.builder}(self._settings, options{', ' if arguments else ''}{arguments})"
    prefix, wait = ("async ", "await ") if is_async else ("", "")
    signature = ",\n        ".join(["self", *params])
    return (
        f"    {prefix}def {rpc.name}(\n        {signature},\n    ) -> {response}:\n"
        f"{_doc(rpc.doc)}\n"
        f"        options = {_call_options(keys, write=write)}\n"
        f"        return {wait}self._transport.unary({call})\n"
    )


CREATE_DOC = (
    "Generate a chat completion; ``stream=True`` returns a {stream}.\n\n"
    "messages: the conversation (dicts or ChatMessage), required.\n"
    "sampling_parameters: dict (merged over the defaults: temperature 0.7,\n"
    "    top_p 0.95, max_new_tokens 4096, do_sample True) or SamplingParameters\n"
    "    (used as given).\n"
    "seed: sampling seed; None draws one in [0, 65535] as the official SDK (2.1.0) does.\n"
    "model, task, inference_mode: names passed to the server (None: its default).\n"
    "uids: miner UIDs to ask (None or empty: the validator chooses).\n"
    "test_time_inference, mixture, json_format: booleans passed through.\n"
    "The call options (timeout, metadata, max_retries, retry, compression,\n"
    "wait_for_ready, call_info); ``timeout`` also tells the server its time\n"
    "budget. For streams, first_chunk_timeout, idle_timeout and resume."
)


def _create(keys: Keys, is_async: bool) -> str:
    stream_class = "AsyncChatCompletionStream" if is_async else "ChatCompletionStream"
    prefix, wait = ("async ", "await ") if is_async else ("", "")
    tail = [
        *_field_params(keys.fields),
        *_option_params(keys.call),
        *_option_params(keys.stream),
    ]
    variants = [
        ("stream: Literal[False] = False", "pb.ChatCompletionResponse"),
        ("stream: Literal[True]", stream_class),
        ("stream: bool", f"pb.ChatCompletionResponse | {stream_class}"),
    ]
    out = []
    for stream, returns in variants:
        signature = ",\n        ".join(["self", "*", MESSAGES, stream, *tail])
        out.append(
            f"    @overload\n    {prefix}def create(\n        {signature},\n"
            f"    ) -> {returns}: ...\n"
        )
    signature = ",\n        ".join(["self", "*", MESSAGES, "stream: bool = False", *tail])
    fields = ", ".join(f"{name}={name}" for name, _ in keys.fields)
    out.append(
        f"    {prefix}def create(\n        {signature},\n"
        f"    ) -> pb.ChatCompletionResponse | {stream_class}:\n"
        f"{_doc(CREATE_DOC.format(stream=stream_class))}\n"
        f"        options = {_call_options(keys, stream=True)}\n"
        f"        prepared = prepare_chat(\n"
        f"            self._settings, options, messages, stream=stream, {fields}\n"
        f"        )\n"
        f"        if stream:\n"
        f"            return self._transport.stream(prepared)\n"
        f"        response: pb.ChatCompletionResponse = {wait}self._transport.unary(prepared)\n"
        f"        return response\n"
    )
    return "\n".join(out)


FOLLOW_DOC = (
    "Poll the job with backoff, yielding a `JobProgress` per poll until it is over.\n\n"
    "timeout: seconds to follow the job in all (DeepResearchTimeoutError\n"
    "    after; the job goes on running on the server).\n"
    "poll: how often to poll (PollPolicy).\n"
    "The call options (metadata, max_retries, retry, compression,\n"
    "wait_for_ready) apply to each poll. The last progress has ``done=True``;\n"
    "if the job failed, DeepResearchJobError is raised after it."
)


def _pollers(keys: Keys, is_async: bool) -> str:
    a, w = ("async ", "await ") if is_async else ("", "")
    iterator = "AsyncIterator" if is_async else "Iterator"
    sleep = "asyncio.sleep" if is_async else "time.sleep"
    params = ",\n        ".join(
        [
            "self",
            "job_id: str",
            "*",
            "timeout: float | None = None",
            "poll: PollPolicy = DEFAULT_POLL",
            *_option_params(keys.poll),
        ]
    )
    poll_names = {name for name, _ in keys.poll}
    given = ", ".join(name if name in poll_names else "NOT_GIVEN" for name, _ in keys.call)
    passed = ", ".join(f"{name}={name}" for name, _ in keys.poll)
    each_chunk = (
        "for chunk in progress.new_chunks:\n                yield chunk"
        if is_async  # no `yield from` in an async generator
        else "yield from progress.new_chunks"
    )
    return f'''    {a}def follow(
        {params},
    ) -> {iterator}[JobProgress]:
{_doc(FOLLOW_DOC)}
        watch = JobWatch(job_id, timeout=timeout, policy=poll)
        options = call_options({given})
        while (delay := watch.next_delay()) is not None:
            {w}{sleep}(delay)
            with watch.polling(options) as poll_options:
                yield watch.update({w}self.get(job_id, **poll_options))

    {a}def stream(
        {params},
    ) -> {iterator}[pb.DeepResearcherResultChunk]:
        """Yield the job's result chunks as they appear, until it completes (see `follow`)."""
        {a}for progress in self.follow(job_id, timeout=timeout, poll=poll, {passed}):
            {each_chunk}

    {a}def wait(
        {params},
    ) -> pb.GetDeepResearcherJobResponse:
        """Poll until the job completes; returns its final state (see `follow`)."""
        {a}for progress in self.follow(job_id, timeout=timeout, poll=poll, {passed}):
            last = progress
        return last.response
'''


HEADER = '''"""{doc}

Generated by tools/codegen.py (the table in tools/resource_table.py) from the
proto: do not edit; run `make generate`. Its twin, {twin}, differs by
``async``/``await``.
"""

from __future__ import annotations

{imports}{common}

'''


def _module(resource: Resource, responses: dict[str, str], keys: Keys, is_async: bool) -> str:
    """The source of one resource's module, for one of the two clients."""
    cls = ("Async" if is_async else "") + resource.cls
    base = "AsyncResource" if is_async else "SyncResource"
    doc = (
        resource.doc.split(":")[0].rstrip(".") + " of the async client."
        if is_async
        else resource.doc
    )
    body = []
    if resource.module == "chat":
        body.append(_create(keys, is_async))
    body += [_unary(rpc, responses[rpc.rpc], keys, is_async) for rpc in resource.rpcs]
    if resource.module == "deep_research":
        body.append(_pollers(keys, is_async))
    parts = [f'class {cls}({base}):\n    """{doc}"""\n\n' + "\n".join(body)]
    if resource.module == "chat":
        parts.append(ASYNC_CHAT if is_async else CHAT)
    stream = "AsyncChatCompletionStream" if is_async else "ChatCompletionStream"
    common = COMMON_IMPORTS.format(
        base=base,
        stream=f"from apex_grpc._streaming.{'aio' if is_async else 'sync'} import {stream}",
    )
    source = HEADER.format(
        doc=f"The ``{resource.module}`` resource of the {'async' if is_async else 'sync'} client.",
        twin=f"{resource.module}.py" if is_async else f"{resource.module}_aio.py",
        imports=resource.imports,
        common=common,
    )
    return source + "\n\n".join(parts)


CHAT = '''class Chat:
    """``client.chat``: holds ``completions``."""

    def __init__(self, completions: Completions) -> None:
        self.completions = completions
'''

ASYNC_CHAT = '''class AsyncChat:
    """``client.chat`` of the async client."""

    def __init__(self, completions: AsyncCompletions) -> None:
        self.completions = completions
'''


def tidy(source: str, path: Path) -> str:
    """Drop unused imports and format, with the project's ruff settings."""
    ruff = str(Path(sys.executable).parent / "ruff")
    for command in (
        [ruff, "check", "--fix", "--select", "F401,I", "--quiet", "--exit-zero"],
        [ruff, "format", "--quiet"],
    ):
        result = subprocess.run(
            [*command, "--stdin-filename", str(path), "-"],
            input=source,
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        if result.returncode != 0:
            sys.exit(f"codegen: {' '.join(command[1:2])} failed on {path}:\n{result.stderr}")
        source = result.stdout
    return source


def resource_sources(responses: dict[str, str]) -> dict[Path, str]:
    """Each generated resource module's path and source; `responses`: RPC name -> type."""
    keys = _keys()
    sources = {}
    for resource in RESOURCE_LIST:
        for is_async in (False, True):
            path = RESOURCES / f"{resource.module}{'_aio' if is_async else ''}.py"
            sources[path] = tidy(_module(resource, responses, keys, is_async), path)
    return sources
