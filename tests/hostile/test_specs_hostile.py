"""Hostile model specs and search spaces: a spec that would fill the memory is refused before
anything is built, every file is read within its cap (regular files only), and what the parsers
cannot take is one line with exit 2.

Whatever could take the machine's memory on a regression runs in a child process under an
address-space cap (`run_capped`), so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetrain.cli import main
from edgetrain.errors import EdgeTrainError
from edgetrain.models import get_spec, list_models
from edgetrain.search.space import MAX_CHOICES, load_space
from edgetrain.train import RunConfig
from edgetrain.train.budget import apply_device_profile, check_model_fits

TESTS = Path(__file__).resolve().parents[1]
TINY_SPACE = TESTS / "search" / "tiny-space.toml"
DATA = "synthetic-pcb:per_class=2,size=32"
# torch needs about 0.9 GiB of address space to import and run a tiny model (measured: VmPeak);
# 3 GiB leaves room for that and refuses the multi-GB allocations a regression would make
MEMORY_CAP = 3 << 30

# The child: runs each argv through the CLI (or builds a spec file: {"build": path}), and prints
# one JSON line with every [exit code, stderr] and its own peak RSS (VmHWM, since exec).
_DRIVER = r"""
import contextlib, io, json, sys, traceback
from edgetrain.cli import main

def cli(argv):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        return [None, err.getvalue() + traceback.format_exc()]
    return [code, err.getvalue()]

def build(path):
    import torch
    from edgetrain.errors import EdgeTrainError
    try:
        from edgetrain.models.found import read_spec_file
        from edgetrain.models.registry import build_model
        from edgetrain.train import RunConfig
        from edgetrain.train.budget import check_model_fits
        spec = read_spec_file(path)
        check_model_fits(RunConfig(model=spec.id, model_args=spec.to_dict(family=True),
                                   data="folder:/none", resolution=32, batch_size=2,
                                   precision="fp32", memory_budget_mb=1024.0))
        model = build_model(spec, num_classes=2)
        model(torch.zeros(2, 3, 32, 32)).sum().backward()
    except EdgeTrainError as exc:
        return [2, str(exc)]
    except BaseException:
        return [None, traceback.format_exc()]
    return [0, ""]

cases = json.load(open(sys.argv[1]))
results = [build(c["build"]) if isinstance(c, dict) else cli(c) for c in cases]
status = open("/proc/self/status").read()
peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({"results": results, "peak_rss_bytes": peak}))
"""


def run_capped(
    cases: list, tmp_path: Path, *, timeout: float = 120, env: dict[str, str] | None = None
) -> tuple[list[tuple[int | None, str]], int]:
    """Run `cases` in one fresh process whose address space is capped at `MEMORY_CAP`: each an
    argv for the CLI, or {"build": spec file} to size and build that spec for real. Returns
    [(exit code or None for a traceback, stderr)] and the process's peak RSS in bytes."""
    listing = tmp_path / f"cases-{time.monotonic_ns()}.json"
    listing.write_text(json.dumps(cases))

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(listing)],
        preexec_fn=cap,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return [tuple(r) for r in out["results"]], out["peak_rss_bytes"]


def assert_one_line(code: int | None, err: str, *needles: str) -> None:
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and err.count("\n") == 1, err[-2000:]
    for needle in needles:
        assert needle in err, err


def _spec_file(path: Path, name: str = "xception_lite", **changes) -> Path:
    d = get_spec(name).to_dict(family=True)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = d
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    path.write_text(json.dumps(d))
    return path


def _train(model: str, *extra: str) -> list[str]:
    return ["train", "--model", model, "--data", DATA, "--no-progress", *extra]


# --- 1: memory bombs are refused before anything is built ----------------------------------------

WIDE_TAIL = [{"kernel": 3, "width": 60000}, {"kernel": 3, "width": 60000}]
# within every bound, but 13 billion parameters: only the size estimate can refuse it
WIDE_MIDDLE = {
    "entry__2__convs": [{"kernel": 1, "width": 8192}] * 2,
    "middle__convs": [{"kernel": 1, "width": 8192}] * 3,
    "middle_depth": 64,
}


