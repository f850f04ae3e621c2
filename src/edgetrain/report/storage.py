"""Opening an Optuna results store by URL, and what every command checks before it does.

A SQLite URL must name a file in a folder that exists (a typo must not leave a new folder and
an empty database behind), and where results are expected (a worker joining a study, a
report), a file that exists. A missing database driver is named with the extra that installs
it, and a postgresql:// URL uses the driver that is installed. Passwords in URLs are never
printed. Bench, worker and search open their storage through
`edgetrain.bench.study.open_storage`, which adds heartbeats; the report opens it as it is.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetrain.errors import EdgeTrainError

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

POSTGRES_EXTRA = "pip install -e '.[postgres]' (or make setup EXTRAS=dev,postgres)"


def redact(url: str) -> str:
    """`url` without its password (or user), for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def sqlite_path(url: str) -> Path | None:
    """The file of sqlite:///relative.db or sqlite:////abs.db; None for other storages and for
    in-memory databases."""
    if not url.startswith("sqlite:///"):
        return None
    db = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(db) if db and db != ":memory:" else None


def check_sqlite_url(url: str, *, must_exist: bool) -> None:
    """Refuse a SQLite URL whose folder is missing, or whose file is when `must_exist`."""
    db = sqlite_path(url)
    if db is None:
        return
    if not db.parent.is_dir():
        raise EdgeTrainError(
            f"storage {url}: no folder {db.parent}; check the path (a database is created in "
            "an existing folder, the folder is not)"
        )
    if must_exist and not db.is_file():
        raise EdgeTrainError(
            f"storage {url}: no database {db}; check the path (this command reads a study, "
            "`edgetrain bench` or `edgetrain search` creates one)"
        )


def open_rdb(url: str, *, must_exist: bool = False, **storage_kwargs: Any) -> RDBStorage:
    """An Optuna RDB storage for `url`, after `check_sqlite_url`; every failure is one line."""
    from optuna.storages import RDBStorage

    check_sqlite_url(url, must_exist=must_exist)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # several processes (bench + heartbeat thread, workers, a report) use one file: wait
        # for each other's locks instead of failing
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        return RDBStorage(with_installed_driver(url), engine_kwargs=engine_kwargs, **storage_kwargs)
    except Exception as exc:  # bad URL, server down, missing driver
        raise EdgeTrainError(f"cannot open study storage {redact(url)}: {_why(url, exc)}") from None


# PostgreSQL drivers SQLAlchemy knows, by module: the `postgres` extra installs psycopg2
_POSTGRES_DRIVERS = ("psycopg2", "psycopg")


def with_installed_driver(url: str) -> str:
    """A postgresql:// URL that names no driver, with one that is installed: SQLAlchemy picks
    psycopg2 for it before 2.1 and psycopg (3) from 2.1 on, so the extra's psycopg2 would
    otherwise go unused. Other URLs come back as they are."""
    if not url.startswith("postgresql://"):
        return url
    for module in _POSTGRES_DRIVERS:
        if importlib.util.find_spec(module) is not None:
            return url.replace("postgresql://", f"postgresql+{module}://", 1)
    return url


def _why(url: str, exc: Exception) -> str:
    if not isinstance(exc, ImportError):
        # one line: SQLAlchemy adds a hint line and a link to its documentation
        return " ".join(str(exc).split("(Background on this error")[0].split())
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme == "postgresql":
        return f"no PostgreSQL driver is installed: {POSTGRES_EXTRA}"
    missing = getattr(exc.__cause__, "name", None) or "its module"
    return f"the database driver for {scheme} ({missing}) is not installed"
