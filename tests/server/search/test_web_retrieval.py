"""WebRetrieval over the FTS5 index, and the index itself."""

from __future__ import annotations

import grpc
import pytest

from apex_grpc_proto.apex.v1 import apex_pb2 as pb
from apex_grpc_server._search.documents import Document, html_to_text
from apex_grpc_server._search.index import SearchIndex, split_passages
from apex_grpc_server._store.words import fts_query

pytestmark = pytest.mark.oldest


def search(stub, auth, query: str, **fields: int) -> pb.WebRetrievalResponse:
    return stub.WebRetrieval(pb.WebRetrievalRequest(search_query=query, **fields), metadata=auth)


def test_the_seed_query_finds_the_bundled_docs(stub, auth) -> None:
    response = search(stub, auth, "What is Bittensor?", n_results=3, max_response_time=20)
    assert response.results
    top = response.results[0]
    assert "Bittensor" in top.content
    assert "Bittensor" in top.relevant
    assert top.url


def test_default_corpus_has_the_python_reference(stub, auth) -> None:
    response = search(stub, auth, "with statement context manager", n_results=5)
    urls = [result.url for result in response.results]
    assert "pydoc:context-managers" in urls or "pydoc:with" in urls
    assert len(urls) == len(set(urls)) <= 5


@pytest.mark.parametrize("n_results", [1, 2, 7])
def test_n_results_is_an_upper_bound(stub, auth, n_results) -> None:
    response = search(stub, auth, "the statement expression", n_results=n_results)
    assert len(response.results) == n_results


def test_default_n_results_is_three(stub, auth) -> None:
    assert len(search(stub, auth, "python statement").results) == 3


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '""',
        "'",
        "a AND",
        "NOT",
        "(",
        ")",
        "NEAR(",
        "*",
        "^x",
        "col:term",
        "-",
        "\\",
        "é ü",
        "🚀",
        "x" * 4096,
        "\x00",
        "OR OR OR",
        "title:lambda",
    ],
)
def test_query_syntax_never_breaks_the_server(stub, auth, query) -> None:
    response = search(stub, auth, query, n_results=3)
    assert len(response.results) <= 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"search_query": ""}, "search_query: must not be empty"),
        ({"search_query": "   "}, "search_query: must not be empty"),
        ({"search_query": "x", "n_results": -1}, "n_results: must be in [1, 100], got -1"),
        ({"search_query": "x", "n_results": 0}, "n_results: must be in [1, 100], got 0"),
        ({"search_query": "x", "n_results": 101}, "n_results: must be in [1, 100], got 101"),
        (
            {"search_query": "x", "max_response_time": 0},
            "max_response_time: must be in [1, 3600], got 0",
        ),
        ({"search_query": "x", "n_miners": 0}, "n_miners: must be in [1, 256], got 0"),
        ({"search_query": "x", "uids": [1, -2]}, "uids[1]: must be in [0, 255], got -2"),
        ({"search_query": "x" * 4097}, "search_query: must be at most 4096 characters, got 4097"),
    ],
)
def test_invalid_requests(stub, auth, fields, message) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.WebRetrieval(pb.WebRetrievalRequest(**fields), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == message


def test_fts_query_quotes_every_word() -> None:
    assert fts_query('What is "Bittensor"? NEAR(x)') == '"bittensor" OR "near" OR "x"'
    assert fts_query("what is") == '"what" OR "is"'  # only stopwords: keep them
    assert fts_query("?!") is None


def test_long_documents_are_split_into_passages() -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 60 for i in range(40))
    passages = split_passages(text)
    assert len(passages) > 5
    assert all(len(passage) <= 1600 for passage in passages)
    assert "".join(passages).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(
        " ", ""
    )
    assert all(len(piece) <= 1600 for piece in split_passages("x" * 5000))


def test_upsert_replaces_by_url_and_title_weighs_more(tmp_path) -> None:
    import asyncio

    index = SearchIndex(tmp_path / "index.sqlite3")
    try:
        stats = asyncio.run(
            index.upsert(
                [
                    Document("u:1", "Zebra facts", "Animals of Africa."),
                    Document("u:2", "Africa", "The zebra is striped. It lives in Africa."),
                ]
            )
        )
        assert (stats.added, stats.updated) == (2, 0)
        hits = asyncio.run(index.search("zebra", 5, 5.0))
        assert next(hit.url for hit in hits) == "u:1"  # the title match ranks first
        stats = asyncio.run(
            index.upsert(
                [
                    Document("u:1", "Lions", "Big cats."),
                    Document("u:2", "Africa", "The zebra is striped. It lives in Africa."),
                ]
            )
        )
        assert (stats.added, stats.updated, stats.unchanged) == (0, 1, 1)
        assert [hit.url for hit in asyncio.run(index.search("zebra", 5, 5.0))] == ["u:2"]
        assert [hit.url for hit in asyncio.run(index.search("lions", 5, 5.0))] == ["u:1"]
    finally:
        index.close()


def test_html_to_text_drops_scripts() -> None:
    title, text = html_to_text(
        "<html><head><title>T &amp; U</title><script>var x = 1;</script></head>"
        "<body><h1>Head</h1><p>One &lt;two&gt;</p><style>p{}</style></body></html>"
    )
    assert title == "T & U"
    assert "var x" not in text
    assert "p{}" not in text
    assert "One <two>" in text