def test_memory_bombs_in_a_spec_are_refused_with_one_line(tmp_path):
    wide = _spec_file(tmp_path / "wide.json", tail__convs=WIDE_TAIL)  # the 14.4 GB
    deep = _spec_file(tmp_path / "deep.json", middle_depth=10**6)
    deeper = _spec_file(tmp_path / "deeper.json", middle_depth=2**63 - 1)
    big = _spec_file(tmp_path / "big.json", **WIDE_MIDDLE)
    budget = ["--memory-budget", "1GiB"]
    results, peak = run_capped(
        [
            _train(str(wide), *budget),
            _train(str(deep), *budget),
            _train(str(deeper)),
            _train(str(big), *budget),
            _train(str(big)),  # no budget: the memory this process can have
            {"build": str(big)},  # the library's own build refuses it too
        ],
        tmp_path,
    )
    assert_one_line(*results[0], "wide.json: tail:", "width in 1..8192")
    assert_one_line(*results[1], "middle_depth must be in 0..64, got 1000000")
    assert_one_line(*results[2], "middle_depth must be in 0..64")
    assert_one_line(*results[3], "sized from its spec before anything is built", "nothing fits")
    assert_one_line(*results[4], "before anything is built", "address-space limit")
    assert results[5][0] == 2 and "nothing fits" in results[5][1], results[5]
    assert peak < 1 << 30, f"peak RSS {peak / 2**20:.0f} MiB: something was built"
    assert not list(tmp_path.glob("runs*")), "a refused spec left a run directory"


