"""`synthetic-pcb` — procedural PCB patches with one of PKU-Market-PCB's six defect types.

Each patch is drawn in a 64-unit design frame and rendered at any size:

- a pair of parallel traces through the centre (the site of the trace defects), a plated pad with
  a drilled hole beside them (the site of the missing hole), and, at random, a second via, a third
  trace and copper pours with isolation gaps; the layout is turned by 0 or 180 degrees (+-3
  degrees) and shifted a little, like a crop centred on a defect. With 90-degree turns as well,
  a small CNN trained on 480 images learnt markedly less (measured); augmentation
  (`BatchLoader(augment=True)`) adds other angles where wanted;
- one defect: Missing_hole (the pad's hole is absent), Mouse_bite (bites out of a trace edge),
  Open_circuit (a trace cut through), Short (a bridge between the two traces), Spur (a spike from
  a trace into the gap, not reaching across), Spurious_copper (a copper island in the gap).

Everything except the defect is drawn from the same distributions for every class: substrate
and copper colours, plating (silver or gold), lighting gradient, blotches, blur and sensor noise
are random per image, so no global colour or brightness statistic tells the classes apart. Masks
are drawn with Pillow at 2x and box-filtered (antialiasing); colouring, lighting, blur and noise
run on the whole batch in torch. Image `i` depends only on (seed, i), so any subset renders alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from edgetrain.data.refs import SyntheticPCB
from edgetrain.data.splits import Record, Splits, finish, split_per_class

CLASSES = ["Missing_hole", "Mouse_bite", "Open_circuit", "Short", "Spur", "Spurious_copper"]
GENERATOR_VERSION = 1  # bump when the pictures change, so caches and records can tell
_UNITS = 64.0  # the design frame is 64 x 64 units, centre (32, 32)
_FAR = 110.0  # traces run this far past the centre so any rotation still covers the patch


class _Layers:
    """Pillow masks of one patch, drawn in design units through a rotation + shift."""

    names = ("copper", "pour", "metal", "hole")

    def __init__(self, canvas: int, angle: float, shift: tuple[float, float]) -> None:
        self.k = canvas / _UNITS  # canvas px per design unit
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self.shift = shift
        self.images = {n: Image.new("L", (canvas, canvas), 0) for n in self.names}
        self.draw = {n: ImageDraw.Draw(im) for n, im in self.images.items()}

    def xy(self, x: float, y: float) -> tuple[float, float]:
        dx, dy = x - 32.0, y - 32.0
        return (
            (self.cos * dx - self.sin * dy + 32.0 + self.shift[0]) * self.k,
            (self.sin * dx + self.cos * dy + 32.0 + self.shift[1]) * self.k,
        )

    def poly(self, layer: str, pts: Sequence[tuple[float, float]], fill: int = 255) -> None:
        self.draw[layer].polygon([self.xy(x, y) for x, y in pts], fill=fill)

    def rect(self, layer: str, x0: float, y0: float, x1: float, y1: float, fill: int = 255) -> None:
        self.poly(layer, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill)

    def bar(
        self,
        layer: str,
        p0: tuple[float, float],
        p1: tuple[float, float],
        w: float,
        fill: int = 255,
    ) -> None:
        """A straight trace of width w from p0 to p1 with round ends."""
        (x0, y0), (x1, y1) = p0, p1
        n = math.hypot(x1 - x0, y1 - y0) or 1.0
        nx, ny = -(y1 - y0) / n * w / 2, (x1 - x0) / n * w / 2
        self.poly(
            layer,
            [(x0 + nx, y0 + ny), (x1 + nx, y1 + ny), (x1 - nx, y1 - ny), (x0 - nx, y0 - ny)],
            fill,
        )
        self.disc(layer, p0, w / 2, fill)
        self.disc(layer, p1, w / 2, fill)

    def disc(self, layer: str, c: tuple[float, float], r: float, fill: int = 255) -> None:
        cx, cy = self.xy(*c)
        rk = r * self.k
        self.draw[layer].ellipse([cx - rk, cy - rk, cx + rk, cy + rk], fill=fill)

    def arrays(self) -> np.ndarray:
        """(4, S, S) uint8 masks, box-filtered 2x down from the canvas (antialiased edges)."""
        return np.stack([np.asarray(self.images[n].reduce(2)) for n in self.names])


def _blob(rng: np.random.Generator, c: tuple[float, float], r: float) -> list[tuple[float, float]]:
    """An irregular closed polygon of mean radius r around c."""
    n = int(rng.integers(7, 11))
    ang = np.sort(rng.uniform(0, 2 * math.pi, n))
    rad = r * rng.uniform(0.7, 1.15, n)
    return [(c[0] + q * math.cos(a), c[1] + q * math.sin(a)) for a, q in zip(ang, rad, strict=True)]


def _draw_patch(rng: np.random.Generator, label: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks (4, S, S) and colour/lighting parameters (18,) of one patch.

    All layout randomness is drawn before the defect, so the layout's distribution does not
    depend on the class; colours and lighting are drawn after it, from fixed ranges.
    """
    angle = math.radians(180.0 * int(rng.integers(2)) + rng.uniform(-3.0, 3.0))
    lay = _Layers(2 * size, angle, (rng.uniform(-1, 1), rng.uniform(-1, 1)))
    t = rng.uniform(4.0, 6.0)  # trace width, units
    t_b = t * rng.uniform(0.85, 1.15)
    gap = t * rng.uniform(1.8, 2.6)  # copper-free gap between the pair: the short/spur/island site
    ya, yb = 32.0 - (gap + t) / 2, 32.0 + (gap + t_b) / 2  # centre lines of traces A and B
    edge_a, edge_b = ya + t / 2, yb - t_b / 2  # the edges that face the gap
    side = 1.0 if rng.random() < 0.5 else -1.0  # the pad sits below B (+1) or above A (-1)
    outer = yb + t_b / 2 if side > 0 else ya - t / 2
    r_pad = t * rng.uniform(1.0, 1.35)
    r_hole = r_pad * rng.uniform(0.4, 0.55)
    pad = (32.0 + rng.uniform(-9, 9), outer + side * (t * rng.uniform(0.6, 1.0) + r_pad))
    w_pad_trace = t * rng.uniform(0.6, 0.9)
    vias = [pad]
    if rng.random() < 0.7:  # a second via beside the pad, always drilled
        dx = (1 if rng.random() < 0.5 else -1) * r_pad * rng.uniform(2.6, 4.0)
        vias.append((pad[0] + dx, pad[1] + side * rng.uniform(-1.0, 1.0)))
    third = rng.random() < 0.75  # a third trace on the far side of the pair
    t_c = t * rng.uniform(0.8, 1.2)
    far_edge = ya - t / 2 if side > 0 else yb + t_b / 2
    yc = far_edge - side * (t * rng.uniform(1.2, 2.5) + t_c / 2)
    clearance = t * rng.uniform(1.0, 2.0)
    pour_pad_side, pour_far_side = rng.random() < 0.6, rng.random() < 0.6

    # Copper pours: half-planes beyond the outermost features, with isolation cut around traces.
    if pour_pad_side:
        y0 = pad[1] + side * (r_pad + clearance)
        lay.rect("pour", -_FAR, y0, _FAR + 64, y0 + side * _FAR)
        for v in vias:
            lay.bar("pour", v, (v[0], v[1] + side * _FAR), w_pad_trace + 2 * clearance, 0)
            lay.disc("pour", v, r_pad + clearance, 0)
    if pour_far_side:
        y0 = (yc - side * t_c / 2 if third else far_edge) - side * clearance
        lay.rect("pour", -_FAR, y0, _FAR + 64, y0 - side * _FAR)
    # Traces, pads, holes.
    lay.rect("copper", -_FAR, ya - t / 2, _FAR + 64, ya + t / 2)
    lay.rect("copper", -_FAR, yb - t_b / 2, _FAR + 64, yb + t_b / 2)
    if third:
        lay.rect("copper", -_FAR, yc - t_c / 2, _FAR + 64, yc + t_c / 2)
    for v in vias:
        lay.bar("copper", v, (v[0], v[1] + side * _FAR), w_pad_trace)
        lay.disc("copper", v, r_pad)
        lay.disc("metal", v, r_pad)
    for v in vias[1:]:
        lay.disc("hole", v, r_hole)

    # The defect, near the centre of the pair at x = xd.
    xd = 32.0 + rng.uniform(-1, 1)
    on_a = rng.random() < 0.5
    name = CLASSES[label]
    if name == "Missing_hole":
        # 70 %: plugged, the plating covers the hole; 30 %: unplated, the copper shows through.
        if rng.random() >= 0.7:
            lay.disc("metal", pad, r_hole, 0)
    else:
        lay.disc("hole", pad, r_hole)
    if name == "Mouse_bite":
        y_t, w_t = (ya, t) if on_a else (yb, t_b)
        edge = y_t + (w_t / 2 if rng.random() < 0.5 else -w_t / 2)
        inward = -1.0 if edge > y_t else 1.0
        n = int(rng.integers(1, 4))
        r = w_t * rng.uniform(0.5, 0.6)
        x = xd - (n - 1) * r * 1.1
        for _ in range(n):
            lay.disc(
                "copper",
                (x + rng.uniform(-0.2, 0.2) * r, edge + inward * rng.uniform(0, 0.3) * r),
                r,
                0,
            )
            x += r * rng.uniform(2.0, 2.6)
    elif name == "Open_circuit":
        y_t, w_t = (ya, t) if on_a else (yb, t_b)
        half = t * rng.uniform(0.6, 1.0)
        lo, hi = y_t - w_t / 2 - 1, y_t + w_t / 2 + 1
        ragged = rng.uniform(-0.25, 0.25, 4) * t  # uneven cut edges
        xs = (xd - half, xd + half, xd + half, xd - half)
        ys = (lo, lo, hi, hi)
        lay.poly("copper", [(x + r, y) for x, y, r in zip(xs, ys, ragged, strict=True)], 0)
    elif name == "Short":
        w = t * rng.uniform(0.8, 1.2)
        s1, s2 = rng.uniform(-0.6, 0.6, 2) * t
        lo, hi = edge_a - 0.3 * t, edge_b + 0.3 * t_b
        lay.poly(
            "copper",
            [
                (xd - w / 2 + s1, lo),
                (xd + w / 2 + s1, lo),
                (xd + w / 2 + s2, hi),
                (xd - w / 2 + s2, hi),
            ],
        )
    elif name == "Spur":
        base, tip = t * rng.uniform(0.8, 1.2), t * rng.uniform(0.0, 0.3)
        length = gap * rng.uniform(0.55, 0.7)
        slant = rng.uniform(-0.8, 0.8) * t
        y0, sgn = (edge_a - 0.3 * t, 1.0) if on_a else (edge_b + 0.3 * t_b, -1.0)
        y1 = y0 + sgn * (length + 0.3 * t)
        lay.poly(
            "copper",
            [
                (xd - base / 2, y0),
                (xd + base / 2, y0),
                (xd + slant + tip / 2, y1),
                (xd + slant - tip / 2, y1),
            ],
        )
    elif name == "Spurious_copper":
        r = gap * rng.uniform(0.28, 0.34)
        c = (xd, (edge_a + edge_b) / 2 + rng.uniform(-0.1, 0.1) * gap)
        lay.poly("copper", _blob(rng, c, r))

    # Colours and lighting, all independent of the class.
    hue = rng.uniform(0.27, 0.42)
    sub = (hue, rng.uniform(0.6, 0.95), rng.uniform(0.2, 0.42))
    cu = (
        hue + rng.uniform(-0.02, 0.02),
        sub[1] * rng.uniform(0.7, 1.0),
        min(sub[2] * rng.uniform(1.6, 2.3), 0.95),
    )
    if rng.random() < 0.5:
        metal = (rng.uniform(0, 1), rng.uniform(0.0, 0.12), rng.uniform(0.6, 0.85))  # tin / silver
    else:
        metal = (rng.uniform(0.1, 0.14), rng.uniform(0.35, 0.6), rng.uniform(0.65, 0.9))  # gold
    hole = (0.0, 0.0, rng.uniform(0.12, 0.6))
    light = (rng.uniform(0.85, 1.15), rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2))
    extra = (
        rng.uniform(0.0, 0.06),
        rng.uniform(0.0, 0.7),
        rng.uniform(0.004, 0.03),
    )  # blotch, blur px, noise
    colours = [c for hsv in (sub, cu, metal, hole) for c in _hsv_to_rgb(*hsv)]
    params = np.array([*colours, *light, *extra], dtype=np.float32)  # (18,)
    masks = lay.arrays()
    masks[0] = np.maximum(masks[0], masks[1])  # pours are copper too
    return masks, params


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, u = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, u, p), (q, v, p), (p, v, u), (p, q, v), (u, p, v), (v, p, q)][i]


