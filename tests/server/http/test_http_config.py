"""The HTTP face's settings: checked with the rest of ServerConfig, each error naming one."""

from __future__ import annotations

from pathlib import Path

import pytest

from apex_grpc_server import ServerConfig


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"http_port": 70000}, "http_port: must be in [0, 65535], got 70000"),
        ({"http_port": -1}, "http_port: must be in [0, 65535]"),
        ({"cors_origins": ("http://a.example",)}, "cors_origins: set http_port too"),
        ({"http_port": 0, "cors_origins": ("a.example",)}, "'a.example' is not an origin"),
        ({"http_port": 0, "cors_origins": ("http://a.example/app",)}, "without a path"),
        ({"http_port": 0, "cors_origins": ("ftp://a.example",)}, "'ftp://a.example'"),
        ({"http_port": 0, "unix_socket": "/tmp/x.sock"}, "not beside a unix socket"),
    ],
)
def test_bad_http_settings_are_refused_by_name(
    settings: dict[str, object], named: str, tmp_path: Path
) -> None:
    config = ServerConfig(engine="echo", allow_any_key=True, data_dir=tmp_path, **settings)  # type: ignore[arg-type]
    with pytest.raises(ValueError) as raised:
        config.validate()
    assert named in str(raised.value)


@pytest.mark.parametrize(
    "origins", [(), ("*",), ("http://localhost:5173", "https://app.example.com")]
)
def test_good_http_settings_pass(origins: tuple[str, ...], tmp_path: Path) -> None:
    ServerConfig(
        engine="echo", allow_any_key=True, data_dir=tmp_path, http_port=0, cors_origins=origins
    ).validate()
