"""The unit convention of edgetrain: MB means MiB, 2**20 bytes, in every figure and every input.

Every `*_mb` key or property is bytes / MB. MiB, not 10**6, because RSS, page sizes and
/proc/meminfo all count in powers of two. Sizes a user types (`--memory-budget`, device profiles)
follow the same convention: KB = KiB = 2**10, MB = MiB = 2**20, GB = GiB = 2**30, TB = TiB = 2**40
bytes, so `1GB` and `1GiB` are the same budget and `1024MB` equals both. A bare number is MB.
"""

from __future__ import annotations

import re

from edgetrain.errors import EdgeTrainError

MB = 2**20

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$")
_POWER = {"b": 0, "k": 10, "m": 20, "g": 30, "t": 40}  # unit letter -> power of two


def to_mb(nbytes: float) -> float:
    return nbytes / MB


def parse_size(text: str | float | int) -> int:
    """'1.5GB' or '1.5GiB' -> 1610612736 bytes (binary units, see the module doc); a bare
    number, typed or given as int/float, is MB."""
    if isinstance(text, bool):
        raise EdgeTrainError(f"not a memory size: {text!r}")
    if isinstance(text, int | float):
        n = int(text * MB)
    else:
        m = _SIZE.match(str(text))
        if not m:
            raise EdgeTrainError(f"not a memory size: {text!r} (use e.g. 1.5GB, 1GiB, 800MB)")
        unit = (m.group(2) or "m").lower()[0]
        n = int(float(m.group(1)) * 2 ** _POWER[unit])
    if n <= 0:
        raise EdgeTrainError(f"a memory size must be positive, got {text!r}")
    return n


def format_mb(nbytes: float) -> str:
    """Bytes as edgetrain prints them: '1,536 MB' (MB = 2**20 bytes)."""
    return f"{nbytes / MB:,.0f} MB"
