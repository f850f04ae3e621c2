"""BatchLoader: shapes, normalisation, reproducibility from (seed, epoch), the paper's augmentation."""

from __future__ import annotations

import math

import pytest
import torch

from edgetrain.data import BatchLoader, augment_batch, normalize
from edgetrain.errors import EdgeTrainError


def _data(n: int = 37, r: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, r, r), generator=g, dtype=torch.uint8)
    return images, torch.arange(n) % 5


def _epoch(loader: BatchLoader, e: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.epoch(e))


def test_batches_shapes_dtypes_and_range() -> None:
    images, labels = _data()
    loader = BatchLoader(images, labels, batch_size=8, shuffle=True, augment=True, seed=0)
    batches = _epoch(loader, 0)
    assert len(loader) == len(batches) == math.ceil(37 / 8)
    x, y = batches[0]
    assert x.shape == (8, 3, 12, 12) and x.dtype == torch.float32
    assert y.shape == (8,) and y.dtype == torch.int64
    assert batches[-1][0].shape[0] == 37 - 4 * 8
    assert all(b[0].min() >= -1 and b[0].max() <= 1 for b in batches)
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == sorted(labels.tolist())  # every sample once per epoch


def test_plain_batches_are_the_images_rescaled_to_minus_one_one() -> None:
    images, labels = _data()
    loader = BatchLoader(images, labels, batch_size=10, shuffle=False, augment=False, seed=0)
    x = torch.cat([x for x, _ in loader.epoch(0)])
    assert torch.allclose(x, images.float() / 127.5 - 1, atol=1e-6)
    assert torch.equal(
        normalize(torch.tensor([0, 255], dtype=torch.uint8)), torch.tensor([-1.0, 1.0])
    )


def test_drop_last_and_channels_last() -> None:
    images, labels = _data()
    loader = BatchLoader(
        images,
        labels,
        batch_size=8,
        shuffle=True,
        augment=False,
        seed=0,
        drop_last=True,
        channels_last=True,
    )
    batches = _epoch(loader, 0)
    assert len(loader) == len(batches) == 4 and loader.num_samples == 32
    assert all(x.shape[0] == 8 for x, _ in batches)
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last)


def test_every_epoch_is_a_function_of_seed_and_epoch_only() -> None:
    images, labels = _data()

    def make() -> BatchLoader:
        return BatchLoader(images, labels, batch_size=8, shuffle=True, augment=True, seed=3)

    straight = make()
    run = [_epoch(straight, e) for e in range(4)]
    resumed = make()  # a fresh process resuming at epoch 2
    for e in (2, 3):
        again = _epoch(resumed, e)
        assert all(
            torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
            for a, b in zip(run[e], again, strict=True)
        )
    assert not torch.equal(run[0][0][1], run[1][0][1])  # epochs differ in order
    other_seed = BatchLoader(images, labels, batch_size=8, shuffle=True, augment=True, seed=4)
    assert not torch.equal(_epoch(other_seed, 0)[0][0], run[0][0][0])


def test_augmentation_does_not_change_the_order() -> None:
    images, labels = _data()
    on = BatchLoader(images, labels, batch_size=8, shuffle=True, augment=True, seed=1)
    off = BatchLoader(images, labels, batch_size=8, shuffle=True, augment=False, seed=1)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(_epoch(on, 5), _epoch(off, 5), strict=True))
    assert not all(
        torch.equal(a[0], b[0]) for a, b in zip(_epoch(on, 5), _epoch(off, 5), strict=True)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch size"),
        ({"batch_size": 64, "drop_last": True}, "no full batch"),
    ],
)
def test_bad_loader_settings(kwargs: dict, message: str) -> None:
    images, labels = _data()
    args = {"shuffle": True, "augment": False, "seed": 0, **kwargs}
    with pytest.raises(EdgeTrainError, match=message):
        BatchLoader(images, labels, **args)


def test_bad_tensors_are_rejected() -> None:
    images, labels = _data()
    with pytest.raises(EdgeTrainError, match="uint8"):
        BatchLoader(images.float(), labels, batch_size=4, shuffle=False, augment=False, seed=0)
    with pytest.raises(EdgeTrainError, match="labels"):
        BatchLoader(images, labels[:-1], batch_size=4, shuffle=False, augment=False, seed=0)


# --- the augmentation itself ---------------------------------------------------------------


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_identity_settings_leave_images_unchanged() -> None:
    x = normalize(_data(8, 16)[0])
    out = augment_batch(x, _gen(), rotation=0, translation=0, flips=False, contrast=0)
    assert torch.allclose(out, x, atol=1e-5)


def test_flips_are_exact_mirror_images() -> None:
    x = normalize(_data(64, 10)[0])
    out = augment_batch(x, _gen(), rotation=0, translation=0, flips=True, contrast=0)
    kinds = set()
    for a, b in zip(x, out, strict=True):
        for name, f in {"none": a, "h": a.flip(2), "v": a.flip(1), "hv": a.flip(1).flip(2)}.items():
            if torch.allclose(b, f, atol=1e-5):
                kinds.add(name)
                break
        else:
            pytest.fail("an output is not a flip of its input")
    assert kinds == {"none", "h", "v", "hv"}


def test_translation_stays_within_ten_percent() -> None:
    # A single bright pixel column moves by at most 10 % of the width.
    x = -torch.ones(32, 1, 20, 20)
    x[:, :, :, 10] = 1
    out = augment_batch(x, _gen(), rotation=0, translation=0.1, flips=False, contrast=0)
    cols = out[:, 0].mean(1).argmax(1).float()  # (B,) column of the line
    assert (cols - 10).abs().max() <= 2.0 + 1e-6
    assert (cols != 10).any()


def test_rotation_turns_a_line_by_up_to_54_degrees() -> None:
    # A horizontal bar; its orientation after augmentation via the principal axis of bright pixels.
    r = 41
    x = -torch.ones(48, 1, r, r)
    x[:, :, r // 2 - 1 : r // 2 + 2, 8:-8] = 1
    out = augment_batch(x, _gen(1), rotation=0.15, translation=0, flips=False, contrast=0)
    ys, xs = torch.meshgrid(torch.arange(r).float(), torch.arange(r).float(), indexing="ij")
    angles = []
    for img in out[:, 0]:
        w = (img > 0).float()
        mx, my = (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()
        cxx = (w * (xs - mx) ** 2).sum()
        cyy = (w * (ys - my) ** 2).sum()
        cxy = (w * (xs - mx) * (ys - my)).sum()
        angles.append(0.5 * math.degrees(math.atan2(2 * cxy, cxx - cyy)))
    a = torch.tensor(angles).abs()
    assert a.max() <= 54 + 3 and a.max() > 30  # up to +-0.15 turn, and it does rotate


def test_contrast_changes_spread_around_the_mean_by_at_most_ten_percent() -> None:
    x = torch.linspace(-0.5, 0.5, 16).repeat(40, 3, 16, 1)
    out = augment_batch(x, _gen(), rotation=0, translation=0, flips=False, contrast=0.1)
    ratio = out.std((1, 2, 3)) / x.std((1, 2, 3))
    assert ratio.min() >= 0.9 - 1e-4 and ratio.max() <= 1.1 + 1e-4
    assert torch.allclose(out.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5)


def test_augmentation_is_reproducible_from_the_generator_seed() -> None:
    x = normalize(_data(8, 16)[0])
    assert torch.equal(augment_batch(x, _gen(7)), augment_batch(x, _gen(7)))
    assert not torch.equal(augment_batch(x, _gen(7)), augment_batch(x, _gen(8)))
