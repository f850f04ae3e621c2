"""Datasets and the input pipeline: references, splits, decode-once caching, batches.

    splits = resolve("caltech101:../shared/data/caltech-101", seed=0)   # no decoding yet
    images, labels = load_split(splits, "train", resolution=224)       # decoded once, cached
    loader = BatchLoader(images, labels, batch_size=16, shuffle=True,
                         augment=default_augment(splits.ref), seed=0)
    for x, y in loader.epoch(0): ...                                  # x in [-1, 1]

Reference strings (`caltech101:PATH`, `pku-pcb:PATH`, `folder:PATH?group=REGEX`,
`synthetic-pcb:per_class=N`) are described in `edgetrain.data.refs`. Each kind is one module
(`caltech`, `pku`, `folder`, `synthetic`: its reference class and resolver), listed with its pixel
source in `edgetrain.data.registry`; `refs`, `cache` and `inspect` look kinds up there. The
file-backed kinds list their files with `edgetrain.data.walk` (links followed, each file once).

After `load_split` has run for every split, `splits.counts()` counts what the tensors hold and
`splits.skipped_report()` lists every file left out, with its reason and stage (resolve/decode).
"""

from edgetrain.data.augment import augment_batch
from edgetrain.data.cache import default_cache_dir, load_split
from edgetrain.data.inspect import contact_sheet, summarize
from edgetrain.data.loader import BatchLoader, normalize
from edgetrain.data.refs import (
    PKUPCB,
    Caltech101,
    DatasetRef,
    Folder,
    SyntheticPCB,
    as_ref,
    default_augment,
    parse_ref,
    resolve,
)
from edgetrain.data.splits import SPLIT_NAMES, Record, Splits

__all__ = [
    "PKUPCB",
    "SPLIT_NAMES",
    "BatchLoader",
    "Caltech101",
    "DatasetRef",
    "Folder",
    "Record",
    "Splits",
    "SyntheticPCB",
    "as_ref",
    "augment_batch",
    "contact_sheet",
    "default_augment",
    "default_cache_dir",
    "load_split",
    "normalize",
    "parse_ref",
    "resolve",
    "summarize",
]
