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
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from edgetrain.data.refbase import DatasetRef
from edgetrain.data.splits import Record, Splits, finish, split_per_class
from edgetrain.errors import EdgeTrainError

CLASSES = ["Missing_hole", "Mouse_bite", "Open_circuit", "Short", "Spur", "Spurious_copper"]
GENERATOR_VERSION = 1  # bump when the pictures change, so caches and records can tell
_UNITS = 64.0  # the design frame is 64 x 64 units, centre (32, 32)
_FAR = 110.0  # traces run this far past the centre so any rotation still covers the patch


@dataclass(frozen=True)
class SyntheticPCB(DatasetRef):
    """Procedural PCB patches with one of the six PKU defect types; no files needed."""

    per_class: int = 100  # images per class, before the 80/10/10 split (6 x 100 = 600 in all)
    size: int | None = None  # render size in px; None: render at the resolution asked for
    seed: int = 0  # the generator's seed (the split's shuffle uses resolve's seed)

    kind: ClassVar[str] = "synthetic-pcb"
    has_path: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.per_class < 2:
            raise EdgeTrainError(
                f"synthetic-pcb: per_class must be >= 2 (one train, one test image), got {self.per_class}"
            )
        if self.size is not None and not 8 <= self.size <= 4096:
            raise EdgeTrainError(f"synthetic-pcb: size must be in 8..4096 px, got {self.size}")


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


@dataclass(frozen=True, slots=True)
class _Geometry:
    """The layout of one patch in design units (before rotation): where the defect can go."""

    t: float  # width of trace A
    t_b: float  # width of trace B
    gap: float  # copper-free gap between the pair: the short/spur/island site
    ya: float  # centre line of trace A
    yb: float  # centre line of trace B
    edge_a: float  # the edge of A that faces the gap
    edge_b: float  # the edge of B that faces the gap
    side: float  # the pad sits below B (+1) or above A (-1)
    pad: tuple[float, float]
    r_pad: float
    r_hole: float
    w_pad_trace: float
    vias: list[tuple[float, float]]  # the pad first, then maybe a second via
    third: bool  # a third trace on the far side of the pair
    t_c: float  # width of the third trace
    yc: float  # its centre line
    far_edge: float  # the pair's outer edge on the side away from the pad
    clearance: float  # isolation gap between pours and traces
    pour_pad_side: bool  # a copper pour beyond the pad
    pour_far_side: bool  # a copper pour beyond the third trace (or the pair)


