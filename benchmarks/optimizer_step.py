"""Adam's step on the CPU: PyTorch's per-tensor loop (its CPU default), foreach, and fused.

    python benchmarks/optimizer_step.py [--models xception,xception_lite,mobilenet_v2]
        [--threads N] [--repeat 10] [--rounds 2]

For each model: every parameter gets a random gradient, then each implementation takes 3
warm-up steps and --repeat timed steps; the table gives the median wall and CPU (user + system)
milliseconds per step, and each implementation's CPU time as a ratio of the per-tensor loop's.
The implementations alternate for --rounds rounds, so a load that comes and goes on a shared
machine touches each of them alike; the median over rounds is printed. Only the optimizer step
is timed: the forward and backward pass are the same whichever implementation updates.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

IMPLS = {"per-tensor": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_steps(name: str, impl: str, repeat: int) -> tuple[float, float]:
    """(median wall ms, median CPU ms) of one Adam step over `name`'s parameters."""
    import torch

    from edgetrain import create_model

    model = create_model(name, num_classes=6)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **IMPLS[impl])
    for _ in range(3):
        opt.step()
    wall, cpu = [], []
    for _ in range(repeat):
        c0, t0 = _cpu_s(), time.perf_counter()
        opt.step()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((_cpu_s() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="xception,xception_lite,mobilenet_v2")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        "| model | params (M) | tensors | implementation | wall ms | CPU ms | CPU vs per-tensor |"
    )
    print("|---|---|---|---|---|---|---|")
    from edgetrain import create_model

    for name in args.models.split(","):
        params = list(create_model(name, num_classes=6).parameters())
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in IMPLS}
        for _ in range(args.rounds):
            for impl in IMPLS:
                runs[impl].append(time_steps(name, impl, args.repeat))
        base = statistics.median(c for _, c in runs["per-tensor"])
        for impl, got in runs.items():
            wall, cpu = statistics.median(w for w, _ in got), statistics.median(c for _, c in got)
            print(
                f"| {name} | {sum(p.numel() for p in params) / 1e6:.1f} | {len(params)} | {impl} "
                f"| {wall:.1f} | {cpu:.1f} | {cpu / base:.2f} |"
            )


if __name__ == "__main__":
    main()
