"""Every Python and shell snippet of README.md and docs/ runs, page by page, in order.

`test_page` runs each page's snippets against a local echo server (see
_runner.py), leaving out those marked ``not run`` (with a reason) and those
marked ``needs the local model``; `test_page_on_local_model` runs the pages
that have the latter with them, where the model is installed (the ``llm``
marker skips it elsewhere, saying why). The session's summary lists every
snippet left out, and why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._markdown import PAGES, ROOT, PageError, blocks
from ._runner import DOCS_KEY, PageRun

PAGE_TIMEOUT_S = 900  # a page on the local model generates several answers on 2 cores


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An echo server that accepts the docs' key (``api-key``); yields its target."""
    from apex_grpc_server import ServerConfig, run_server

    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        engine="echo",
        api_keys=frozenset({DOCS_KEY}),
        data_dir=tmp_path_factory.mktemp("docs-server"),
        grace_period_s=1.0,
    )
    with run_server(config) as server:
        yield server.target


def run_page(page: Path, scratch: Path, target: str, *, with_model: bool) -> int:
    """Run the page's snippets in order; returns how many ran."""
    run = PageRun(scratch, target)
    ran = 0
    try:
        for block in blocks(page):
            if block.skip_reason is None and (with_model or not block.needs_model):
                run.run(block)
                ran += 1
    finally:
        run.close()
    return ran


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.timeout(PAGE_TIMEOUT_S)
@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_page(page: Path, tmp_path: Path, docs_server: str) -> None:
    run_page(page, tmp_path, docs_server, with_model=False)


def _pages_needing_the_model() -> list[Path]:
    def needs(page: Path) -> bool:
        try:
            return any(block.needs_model for block in blocks(page))
        except PageError:
            return False  # test_page reports it, naming the page

    return [page for page in PAGES if needs(page)]


@pytest.mark.llm
@pytest.mark.timeout(PAGE_TIMEOUT_S)
@pytest.mark.parametrize("page", _pages_needing_the_model(), ids=page_id)
def test_page_on_local_model(page: Path, tmp_path: Path, docs_server: str) -> None:
    run_page(page, tmp_path, docs_server, with_model=True)


def test_every_page_with_snippets_runs_some() -> None:
    """A page whose every snippet is marked is a page nobody checks."""
    for page in PAGES:
        found = blocks(page)
        runnable = [b for b in found if b.skip_reason is None and not b.needs_model]
        # architecture.md shows only the make targets, which CI runs itself.
        assert runnable or not found or page.name == "architecture.md", (
            f"{page_id(page)}: no snippet runs"
        )


def snippet_texts(page: Path) -> list[str]:
    """The code of the page's Python blocks."""
    return [block.code for block in blocks(page) if block.language == "python"]


@pytest.mark.parametrize("name", ["seed_chat.py", "seed_web_search.py"])
@pytest.mark.parametrize(
    "page", [ROOT / "README.md", ROOT / "docs" / "getting-started.md"], ids=page_id
)
def test_seed_snippets_appear_verbatim(page: Path, name: str) -> None:
    """The seed documentation's snippets (examples/seed_*.py) are shown, and so run, unchanged."""
    seed = (ROOT / "examples" / name).read_text(encoding="utf-8")
    assert seed in snippet_texts(page)
    marked = [b for b in blocks(page) if b.code == seed and b.marker is not None]
    assert not marked, f"{marked[0].where} must run: it is a seed snippet"
