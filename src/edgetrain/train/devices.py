"""Device profiles: what a target board offers a training process (threads, a memory budget).

Shipped profiles live in `edgetrain/devices/*.toml`; a user's own TOML file has the same keys:
name, description, memory (the board's RAM), budget (what training may use), threads. Sizes
follow edgetrain's convention (MB = MiB, GB = GiB; see `edgetrain.measure.units`).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edgetrain.errors import EdgeTrainError
from edgetrain.measure.units import parse_size
from edgetrain.train.accelerator import ACCELERATOR_KINDS


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    memory_bytes: int  # the device's RAM
    budget_bytes: int  # what the training process may use (whole-process peak RSS)
    threads: int
    # where the board trains: "cpu", or "cuda" for a Jetson's GPU (its RAM is shared, so the
    # budget holds the process RSS and the GPU's allocations together)
    accelerator: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shipped_devices() -> list[str]:
    files = resources.files("edgetrain") / "devices"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def _accelerator(value: object) -> str:
    if value not in ACCELERATOR_KINDS:
        raise ValueError(
            f"accelerator must be one of {', '.join(ACCELERATOR_KINDS)}, got {value!r}"
        )
    return str(value)


def load_device(name_or_path: str) -> DeviceProfile:
    """A shipped profile by name, or a user's TOML file with name, memory, budget, threads."""
    path = Path(name_or_path)
    if path.suffix == ".toml":
        if not path.is_file():
            raise EdgeTrainError(f"no device profile file {path}")
        text = path.read_text()
    elif name_or_path in shipped_devices():
        text = (resources.files("edgetrain") / "devices" / f"{name_or_path}.toml").read_text()
    else:
        raise EdgeTrainError(
            f"unknown device {name_or_path!r}; shipped: {', '.join(shipped_devices())} "
            "(or a path to your own .toml with name, memory, budget, threads)"
        )
    try:
        raw = tomllib.loads(text)
        threads = int(raw["threads"])
        if not 1 <= threads <= 1024:
            raise ValueError(f"threads must be 1..1024, got {threads}")
        return DeviceProfile(
            name=str(raw.get("name", path.stem)),
            description=str(raw.get("description", "")),
            memory_bytes=parse_size(raw["memory"]),
            budget_bytes=parse_size(raw.get("budget", raw["memory"])),
            threads=threads,
            accelerator=_accelerator(raw.get("accelerator", "cpu")),
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise EdgeTrainError(f"bad device profile {name_or_path}: {exc!r}") from None