def test_build_model_refuses_what_this_process_cannot_hold(tmp_path):
    big = _spec_file(tmp_path / "big.json", **WIDE_MIDDLE)
    code = (
        "from edgetrain.errors import EdgeTrainError\n"
        "from edgetrain.models.found import read_spec_file\n"
        "from edgetrain.models.registry import build_model\n"
        f"spec = read_spec_file(__import__('pathlib').Path({str(big)!r}))\n"
        "try:\n    build_model(spec, num_classes=2)\n"
        "except EdgeTrainError as exc:\n    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "too large to build here" in proc.stdout and "address-space limit" in proc.stdout


def test_a_huge_choice_in_a_space_is_refused_at_load(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(
        'base = "xception_lite"\n[genes.depth]\n'
        'choices = [0, 1, 9223372036854775807]\npaths = ["middle_depth"]\n'
    )
    search = ["search", "--space", str(space), "--data", DATA, "--memory-budget", "1GiB"]
    results, _ = run_capped([[*search, "--out", str(tmp_path / "out")]], tmp_path)
    assert_one_line(*results[0], "gene depth = 9223372036854775807", "middle_depth must be in")


def test_a_store_file_whose_id_is_not_its_content_is_refused_unbuilt(tmp_path):
    store = tmp_path / "specs"
    store.mkdir()
    fake = "xc-0123456789"
    _spec_file(store / f"{fake}.json", middle_depth=2**62)
    results, peak = run_capped([_train(fake)], tmp_path, env={"EDGETRAIN_SPECS": str(store)})
    assert_one_line(*results[0], f"not {fake}: its content does not match its id")
    assert peak < 1 << 30


# --- 2: only regular files, never more than the cap -------------------------------------------


def _special_files(tmp_path: Path, suffix: str) -> list[Path]:
    fifo = tmp_path / f"fifo{suffix}"
    os.mkfifo(fifo)
    folder = tmp_path / f"folder{suffix}"
    folder.mkdir()
    links = []
    for target in ("/dev/zero", "/dev/urandom", "/proc/self/status"):
        if Path(target).exists():
            link = tmp_path / f"{Path(target).name}{suffix}"
            link.symlink_to(target)
            links.append(link)
    big = tmp_path / f"big{suffix}"
    big.write_bytes(b" " * ((1 << 20) + 1))
    return [fifo, folder, big, *links]


def test_spec_and_space_files_must_be_regular_and_small(tmp_path):
    specs = _special_files(tmp_path, ".json")
    spaces = _special_files(tmp_path, ".toml")
    if Path("/dev/zero").exists():
        spaces.append(Path("/dev/zero"))
    search = ["search", "--data", DATA, "--memory-budget", "1GiB", "--out", str(tmp_path / "o")]
    cases = [_train(str(p)) for p in specs] + [[*search, "--space", str(p)] for p in spaces]
    results, peak = run_capped(cases, tmp_path, timeout=60)  # a FIFO read would hang
    for (code, err), path in zip(results, specs + spaces, strict=True):
        assert_one_line(code, err)
        assert str(path) in err, err
    assert peak < 1 << 30, f"peak RSS {peak / 2**20:.0f} MiB"


def test_a_store_entry_that_is_not_a_file_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGETRAIN_SPECS", str(tmp_path))
    os.mkfifo(tmp_path / "xc-0123456789.json")
    assert main(_train("xc-0123456789")) == 2
    assert "not a regular file" in capsys.readouterr().err


# --- 8: a gene with very many choices --------------------------------------------------------


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    def expired(*_: object) -> None:
        raise TimeoutError(f"took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _width_gene(path: Path, n: int) -> Path:
    choices = ", ".join(str(w) for w in range(1, n + 1))
    path.write_text(
        f'base = "xception_lite"\n[genes.tail]\nchoices = [{choices}]\n'
        'paths = ["tail.convs.0.width"]\n'
    )
    return path


def test_a_gene_of_60000_choices_is_refused_at_once(tmp_path):
    path = _width_gene(tmp_path / "space.toml", 60_000)  # 0.4 MB, under the file cap
    assert path.stat().st_size < 1 << 20
    t0 = time.perf_counter()
    with _deadline(20), pytest.raises(EdgeTrainError, match="60000 choices; a gene has at most"):
        load_space(path)
    assert time.perf_counter() - t0 < 2


def test_the_most_choices_a_gene_may_have_load_in_about_a_second(tmp_path):
    path = _width_gene(tmp_path / "space.toml", MAX_CHOICES)
    t0 = time.perf_counter()
    with _deadline(20):
        space = load_space(path)
    assert space.size == MAX_CHOICES
    assert time.perf_counter() - t0 < 3  # about 0.6 s here; the check is linear in the choices


# --- 11: what the parsers cannot take is one line ---------------------------------------------

DEEP_JSON = "[" * 100_000 + "]" * 100_000
HUGE_INT = "1" * 5000  # beyond Python's 4300-digit conversion limit


SPEC_TEXTS = {
    "deep": DEEP_JSON,
    "huge-int": '{"family": "xception", "middle_depth": ' + HUGE_INT + "}",
    "nested-family": '{"family": ' + "[" * 900 + "]" * 900 + "}",  # parses, and is no family
    "4000-digits": json.dumps(
        {**get_spec("xception_lite").to_dict(family=True), "middle_depth": 10**4000}
    ),
    "huge-float": json.dumps({**get_spec("xception_lite").to_dict(family=True), "stem": [1e308]}),
}
_GENE = 'base = "xception_lite"\n[genes.a]\nchoices = [{}]\npaths = ["{}"]\n'
SPACE_TEXTS = {
    "deep": 'base = "xception_lite"\nx = ' + "[" * 100_000,
    "huge-int": _GENE.format(HUGE_INT, "middle_depth"),
    "4000-digits": _GENE.format("9" * 4000, "stem.0"),
    "huge-float": _GENE.format("1.0e308", "middle_depth"),  # a whole number, of 309 digits
    "huge-index": _GENE.format("1", "entry." + "9" * 5000),
}


def test_hostile_spec_json_and_space_toml_are_one_line(tmp_path):
    cases = []
    for name, text in SPEC_TEXTS.items():
        (tmp_path / f"{name}.json").write_text(text)
        cases.append(_train(str(tmp_path / f"{name}.json")))
    search = ["search", "--data", DATA, "--memory-budget", "1GiB", "--out", str(tmp_path / "o")]
    for name, text in SPACE_TEXTS.items():
        (tmp_path / f"{name}.toml").write_text(text)
        cases.append([*search, "--space", str(tmp_path / f"{name}.toml")])
    results, _ = run_capped(cases, tmp_path)
    for (code, err), name in zip(results, [*SPEC_TEXTS, *SPACE_TEXTS], strict=True):
        assert_one_line(code, err)
        assert len(err) < 1000, (name, err)


def test_hostile_run_config_and_model_arg_are_one_line(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text('{"model": "xception_lite", "epochs": ' + HUGE_INT + "}")
    assert main(["train", "--config", str(config), "--data", DATA]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    config.write_text(DEEP_JSON)
    assert main(["train", "--config", str(config), "--data", DATA]) == 2
    assert "nested too deeply" in capsys.readouterr().err
    arg = f"middle_depth={HUGE_INT}"
    assert main(["train", "--model", "xception_lite", "--model-arg", arg, "--data", DATA]) == 2
    assert "--model-arg middle_depth" in capsys.readouterr().err


# --- 17: paths must be a list -----------------------------------------------------------------


def test_paths_as_a_string_is_refused_not_read_letter_by_letter(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('base = "xception_lite"\n[genes.d]\nchoices = [0, 1]\npaths = "middle_depth"\n')
    with pytest.raises(
        EdgeTrainError, match=r'paths must be a list, e.g. paths = \["middle_depth"\]'
    ):
        load_space(path)
    assert load_space(TINY_SPACE).size == 4  # the list form still loads


# --- and what fits is not refused ---------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_the_model_zoo_fits_a_small_device(name):
    # the shipped 4 GB board's profile (a 2.5 GiB budget), at the paper's 224 px and batch 16
    config = RunConfig(model=name, data=DATA, device="raspberry-pi-4-4gb")
    assert apply_device_profile(config).memory_budget_mb == pytest.approx(2560)
    check_model_fits(config.replace(memory_budget_mb=None, resolution=64))  # no budget, 64 px
