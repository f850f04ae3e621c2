"""Batches from a decoded split: shuffle, normalise to [-1, 1], augment — reproducibly.

All randomness of epoch `e` comes from (seed, e): the shuffle order from one stream, each batch's
augmentation from its own stream (seed, e, batch). A run resumed at epoch `e` therefore sees
exactly the batches an uninterrupted run would, and switching augmentation on or off does not
change the order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from edgetrain.data.augment import augment_batch
from edgetrain.errors import EdgeTrainError

_SHUFFLE, _AUGMENT = 0, 1  # stream ids


def _generator(*key: int) -> torch.Generator:
    # SeedSequence mixes (seed, epoch, stream, batch) into well-separated 63-bit seeds.
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (..., 3, H, W) -> float32 in [-1, 1], as the paper rescales (x / 127.5 - 1)."""
    # mul() allocates, so a float32 input is never modified in place.
    return images.to(torch.float32).mul(1 / 127.5).sub_(1.0)


class BatchLoader:
    """Iterate over (x, y) batches of uint8 images held in memory.

    `images` is uint8 (N, 3, R, R) and `labels` int64 (N,), as `load_split` returns them.
    `loader.epoch(e)` yields x float32 (B, 3, R, R) in [-1, 1] and y int64 (B,); `len(loader)` is
    the number of batches per epoch. With `augment`, each batch gets the paper's augmentation
    (`edgetrain.data.augment`); with `channels_last`, x is in channels-last memory format.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool,
        augment: bool,
        seed: int,
        drop_last: bool = False,
        channels_last: bool = False,
        min_last: int = 1,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise EdgeTrainError(
                f"BatchLoader needs uint8 images of shape (N, 3, H, W), got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise EdgeTrainError(
                f"BatchLoader: {images.shape[0]} images but labels of shape {tuple(labels.shape)}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise EdgeTrainError(f"batch size must be a positive integer, got {batch_size!r}")
        if images.shape[0] == 0:
            raise EdgeTrainError("BatchLoader: no images to iterate over")
        if drop_last and images.shape[0] < batch_size:
            raise EdgeTrainError(
                f"BatchLoader: {images.shape[0]} images give no full batch of {batch_size} with "
                "drop_last; lower the batch size"
            )
        self.images = images
        self.labels = labels.to(torch.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = int(seed)
        self.drop_last = drop_last
        self.channels_last = channels_last
        # a last batch smaller than this is left out: training passes 2, because BatchNorm cannot
        # train on one image where a feature map is 1x1 (one value per channel); with shuffling
        # a different image sits out each epoch
        self.min_last = min_last

    def __len__(self) -> int:
        n, bs = self.images.shape[0], self.batch_size
        rest = n % bs
        keep_rest = rest and not self.drop_last and rest >= self.min_last
        return n // bs + (1 if keep_rest else 0)

    @property
    def num_samples(self) -> int:
        """Samples seen per epoch (fewer than the images when a last batch is left out)."""
        return min(len(self) * self.batch_size, self.images.shape[0])

    def epoch(self, e: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epoch `e`, determined by (seed, e) alone."""
        n = self.images.shape[0]
        if self.shuffle:
            order = torch.randperm(n, generator=_generator(self.seed, e, _SHUFFLE))
        else:
            order = torch.arange(n)
        return self._batches(int(e), order)

    def _batches(self, e: int, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        bs = self.batch_size
        for b in range(len(self)):
            idx = order[b * bs : (b + 1) * bs]
            x = normalize(self.images[idx])  # (B, 3, R, R) float32 in [-1, 1]
            if self.augment:
                x = augment_batch(x, _generator(self.seed, e, _AUGMENT, b))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
