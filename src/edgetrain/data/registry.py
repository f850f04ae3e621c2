"""The table of dataset kinds: name -> reference class, resolver and pixel source.

Every kind module (`caltech`, `pku`, `folder`, `synthetic`) defines its reference class and its
resolver and imports nothing above it; this table imports them, and `refs` (parsing, `resolve`),
`cache` (`load_split`) and `inspect` (contact sheets) look kinds up here. A new kind is a new
module plus one row below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from edgetrain.data.caltech import Caltech101, resolve_caltech
from edgetrain.data.decode import load_files
from edgetrain.data.folder import Folder, resolve_folder
from edgetrain.data.pku import PKUPCB, resolve_pku
from edgetrain.data.refbase import DatasetRef
from edgetrain.data.splits import Record, Splits
from edgetrain.data.synthetic import SyntheticPCB, render_records, resolve_synthetic
from edgetrain.errors import EdgeTrainError

# images uint8 (M, 3, R, R), labels int64 (M,), (source, reason) for the N - M records left out
Pixels = tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]


class PixelSource(Protocol):
    """Turns records of one kind into pixels at `resolution` px (see `Pixels`)."""

    def __call__(
        self,
        ref: DatasetRef,
        records: Sequence[Record],
        resolution: int,
        *,
        progress: bool,
        label: str,
    ) -> Pixels: ...


@dataclass(frozen=True)
class Kind:
    """One dataset kind: its reference class, how it resolves and where its pixels come from."""

    ref_type: type[DatasetRef]  # frozen dataclass of the options; `ref_type.kind` names the kind
    usage: str  # the reference's shape, listed in error messages
    resolve: Callable[..., Splits]  # (ref, *, seed) -> Splits; lists and probes, never decodes
    pixels: PixelSource
    cached: bool = True  # False: making the pixels again is cheaper than reading them back

    @property
    def name(self) -> str:
        return self.ref_type.kind


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(Caltech101, "caltech101:PATH", resolve_caltech, load_files),
        Kind(PKUPCB, "pku-pcb:PATH", resolve_pku, load_files),
        Kind(Folder, "folder:PATH[?group=REGEX]", resolve_folder, load_files),
        Kind(
            SyntheticPCB,
            "synthetic-pcb[:per_class=N,size=PX,seed=S]",
            resolve_synthetic,
            render_records,
            cached=False,
        ),
    )
}


def usage() -> str:
    """'expected one of ...': the shapes of all references, for error messages."""
    return "expected one of " + ", ".join(k.usage for k in KINDS.values())


def kind_of(ref: DatasetRef) -> Kind:
    """The table row of `ref`'s kind."""
    kind = KINDS.get(ref.kind)
    if kind is None or not isinstance(ref, kind.ref_type):
        raise EdgeTrainError(f"{type(ref).__name__} is not a registered dataset kind; " + usage())
    return kind
