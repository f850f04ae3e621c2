"""Atomic file writes (a crash at any moment leaves the old file or the new one, never a torn
one) and bounded reads of untrusted files (regular files only, never more than a cap)."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from edgetrain.errors import EdgeTrainError, describe_os_error


def atomic_write_bytes(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(fileobj)` on a temp file in `path`'s folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def read_bounded(path: Path, max_bytes: int, what: str) -> bytes:
    """The bytes of the regular file `path` (symlinks followed), at most `max_bytes` of them.

    `stat().st_size` cannot be trusted as a cap: it is 0 for /dev/zero, FIFOs and /proc files,
    and a file may grow while it is read. So only regular files are accepted (opened without
    blocking, so a FIFO is refused instead of waited on), and at most `max_bytes + 1` bytes are
    read. Raises `EdgeTrainError` naming `what` (e.g. "model spec") for anything else.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise EdgeTrainError(f"cannot read {what}: {describe_os_error(exc)}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise EdgeTrainError(f"{path}: not a regular file, so not a {what}")
        chunks, left = [], max_bytes + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise EdgeTrainError(f"cannot read {what}: {describe_os_error(exc)}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise EdgeTrainError(f"{path}: larger than {max_bytes} bytes, too large for a {what}")
    return data


def read_text_bounded(path: Path, max_bytes: int, what: str) -> str:
    """`read_bounded` decoded as UTF-8; undecodable bytes are refused with one line."""
    try:
        return read_bounded(path, max_bytes, what).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EdgeTrainError(f"{path}: not UTF-8 text, so not a {what} ({exc.reason})") from None


def parse_json(text: str, where: str) -> Any:
    """`json.loads` with the parser's own limits turned into one line: syntax errors, integers
    beyond Python's 4300-digit conversion limit (ValueError), nesting beyond the recursion
    limit (RecursionError)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EdgeTrainError(f"{where}: not valid JSON ({_short(exc)})") from None


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """`tomllib.loads` with the same limits as `parse_json` turned into one line."""
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError is a ValueError
        raise EdgeTrainError(f"{where}: not valid TOML ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
