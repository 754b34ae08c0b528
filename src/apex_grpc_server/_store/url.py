"""Which database a server stores chats and jobs in: the URL rules, without I/O.

Standard library only: ``ServerConfig.validate`` and the CLI use it before
anything is imported or opened.

- no URL: SQLite, ``apex.sqlite3`` in the data directory (the embedded default);
- ``sqlite:///path/to/file``: SQLite at that path;
- ``postgresql://...`` or ``postgres://...``: PostgreSQL (libpq URL syntax),
  needing the ``postgres`` extra.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DATABASE_URL_ENV = "APEX_GRPC_DATABASE_URL"
"""The environment variable ``serve`` reads the database URL from (``--database`` wins)."""
POSTGRES_EXTRA = "pip install 'apex-grpc[postgres]'"
POSTGRES_SCHEMES = ("postgresql", "postgres")
STORE_FILE = "apex.sqlite3"


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """A parsed database setting: SQLite at ``path``, or PostgreSQL at ``url``."""

    kind: str  # "sqlite" or "postgresql"
    path: Path | None = None
    url: str | None = None

    def describe(self) -> str:
        """Where the data is, safe to log (no password)."""
        if self.kind == "sqlite":
            return f"SQLite {self.path}"
        return f"PostgreSQL {redact(self.url or '')}"


def parse(url: str | None, data_dir: Path) -> DatabaseTarget:
    """The database ``url`` names (None or "": SQLite in ``data_dir``); ValueError if unknown."""
    if not url:
        return DatabaseTarget("sqlite", path=data_dir / STORE_FILE)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            raise ValueError(
                f"database_url: a SQLite URL is sqlite:///path/to/file, got {redact(url)!r}"
            )
        return DatabaseTarget("sqlite", path=Path(url[len("sqlite://") :]).expanduser())
    if scheme in POSTGRES_SCHEMES:
        if not urlsplit(url).hostname and "host=" not in url:
            raise ValueError(
                f"database_url: {redact(url)!r} names no host (postgresql://user@host/dbname)"
            )
        return DatabaseTarget("postgresql", url=url)
    raise ValueError(
        f"database_url: unknown scheme {scheme or '(none)'!r} in {redact(url)!r}"
        " (expected postgresql://, postgres:// or sqlite:///)"
    )


def check_driver(target: DatabaseTarget) -> None:
    """Raise ValueError naming the install line when PostgreSQL's driver is missing."""
    if target.kind != "postgresql":
        return
    missing = [
        name for name in ("psycopg", "psycopg_pool") if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ValueError(
            f"database_url: PostgreSQL needs {' and '.join(missing)}, not installed:"
            f" {POSTGRES_EXTRA}"
        )


_PASSWORD_IN_NETLOC = re.compile(r"(?<=://)([^:/@?#]*):[^/?#]*@")  # to the last @
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and error messages)."""
    url = _PASSWORD_IN_NETLOC.sub(r"\1:***@", url)
    return _PASSWORD_PARAM.sub(r"\1***", url)
