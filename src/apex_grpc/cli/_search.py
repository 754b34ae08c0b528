"""``apex-grpc search``: web results as a readable list, or JSON."""

from __future__ import annotations

import argparse
import textwrap

from apex_grpc import ApexClient, WebSearchResult
from apex_grpc.cli._terminal import Terminal

EXCERPT_CHARS = 300
TITLE_CHARS = 100


def run(args: argparse.Namespace, client: ApexClient, term: Terminal) -> int:
    """Search, then print the results (or the WebRetrievalResponse as JSON)."""
    response = client.web_search.search(
        search_query=" ".join(args.query),
        n_results=args.n_results,
        max_response_time=args.max_response_time,
    )
    if args.json:
        term.json(response)
    elif not response.results:
        term.note("no results")
    elif term.fancy:
        _print_rich(term, list(response.results))
    else:
        _print_plain(term, list(response.results))
    return 0


def title_of(result: WebSearchResult) -> str:
    """The page's first line (a Markdown heading loses its #), else its url."""
    for line in result.content.splitlines():
        text = line.strip().lstrip("#").strip()
        if text:
            return textwrap.shorten(text, TITLE_CHARS, placeholder=" ...")
    return result.url


def excerpt_of(result: WebSearchResult) -> str:
    """The relevant passage (else the content's start), on one line, shortened."""
    text = " ".join((result.relevant or result.content).split())
    return textwrap.shorten(text, EXCERPT_CHARS, placeholder=" ...") if text else ""


def _print_plain(term: Terminal, results: list[WebSearchResult]) -> None:
    for number, result in enumerate(results, 1):
        if number > 1:
            term.line()
        term.line(f"{number}. {title_of(result)}")
        term.line(f"   {result.url}")
        for line in textwrap.wrap(excerpt_of(result), 96):
            term.line(f"   {line}")


def _print_rich(term: Terminal, results: list[WebSearchResult]) -> None:
    from rich.padding import Padding
    from rich.text import Text

    console = term.console()
    for number, result in enumerate(results, 1):
        if number > 1:
            console.print()
        console.print(Text.assemble((f"{number}. ", "bold"), (title_of(result), "bold")))
        console.print(Padding(Text(result.url, style="cyan underline"), (0, 0, 0, 3), expand=False))
        console.print(Padding(Text(excerpt_of(result), style="dim"), (0, 0, 0, 3), expand=False))