def _draw_patch(rng: np.random.Generator, label: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks (4, S, S) and colour/lighting parameters (18,) of one patch.

    All layout randomness is drawn before the defect, so the layout's distribution does not
    depend on the class; colours and lighting are drawn after it, from fixed ranges. The order
    of the draws from `rng` decides every image: a change to it needs a new GENERATOR_VERSION.
    """
    angle = math.radians(180.0 * int(rng.integers(2)) + rng.uniform(-3.0, 3.0))
    lay = _Layers(2 * size, angle, (rng.uniform(-1, 1), rng.uniform(-1, 1)))
    g = _layout(rng)
    _draw_board(lay, g)
    _draw_defect(lay, g, rng, CLASSES[label])
    params = _appearance(rng)
    masks = lay.arrays()
    masks[0] = np.maximum(masks[0], masks[1])  # pours are copper too
    return masks, params


def _layout(rng: np.random.Generator) -> _Geometry:
    """Draw the traces, pad, vias and pours of one patch."""
    t = rng.uniform(4.0, 6.0)  # trace width, units
    t_b = t * rng.uniform(0.85, 1.15)
    gap = t * rng.uniform(1.8, 2.6)
    ya, yb = 32.0 - (gap + t) / 2, 32.0 + (gap + t_b) / 2
    side = 1.0 if rng.random() < 0.5 else -1.0
    outer = yb + t_b / 2 if side > 0 else ya - t / 2
    r_pad = t * rng.uniform(1.0, 1.35)
    r_hole = r_pad * rng.uniform(0.4, 0.55)
    pad = (32.0 + rng.uniform(-9, 9), outer + side * (t * rng.uniform(0.6, 1.0) + r_pad))
    w_pad_trace = t * rng.uniform(0.6, 0.9)
    vias = [pad]
    if rng.random() < 0.7:  # a second via beside the pad, always drilled
        dx = (1 if rng.random() < 0.5 else -1) * r_pad * rng.uniform(2.6, 4.0)
        vias.append((pad[0] + dx, pad[1] + side * rng.uniform(-1.0, 1.0)))
    third = rng.random() < 0.75
    t_c = t * rng.uniform(0.8, 1.2)
    far_edge = ya - t / 2 if side > 0 else yb + t_b / 2
    yc = far_edge - side * (t * rng.uniform(1.2, 2.5) + t_c / 2)
    clearance = t * rng.uniform(1.0, 2.0)
    pour_pad_side, pour_far_side = rng.random() < 0.6, rng.random() < 0.6
    return _Geometry(
        t=t,
        t_b=t_b,
        gap=gap,
        ya=ya,
        yb=yb,
        edge_a=ya + t / 2,
        edge_b=yb - t_b / 2,
        side=side,
        pad=pad,
        r_pad=r_pad,
        r_hole=r_hole,
        w_pad_trace=w_pad_trace,
        vias=vias,
        third=third,
        t_c=t_c,
        yc=yc,
        far_edge=far_edge,
        clearance=clearance,
        pour_pad_side=pour_pad_side,
        pour_far_side=pour_far_side,
    )


def _draw_board(lay: _Layers, g: _Geometry) -> None:
    """Pours, traces, pads and the second via's hole (the pad's hole depends on the defect)."""
    # Copper pours: half-planes beyond the outermost features, with isolation cut around traces.
    if g.pour_pad_side:
        y0 = g.pad[1] + g.side * (g.r_pad + g.clearance)
        lay.rect("pour", -_FAR, y0, _FAR + 64, y0 + g.side * _FAR)
        for v in g.vias:
            lay.bar("pour", v, (v[0], v[1] + g.side * _FAR), g.w_pad_trace + 2 * g.clearance, 0)
            lay.disc("pour", v, g.r_pad + g.clearance, 0)
    if g.pour_far_side:
        y0 = (g.yc - g.side * g.t_c / 2 if g.third else g.far_edge) - g.side * g.clearance
        lay.rect("pour", -_FAR, y0, _FAR + 64, y0 - g.side * _FAR)
    lay.rect("copper", -_FAR, g.ya - g.t / 2, _FAR + 64, g.ya + g.t / 2)
    lay.rect("copper", -_FAR, g.yb - g.t_b / 2, _FAR + 64, g.yb + g.t_b / 2)
    if g.third:
        lay.rect("copper", -_FAR, g.yc - g.t_c / 2, _FAR + 64, g.yc + g.t_c / 2)
    for v in g.vias:
        lay.bar("copper", v, (v[0], v[1] + g.side * _FAR), g.w_pad_trace)
        lay.disc("copper", v, g.r_pad)
        lay.disc("metal", v, g.r_pad)
    for v in g.vias[1:]:
        lay.disc("hole", v, g.r_hole)


def _draw_defect(lay: _Layers, g: _Geometry, rng: np.random.Generator, name: str) -> None:
    """Draw defect `name` near the centre of the pair, at x = xd on trace A or B."""
    xd = 32.0 + rng.uniform(-1, 1)
    on_a = rng.random() < 0.5
    if name != "Missing_hole":
        lay.disc("hole", g.pad, g.r_hole)  # the pad is drilled unless its hole is the defect
    _DEFECTS[name](lay, g, rng, xd, on_a)


def _missing_hole(
    lay: _Layers, g: _Geometry, rng: np.random.Generator, xd: float, on_a: bool
) -> None:
    # 70 %: plugged, the plating covers the hole; 30 %: unplated, the copper shows through.
    if rng.random() >= 0.7:
        lay.disc("metal", g.pad, g.r_hole, 0)


def _mouse_bite(
    lay: _Layers, g: _Geometry, rng: np.random.Generator, xd: float, on_a: bool
) -> None:
    y_t, w_t = (g.ya, g.t) if on_a else (g.yb, g.t_b)
    edge = y_t + (w_t / 2 if rng.random() < 0.5 else -w_t / 2)
    inward = -1.0 if edge > y_t else 1.0
    n = int(rng.integers(1, 4))
    r = w_t * rng.uniform(0.5, 0.6)
    x = xd - (n - 1) * r * 1.1
    for _ in range(n):
        c = (x + rng.uniform(-0.2, 0.2) * r, edge + inward * rng.uniform(0, 0.3) * r)
        lay.disc("copper", c, r, 0)
        x += r * rng.uniform(2.0, 2.6)


def _open_circuit(
    lay: _Layers, g: _Geometry, rng: np.random.Generator, xd: float, on_a: bool
) -> None:
    y_t, w_t = (g.ya, g.t) if on_a else (g.yb, g.t_b)
    half = g.t * rng.uniform(0.6, 1.0)
    lo, hi = y_t - w_t / 2 - 1, y_t + w_t / 2 + 1
    ragged = rng.uniform(-0.25, 0.25, 4) * g.t  # uneven cut edges
    xs = (xd - half, xd + half, xd + half, xd - half)
    ys = (lo, lo, hi, hi)
    lay.poly("copper", [(x + r, y) for x, y, r in zip(xs, ys, ragged, strict=True)], 0)


def _short(lay: _Layers, g: _Geometry, rng: np.random.Generator, xd: float, on_a: bool) -> None:
    w = g.t * rng.uniform(0.8, 1.2)
    s1, s2 = rng.uniform(-0.6, 0.6, 2) * g.t
    lo, hi = g.edge_a - 0.3 * g.t, g.edge_b + 0.3 * g.t_b
    lay.poly(
        "copper",
        [
            (xd - w / 2 + s1, lo),
            (xd + w / 2 + s1, lo),
            (xd + w / 2 + s2, hi),
            (xd - w / 2 + s2, hi),
        ],
    )


def _spur(lay: _Layers, g: _Geometry, rng: np.random.Generator, xd: float, on_a: bool) -> None:
    base, tip = g.t * rng.uniform(0.8, 1.2), g.t * rng.uniform(0.0, 0.3)
    length = g.gap * rng.uniform(0.55, 0.7)
    slant = rng.uniform(-0.8, 0.8) * g.t
    y0, sgn = (g.edge_a - 0.3 * g.t, 1.0) if on_a else (g.edge_b + 0.3 * g.t_b, -1.0)
    y1 = y0 + sgn * (length + 0.3 * g.t)
    lay.poly(
        "copper",
        [
            (xd - base / 2, y0),
            (xd + base / 2, y0),
            (xd + slant + tip / 2, y1),
            (xd + slant - tip / 2, y1),
        ],
    )


def _spurious_copper(
    lay: _Layers, g: _Geometry, rng: np.random.Generator, xd: float, on_a: bool
) -> None:
    r = g.gap * rng.uniform(0.28, 0.34)
    c = (xd, (g.edge_a + g.edge_b) / 2 + rng.uniform(-0.1, 0.1) * g.gap)
    lay.poly("copper", _blob(rng, c, r))


# Each defect's drawing, called after the layout; all draw from the patch's `rng`.
_DEFECTS = {
    "Missing_hole": _missing_hole,
    "Mouse_bite": _mouse_bite,
    "Open_circuit": _open_circuit,
    "Short": _short,
    "Spur": _spur,
    "Spurious_copper": _spurious_copper,
}


def _appearance(rng: np.random.Generator) -> np.ndarray:
    """Colours and lighting (18,), all independent of the class: RGB of substrate, copper,
    metal and hole (12), gain and x/y gradient (3), blotch strength, blur px, noise (3)."""
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
    extra = (rng.uniform(0.0, 0.06), rng.uniform(0.0, 0.7), rng.uniform(0.004, 0.03))
    colours = [c for hsv in (sub, cu, metal, hole) for c in _hsv_to_rgb(*hsv)]
    return np.array([*colours, *light, *extra], dtype=np.float32)  # (18,)


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


def render_records(
    ref: SyntheticPCB,
    records: Sequence[Record],
    resolution: int,
    *,
    progress: bool = False,
    label: str = "",
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """The pixel source of `synthetic-pcb`: images uint8 (N, 3, R, R), labels int64 (N,), no skips.

    Renders at the ref's `size` (or at R when it has none) and resizes to R (bilinear, with
    antialiasing) when they differ. Rendering is quick and shows no progress bar (`progress`
    and `label` are accepted so that every kind's pixel source is called alike).
    """
    size = ref.size or resolution
    images = render(
        [r.index for r in records],  # type: ignore[misc]
        [r.label for r in records],
        size=size,
        seed=ref.seed,
    )
    if size != resolution:
        x = F.interpolate(
            images.float(), size=(resolution, resolution), mode="bilinear", antialias=True
        )
        images = x.round_().clamp_(0, 255).to(torch.uint8)
    return images, torch.tensor([r.label for r in records], dtype=torch.int64), []