def _compose(
    masks: torch.Tensor, params: torch.Tensor, blotch: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Colour, light, blur and add noise to a batch -> uint8 (N, 3, S, S).

    masks: uint8 (N, 4, S, S) copper/pour/metal/hole; params: (N, 18) from `_draw_patch`;
    blotch: (N, 1, 6, 6) and noise: (N, 3, S, S) standard normal.
    """
    n, _, s, _ = masks.shape
    masks = masks.to(torch.float32) / 255.0
    col = params[:, :12].view(n, 4, 3, 1, 1)  # substrate, copper, metal, hole RGB
    copper, metal, hole = masks[:, 0:1], masks[:, 2:3], masks[:, 3:4]
    img = col[:, 0] * (1 - copper) + col[:, 1] * copper  # (N, 3, S, S)
    img = img * (1 - metal) + col[:, 2] * metal
    img = img * (1 - hole) + col[:, 3] * hole
    # Lighting: gain x linear gradient x low-frequency blotches.
    ramp = torch.linspace(-0.5, 0.5, s)
    gain, gx, gy = params[:, 12, None, None], params[:, 13, None, None], params[:, 14, None, None]
    field = gain * (1 + gx * ramp[None, None, :] + gy * ramp[None, :, None])  # (N, S, S)
    blotch = F.interpolate(blotch, size=(s, s), mode="bicubic", align_corners=False)
    img = img * field[:, None] * (1 + params[:, 15, None, None, None] * blotch)
    # Per-image Gaussian blur (sigma in output px) as one grouped separable convolution.
    sigma = params[:, 16].clamp_min(1e-3) * s / 64.0
    radius = 2
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x[None] / sigma[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(3, 0)  # (N*3, 5)
    flat = F.pad(img.reshape(1, n * 3, s, s), (radius,) * 4, mode="replicate")
    flat = F.conv2d(flat, k.view(n * 3, 1, 1, -1), groups=n * 3)
    flat = F.conv2d(flat, k.view(n * 3, 1, -1, 1), groups=n * 3)
    img = flat.view(n, 3, s, s)
    img = img + params[:, 17, None, None, None] * noise
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def render(indices: Sequence[int], labels: Sequence[int], *, size: int, seed: int) -> torch.Tensor:
    """Render patches `indices` (with their `labels`) at `size` px: uint8 (N, 3, size, size).

    Image i depends only on (seed, i), never on which other images are rendered with it.
    """
    if len(indices) == 0:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    out = []
    for start in range(0, len(indices), 256):  # bounded memory for big sets / sizes
        idx, lab = indices[start : start + 256], labels[start : start + 256]
        masks, params, noise_seeds = [], [], []
        for i, label in zip(idx, lab, strict=True):
            rng = np.random.default_rng([seed, GENERATOR_VERSION, int(i)])
            m, p = _draw_patch(rng, int(label), size)
            masks.append(m)
            params.append(p)
            noise_seeds.append(int(rng.integers(2**62)))
        # Noise from each image's own generator, so a subset renders identically.
        blotch, noise = [], []
        for ns in noise_seeds:
            gen = torch.Generator().manual_seed(ns)
            blotch.append(torch.randn(1, 6, 6, generator=gen))
            noise.append(torch.randn(3, size, size, generator=gen))
        out.append(
            _compose(
                torch.from_numpy(np.stack(masks)),
                torch.from_numpy(np.stack(params)),
                torch.stack(blotch),
                torch.stack(noise),
            )
        )
    return torch.cat(out)


def resolve_synthetic(ref: SyntheticPCB, *, seed: int) -> Splits:
    """Records for `per_class` patches of each class, split per class 80/10/10 by `seed`."""
    n = ref.per_class
    size = ref.size
    records = [
        Record(
            source=f"synthetic-pcb#{i} ({CLASSES[i // n]})",
            label=i // n,
            index=i,
            size=(size, size) if size else None,
            mode="RGB",
        )
        for i in range(n * len(CLASSES))
    ]
    parts = split_per_class(records, CLASSES, seed=seed)
    return finish(ref, list(CLASSES), parts, seed=seed)
