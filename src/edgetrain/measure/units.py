"""The unit convention of edgetrain.measure: MB means MiB, 2**20 bytes."""

from __future__ import annotations

# Every `*_mb` key or property that edgetrain.measure produces is bytes / MB. MiB, not 1e6,
# because RSS, page sizes and /proc/meminfo all count in powers of two. Records built from these
# numbers (record.json) should keep the `_mb` = MiB meaning.
MB = 2**20


def to_mb(nbytes: float) -> float:
    return nbytes / MB
