"""Generated malformed configs, experiments and checkpoints through the public entry points:
every one ends with exit 0 or 2 (one line, no traceback) and writes nothing outside its folder."""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import pytest
import torch

from edgetrain.cli import main
from edgetrain.train import RunConfig

SEED = 20261203
VALID = RunConfig(model="mobilenet_v2", data="folder:/nonexistent/edgetrain-fuzz").to_dict()
WEIRD = [
    None, True, False, 0, -1, 1, 2**31, 2**70, -(2**70), 0.5, -0.0, 1e308, 1e-300,
    "", "3", "nan", "\x00", "é" * 300, [], [1, "a"], {}, {"a": [None]}, "x" * 10_000,
]  # fmt: skip


def _mutations(rng: random.Random, n: int) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(n):
        kind = rng.randrange(5)
        cfg = dict(VALID)
        if kind <= 1:  # a field gets a value of another type or out of range
            for key in rng.sample(sorted(cfg), rng.randint(1, 3)):
                cfg[key] = rng.choice(WEIRD)
            cfg["data"] = VALID["data"] if rng.random() < 0.7 else cfg["data"]
            out.append(json.dumps(cfg, allow_nan=True).encode())
        elif kind == 2:  # unknown or missing keys
            cfg.pop(rng.choice(sorted(cfg)))
            cfg[rng.choice(["epoch", "lr_", "Model", "\ud800"[:0] + "zz"])] = 1
            out.append(json.dumps(cfg).encode())
        elif kind == 3:  # truncated or corrupted text
            text = json.dumps(cfg).encode()
            cut = rng.randrange(len(text))
            out.append(text[:cut] + bytes(rng.randrange(256) for _ in range(rng.randrange(4))))
        else:  # not a JSON object at all, or not text
            out.append(rng.choice([b"[]", b"null", b"3", b'"cfg"', bytes(range(256)), b"\xff\xfe"]))
    return out


def _no_strays(cwd: Path, before: set[str]) -> None:
    assert {p.name for p in cwd.iterdir()} == before, "a file appeared outside the run folder"


@pytest.fixture
def in_empty_dir(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_fuzz_run_configs(tmp_path, in_empty_dir, capsys):
    rng = random.Random(SEED)
    for i, blob in enumerate(_mutations(rng, 80)):
        path = tmp_path / f"c{i}.json"
        path.write_bytes(blob)
        out = tmp_path / f"run{i}"
        code = main(["train", "--no-progress", "--config", str(path), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2, (blob[:200], err)
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert not out.exists(), "a refused config left a run directory"
        _no_strays(in_empty_dir, set())


def _experiment_texts(rng: random.Random, n: int) -> list[bytes]:
    base = {
        "name": "fuzz",
        "models": ["mobilenet_v2"],
        "datasets": {"d": "synthetic-pcb:per_class=2,size=32"},
        "seeds": [0],
        "run": {"epochs": 1, "resolution": 32},
    }
    out = []
    for _ in range(n):
        exp = json.loads(json.dumps(base))
        target = rng.choice(["name", "models", "datasets", "seeds", "init", "run", "run.epochs",
                             "run.model", "run.threads", "extra"])  # fmt: skip
        value = rng.choice(WEIRD[:20])
        if target.startswith("run."):
            exp["run"][target[4:]] = value
        else:
            exp[target] = value
        out.append(_toml(exp, rng))
    return out


def _toml(exp: dict, rng: random.Random) -> bytes:
    # a hand-rolled writer that also writes what TOML cannot hold (None -> a bare word)
    lines = []
    for key, value in exp.items():
        if isinstance(value, dict):
            continue
        lines.append(f"{key} = {_tval(value)}")
    for key, value in exp.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f'"{k}" = {_tval(v)}' for k, v in value.items()]
    text = "\n".join(lines).encode()
    if rng.random() < 0.15:
        text = text[: rng.randrange(len(text) + 1)] + b"\xff[["
    return text


def _tval(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "nothing"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_tval(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f'"{k}" = {_tval(x)}' for k, x in v.items()) + "}"
    return repr(v)


def test_fuzz_experiment_files(tmp_path, in_empty_dir, capsys):
    rng = random.Random(SEED + 1)
    for i, blob in enumerate(_experiment_texts(rng, 60)):
        path = tmp_path / f"e{i}.toml"
        path.write_bytes(blob)
        out = tmp_path / f"bench{i}"
        code = main(["bench", str(path), "--out", str(out), "--enqueue-only"])
        err = capsys.readouterr().err
        assert code in (0, 2), (blob[:300], err)
        assert "Traceback" not in err, err
        if code == 2:
            assert err.count("\n") == 1, err
        _no_strays(in_empty_dir, set())


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _checkpoints(rng: random.Random, good: bytes, n: int) -> list[bytes]:
    def saved(obj) -> bytes:
        import io

        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    fixed = [
        b"",
        b"\x00" * 64,
        pickle.dumps(_Evil()),
        saved([1, 2]),
        saved(torch.zeros(3)),
        saved({"model": "weights"}),
        saved({"model": {"a": torch.zeros(1)}}),
        saved({"model": {}, "optimizer": [], "epoch": -1}),
    ]
    out = list(fixed)
    while len(out) < n:
        cut = rng.randrange(len(good))
        flip = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            flip[rng.randrange(len(flip))] = rng.randrange(256)
        out.append(rng.choice([good[:cut], bytes(flip)]))
    return out


def test_fuzz_checkpoints_for_init_and_resume(tmp_path, in_empty_dir, capsys):
    from edgetrain.train import train

    tiny = dict(
        model="xception_lite", model_args={"middle_depth": 1},
        data="synthetic-pcb:per_class=4,size=32", resolution=32, batch_size=8, epochs=1,
        threads=1, latency_repeat=1,
    )  # fmt: skip
    source = tmp_path / "source"
    train(RunConfig(**tiny), source, progress=False)
    good = (source / "checkpoint.pt").read_bytes()
    rng = random.Random(SEED + 2)
    blobs = _checkpoints(rng, good, 60)
    args = ["train", "--no-progress", "--model", "xception_lite", "--model-arg", "middle_depth=1"]
    args += ["--data", tiny["data"], "--resolution", "32", "--epochs", "1", "--threads", "1"]
    for i, blob in enumerate(blobs):
        path = tmp_path / f"k{i}.pt"
        path.write_bytes(blob)
        out = tmp_path / f"init{i}"
        code = main([*args, "--latency-repeat", "1", "--init", str(path), "--out", str(out)])
        err = capsys.readouterr().err
        assert "Traceback" not in err and "weights_only=False" not in err, err
        assert code in (0, 2), err
        assert not (in_empty_dir / "pwned").exists()
        if code == 2:
            assert not out.exists(), "a refused --init left a run directory"
    # the resume path reads the same files: a few of them through --resume
    for i, blob in enumerate(blobs[:6]):
        run = tmp_path / f"resume{i}"
        run.mkdir()
        (run / "config.json").write_text(json.dumps(RunConfig(**tiny).to_dict()))
        (run / "checkpoint.pt").write_bytes(blob)
        code = main(["train", "--resume", "--out", str(run), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, err
    _no_strays(in_empty_dir, set())
