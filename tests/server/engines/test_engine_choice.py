"""Engine selection and the messages a missing engine gives (no model needed)."""

from __future__ import annotations

import asyncio
import importlib.util

import grpc
import pytest

from apex_grpc_server import ChatRequest, EchoEngine, Message, ServerConfig, run_server
from apex_grpc_server._engines import EngineUnavailable, create_engine
from apex_grpc_server._engines.llama import LlamaEngine
from apex_grpc_server._engines.model import model_name
from apex_grpc_server._engines.openai import endpoint, grpc_status_for_http

pytestmark = pytest.mark.oldest


def collect(engine: EchoEngine, request: ChatRequest) -> list[tuple[str, bool]]:
    async def run() -> list[tuple[str, bool]]:
        return [(delta.text, delta.finish is not None) async for delta in engine.stream(request)]

    return asyncio.run(run())


def test_echo_engine_contract() -> None:
    request = ChatRequest((Message("user", "abc"),))
    assert collect(EchoEngine(3, 4), request) == [("abca", False), ("bcab", False), ("cabc", True)]
    assert collect(EchoEngine(0, 4), request) == [("", True)]
    assert collect(EchoEngine(1, 2), request) == [("ab", True)]


def test_create_engine_picks_by_name(tmp_path) -> None:
    assert isinstance(create_engine(ServerConfig(engine="echo", data_dir=tmp_path)), EchoEngine)


def test_missing_llama_cpp_says_how_to_install(monkeypatch, tmp_path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real(name, *a),
    )
    with pytest.raises(EngineUnavailable, match=r"pip install 'apex-grpc\[llm\]'"):
        LlamaEngine.from_config(ServerConfig(engine="local", data_dir=tmp_path))


def test_missing_model_file(tmp_path) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    config = ServerConfig(engine="local", model_path=str(tmp_path / "nope.gguf"), data_dir=tmp_path)
    with pytest.raises(EngineUnavailable, match="no such GGUF file"):
        LlamaEngine.from_config(config)


def test_server_start_fails_loudly_without_its_engine(tmp_path, api_key) -> None:
    config = ServerConfig(
        port=0,
        engine="openai",
        api_keys=frozenset({api_key}),
        data_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="openai_base_url: required"):
        run_server(config)


def test_model_names() -> None:
    from pathlib import Path

    assert model_name(Path("SmolLM2-135M-Instruct.Q4_1.gguf")) == "SmolLM2-135M-Instruct"
    assert model_name(Path("llama-3-8b-instruct-Q4_K_M.gguf")) == "llama-3-8b-instruct"
    assert model_name(Path("plain.gguf")) == "plain"


def test_openai_endpoint_and_status_mapping() -> None:
    assert endpoint("http://h:8000", "/chat/completions") == "http://h:8000/v1/chat/completions"
    assert endpoint("http://h:8000/v1/", "/models") == "http://h:8000/v1/models"
    assert grpc_status_for_http(502) == grpc.StatusCode.UNAVAILABLE
    assert grpc_status_for_http(418) == grpc.StatusCode.UNKNOWN
