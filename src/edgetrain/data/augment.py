"""The paper's augmentation (its Keras layers), in torch ops on whole batches.

Keras: RandomRotation(0.15) -> up to +-0.15 of a full turn (+-54 degrees); RandomTranslation(0.1,
0.1) -> up to +-10 % of height and width; RandomFlip("horizontal_and_vertical") -> each flip with
probability 1/2; RandomContrast(0.1) -> per image, (x - channel mean) * U(0.9, 1.1) + mean,
clipped. Keras resamples once per layer with "reflect" fill; here rotation, translation and flips
are composed into one affine map per image and resampled once (`affine_grid` + `grid_sample`,
bilinear, reflection padding), which is both faster and sharper.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    rotation: float = 0.15,
    translation: float = 0.1,
    flips: bool = True,
    contrast: float = 0.1,
) -> torch.Tensor:
    """Randomly rotate, translate, flip and change the contrast of each image of a batch.

    `x` is float (B, C, H, W) in [-1, 1] (normalised images); returns a new tensor of the same
    shape, clipped to [-1, 1]. `rotation` is a fraction of a full turn, `translation` of the
    image size, `contrast` the largest relative change. All draws come from `generator`, so a
    batch is reproducible from its generator's seed alone.
    """
    b, _, h, w = x.shape
    u = torch.rand(b, 6, generator=generator, dtype=torch.float32) * 2 - 1  # (B, 6) in [-1, 1)
    angle = u[:, 0] * (rotation * 2 * math.pi)
    tx, ty = u[:, 1] * translation, u[:, 2] * translation  # fractions of width / height
    fx = torch.where(u[:, 3] < 0, -1.0, 1.0) if flips else torch.ones(b)
    fy = torch.where(u[:, 4] < 0, -1.0, 1.0) if flips else torch.ones(b)
    factor = 1 + u[:, 5] * contrast
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output -> input sampling map in normalised coords: S^-1 (R F) S, S = diag(W/2, H/2), so
    # rotation is by a true angle on non-square images; translation of 2t normalised = t x size.
    theta = torch.empty(b, 2, 3)
    theta[:, 0, 0] = cos * fx
    theta[:, 0, 1] = -sin * fy * (h / w)
    theta[:, 1, 0] = sin * fx * (w / h)
    theta[:, 1, 1] = cos * fy
    theta[:, 0, 2] = 2 * tx
    theta[:, 1, 2] = 2 * ty
    grid = F.affine_grid(theta, [b, x.shape[1], h, w], align_corners=False)  # (B, H, W, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if contrast:
        mean = out.mean((2, 3), keepdim=True)  # (B, C, 1, 1): Keras adjusts around channel means
        out = (out - mean).mul_(factor.view(b, 1, 1, 1)).add_(mean)
    return out.clamp_(-1.0, 1.0)
