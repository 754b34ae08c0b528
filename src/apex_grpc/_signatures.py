"""Signatures that tell the truth to `inspect.signature`, `help()`, IDEs and Jupyter.

Methods made from a request builder, or taking ``**params: Unpack[SomeTypedDict]``,
would otherwise show the builder's signature (with its ``settings`` first
parameter) or an opaque ``**params``. `method_signature` builds the signature
a caller should see: ``self`` first, every keyword of the TypedDict spelled out
(NOT_GIVEN as the default of those that are optional), and the real return type.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from apex_grpc._settings.checks import NOT_GIVEN

_UNPACK = re.compile(r"^(?:typing\.)?Unpack\[(\w+)\]$")

SELF = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)


def method_signature(
    function: Callable[..., Any],
    *,
    returns: Any,
    drop_first: bool = False,
    defaults: Mapping[str, Any] | None = None,
) -> inspect.Signature:
    """The signature of a method built on `function`, as a caller of the method sees it.

    drop_first: `function` takes a first argument the method supplies (the
    client's settings), which the caller never passes.
    defaults: what the spelled-out keywords default to, where NOT_GIVEN
    would say less (the client constructor's call defaults).
    """
    parameters = list(inspect.signature(function).parameters.values())
    if drop_first or (parameters and parameters[0].name == "self"):
        parameters = parameters[1:]
    shown = [SELF]
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            shown.extend(_expand(function, parameter, defaults or {}))
        else:
            shown.append(parameter)
    return inspect.Signature(_ordered(shown), return_annotation=returns)


def _expand(
    function: Callable[..., Any], parameter: inspect.Parameter, defaults: Mapping[str, Any]
) -> list[inspect.Parameter]:
    """``**options: Unpack[TD]`` as one keyword-only parameter per key of TD."""
    match = _UNPACK.match(str(parameter.annotation))
    if match is None:
        return [parameter]
    module = sys.modules[function.__module__]
    typed_dict = getattr(module, match.group(1))
    expanded = []
    for name, annotation in typed_dict.__annotations__.items():
        text, required = _annotation_text(annotation)
        default = inspect.Parameter.empty if required else defaults.get(name, NOT_GIVEN)
        expanded.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=text
            )
        )
    return expanded


def _annotation_text(annotation: Any) -> tuple[Any, bool]:
    """A TypedDict key's annotation as written, and whether the key is Required.

    With postponed annotations TypedDict keeps each one as a ForwardRef and
    cannot see `Required[...]` inside it, so it is read from the text.
    """
    text = getattr(annotation, "__forward_arg__", annotation)
    if isinstance(text, str):
        match = re.match(r"^(Required|NotRequired)\[(.*)\]$", text)
        if match:
            return match.group(2), match.group(1) == "Required"
    return text, False


def _ordered(parameters: list[inspect.Parameter]) -> list[inspect.Parameter]:
    """Keyword-only parameters without a default first (inspect requires no order, but
    a required keyword reads best first); positional order is kept as it is."""
    positional = [p for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    keywords = [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    seen: set[str] = set()
    unique = [p for p in keywords if not (p.name in seen or seen.add(p.name))]  # type: ignore[func-returns-value]
    required = [p for p in unique if p.default is inspect.Parameter.empty]
    optional = [p for p in unique if p.default is not inspect.Parameter.empty]
    return positional + required + optional
