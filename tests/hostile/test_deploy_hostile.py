"""Hostile input to export/predict/evaluate: memory bombs in tiny .onnx files (run under a memory
cap), special files, thread counts, NaN logits, the sidecar's normalisation, skipped files in
evaluate, pickled checkpoints. Models are built in tmp_path with the `onnx` helper: a few
hundred bytes each, no training."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from edgetrain.cli import main
from edgetrain.deploy import graphcheck
from edgetrain.deploy.evaluate import evaluate
from edgetrain.deploy.predict import load_predictor, predict_files
from edgetrain.deploy.runtime import load_onnx
from edgetrain.deploy.sidecar import Sidecar
from edgetrain.errors import EdgeTrainError
from edgetrain.preprocess import normalize
from edgetrain.threads import available_cpus
from edgetrain.train.checkpoint import load_checkpoint
from edgetrain.train.config import RunConfig

REPO = Path(__file__).resolve().parents[2]
RES = 32
AS_LIMIT = 1536 * 2**20  # the address-space cap of the memory-bomb subprocesses
PEAK_LIMIT_MB = 400  # what a refused bomb may cost (a benign tiny model peaks near 250 MB)

Extra = Callable[[list, list], str]  # (nodes, initializers) -> name of a scalar added to logits


def build_model(
    path: Path,
    *,
    classes: tuple[str, ...] = ("a", "b"),
    weights: np.ndarray | None = None,
    extra: Extra | None = None,
    opset: int = 18,
    side: dict | None = None,
) -> Path:
    """A classifier: logits = mean over the image of each channel @ weights (3, C), plus
    whatever `extra` adds; with a sidecar (checksum included) beside it."""
    c = len(classes)
    w = np.ones((3, c), np.float32) if weights is None else weights.astype(np.float32)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array([2, 3]), "axes")]
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["m"], keepdims=0),
        helper.make_node("MatMul", ["m", "W"], ["mm"]),
    ]
    out = "mm"
    if extra:
        nodes.append(helper.make_node("Add", ["mm", extra(nodes, inits)], ["sum"]))
        out = "sum"
    nodes.append(helper.make_node("Identity", [out], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, RES, RES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", c])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.save(model, path)
    write_sidecar(path, classes, **(side or {}))
    return path


def write_sidecar(path: Path, classes: tuple[str, ...], **fields) -> None:
    d = {"format": "edgetrain-onnx-sidecar", "version": 1, "classes": list(classes)}
    d.update(resolution=RES, onnx_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    d.update(fields)
    Path(f"{path}.json").write_text(json.dumps(d))


def constant_of_shape(n_floats: int, *, from_input: bool) -> Extra:
    """ConstantOfShape of `n_floats`, summed to a scalar: a constant shape, or one computed from
    the input's batch size (which no load-time folding can see)."""

    def extra(nodes: list, inits: list) -> str:
        if from_input:
            inits.append(numpy_helper.from_array(np.array([n_floats]), "k"))
            nodes += [
                helper.make_node("Shape", ["input"], ["n"], start=0, end=1),
                helper.make_node("Mul", ["n", "k"], ["shape"]),
            ]
        else:
            inits.append(numpy_helper.from_array(np.array([n_floats]), "shape"))
        one = numpy_helper.from_array(np.array([1.0], np.float32))
        nodes += [
            helper.make_node("ConstantOfShape", ["shape"], ["big"], value=one),
            helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        ]
        return "total"

    return extra


def string_bomb(nodes: list, inits: list) -> str:
    """A 64-byte string doubled 20 times (64 MiB) and tiled 16 times: string characters are
    allocated outside onnxruntime's arena, so only refusing the graph bounds them."""
    seed = helper.make_tensor("s0", TensorProto.STRING, [1], [b"a" * 64])
    nodes.append(helper.make_node("Constant", [], ["c0"], value=seed))
    for i in range(20):
        nodes.append(helper.make_node("StringConcat", [f"c{i}", f"c{i}"], [f"c{i + 1}"]))
    inits.append(numpy_helper.from_array(np.array([16]), "rep"))
    nodes += [
        helper.make_node("Tile", ["c20", "rep"], ["t"]),
        helper.make_node("Shape", ["t"], ["sh"]),
        helper.make_node("Cast", ["sh"], ["shf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["shf"], ["total"], keepdims=0),
    ]
    return "total"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "white.png"
    Image.fromarray(np.full((RES, RES, 3), 255, np.uint8)).save(path)
    return path


def run_capped(args: list[str], tmp_path: Path) -> tuple[int, str, float]:
    """`edgetrain ARGS` in a child limited to AS_LIMIT bytes of address space: exit status,
    stderr and the child's peak RSS (VmHWM) in MB."""
    peak_file = tmp_path / "peak.txt"
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({AS_LIMIT}, {AS_LIMIT}))\n"
        "from edgetrain.cli import main\n"
        f"rc = main({args!r})\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        f"open({str(peak_file)!r}, 'w').write(hwm.split()[1])\n"
        "sys.exit(rc)\n"
    )
    # one BLAS/OpenMP thread and two malloc arenas: each extra thread reserves address space,
    # which on a many-core machine alone could reach the cap
    single = dict.fromkeys(("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"), "1")
    env = {**os.environ, **single, "MALLOC_ARENA_MAX": "2", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    peak = int(peak_file.read_text()) / 1024 if peak_file.exists() else float("inf")
    return proc.returncode, proc.stderr, peak


# ---- 6: what an untrusted model may allocate


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("from_input", [False, True], ids=["constant-shape", "input-shape"])
def test_constant_of_shape_bomb_is_refused_under_a_memory_cap(
    tmp_path: Path, image: Path, from_input: bool
) -> None:
    """A 2 GB ConstantOfShape in a ~400-byte file: refused before it allocates (it peaked at
    2 GB before), one line, exit 2. A benign model runs under the same cap."""
    ok = build_model(tmp_path / "ok.onnx")
    rc, err, _ = run_capped(["predict", str(ok), str(image), "--threads", "1"], tmp_path)
    assert rc == 0, err
    bomb = build_model(
        tmp_path / "bomb.onnx", extra=constant_of_shape(500_000_000, from_input=from_input)
    )
    assert bomb.stat().st_size < 600
    rc, err, peak = run_capped(["predict", str(bomb), str(image), "--threads", "1"], tmp_path)
    assert rc == 2, err
    assert err.count("\n") == 1 and "refused: the model asked for 1,907 MB" in err, err
    assert peak < PEAK_LIMIT_MB


def test_string_tensors_are_refused_before_a_session(tmp_path: Path) -> None:
    """The string bomb reached 1.2 GB under a 64 MB arena; it is refused unrun."""
    bomb = build_model(tmp_path / "s.onnx", extra=string_bomb, opset=20)
    assert bomb.stat().st_size < 2000
    with pytest.raises(EdgeTrainError, match="refused: a string tensor"):
        load_onnx(bomb)


def _custom_op(nodes: list, inits: list) -> str:
    nodes.append(helper.make_node("Evil", ["mm"], ["x"], domain="com.example"))
    nodes.append(helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0))
    return "total"


def _cast_to_string(nodes: list, inits: list) -> str:
    nodes.append(helper.make_node("Cast", ["mm"], ["s"], to=TensorProto.STRING))
    nodes.append(helper.make_node("Shape", ["s"], ["n"]))
    nodes.append(helper.make_node("Cast", ["n"], ["total"], to=TensorProto.FLOAT))
    return "total"


@pytest.mark.parametrize(
    "extra, message",
    [(_custom_op, "com.example.Evil is not a standard"), (_cast_to_string, "Cast makes a string")],
)
def test_graph_check_refuses(tmp_path: Path, extra: Extra, message: str) -> None:
    with pytest.raises(EdgeTrainError, match=message):
        load_onnx(build_model(tmp_path / "m.onnx", extra=extra))


def test_external_data_and_functions_are_refused(tmp_path: Path) -> None:
    path = build_model(tmp_path / "ext.onnx")
    model = onnx.load(path)
    weights = model.graph.initializer[0]
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    weights.external_data.add(key="location", value="/dev/zero")
    onnx.save(model, path)
    write_sidecar(path, ("a", "b"))
    with pytest.raises(EdgeTrainError, match="external data"):
        load_onnx(path)
    model = onnx.load(build_model(tmp_path / "fn.onnx"))
    model.functions.append(helper.make_function("local", "F", ["x"], ["y"], [], []))
    onnx.save(model, tmp_path / "fn.onnx")
    write_sidecar(tmp_path / "fn.onnx", ("a", "b"))
    with pytest.raises(EdgeTrainError, match="model-local functions"):
        load_onnx(tmp_path / "fn.onnx")


@pytest.mark.parametrize("junk", [b"", b"\xff" * 20, b"\x0a\x05abc", b"hello world"])
def test_a_file_that_is_not_onnx_is_one_line(tmp_path: Path, junk: bytes) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(junk)
    write_sidecar(path, ("a", "b"))
    with pytest.raises(EdgeTrainError, match="not an ONNX model"):
        load_onnx(path)


def test_graph_check_field_numbers_are_onnx_own() -> None:
    pinned = {
        (onnx.ModelProto, "graph"): graphcheck.MODEL_GRAPH,
        (onnx.ModelProto, "functions"): graphcheck.MODEL_FUNCTIONS,
        (onnx.GraphProto, "node"): graphcheck.GRAPH_NODE,
        (onnx.GraphProto, "initializer"): graphcheck.GRAPH_INITIALIZER,
        (onnx.GraphProto, "sparse_initializer"): graphcheck.GRAPH_SPARSE_INITIALIZER,
        (onnx.GraphProto, "input"): graphcheck.GRAPH_INPUT,
        (onnx.GraphProto, "output"): graphcheck.GRAPH_OUTPUT,
        (onnx.GraphProto, "value_info"): graphcheck.GRAPH_VALUE_INFO,
        (onnx.NodeProto, "op_type"): graphcheck.NODE_OP_TYPE,
        (onnx.NodeProto, "domain"): graphcheck.NODE_DOMAIN,
        (onnx.NodeProto, "attribute"): graphcheck.NODE_ATTRIBUTE,
        (onnx.AttributeProto, "name"): graphcheck.ATTR_NAME,
        (onnx.AttributeProto, "i"): graphcheck.ATTR_I,
        (onnx.AttributeProto, "t"): graphcheck.ATTR_T,
        (onnx.AttributeProto, "g"): graphcheck.ATTR_G,
        (onnx.AttributeProto, "tensors"): graphcheck.ATTR_TENSORS,
        (onnx.AttributeProto, "graphs"): graphcheck.ATTR_GRAPHS,
        (onnx.AttributeProto, "sparse_tensor"): graphcheck.ATTR_SPARSE_TENSOR,
        (onnx.AttributeProto, "sparse_tensors"): graphcheck.ATTR_SPARSE_TENSORS,
        (onnx.TensorProto, "data_type"): graphcheck.TENSOR_DATA_TYPE,
        (onnx.TensorProto, "name"): graphcheck.TENSOR_NAME,
        (onnx.TensorProto, "data_location"): graphcheck.TENSOR_DATA_LOCATION,
        (onnx.SparseTensorProto, "values"): graphcheck.SPARSE_VALUES,
        (onnx.SparseTensorProto, "indices"): graphcheck.SPARSE_INDICES,
        (onnx.ValueInfoProto, "name"): graphcheck.VALUE_NAME,
        (onnx.ValueInfoProto, "type"): graphcheck.VALUE_TYPE,
        (onnx.TypeProto, "tensor_type"): graphcheck.TYPE_TENSOR,
        (onnx.TypeProto.Tensor, "elem_type"): graphcheck.TENSOR_ELEM_TYPE,
    }
    for (cls, name), number in pinned.items():
        assert cls.DESCRIPTOR.fields_by_name[name].number == number, (cls, name)
    assert graphcheck.STRING == TensorProto.STRING
    assert graphcheck.EXTERNAL == TensorProto.EXTERNAL


def test_a_failing_run_is_one_line(tmp_path: Path, image: Path, capsys) -> None:
    """An error inside session.run (here: an impossible Reshape) was an onnxruntime traceback."""

    def bad_reshape(nodes: list, inits: list) -> str:
        inits.append(numpy_helper.from_array(np.array([7]), "seven"))
        nodes.append(helper.make_node("Reshape", ["mm", "seven"], ["r"]))
        nodes.append(helper.make_node("ReduceSum", ["r"], ["total"], keepdims=0))
        return "total"

    model = build_model(tmp_path / "r.onnx", extra=bad_reshape)
    assert main(["predict", str(model), str(image)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "onnxruntime cannot run the model" in err


def test_a_model_changed_while_loading_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime reads the file by path after the checks: a file rewritten in between (here,
    while the session is made) is refused, not run unchecked."""
    from edgetrain.deploy import runtime

    path = build_model(tmp_path / "m.onnx")
    real = runtime._session

    def rewrite_then_load(*args, **kwargs):
        path.write_bytes(path.read_bytes())  # same bytes, but a new change time
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime, "_session", rewrite_then_load)
    os.utime(path, ns=(0, 0))  # mtime alone would not catch a rewrite that restores it
    with pytest.raises(EdgeTrainError, match="changed while it was loaded"):
        load_onnx(path)


# ---- 2: the files deploy reads are regular files, read up to a cap


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_special_files_as_model_or_sidecar_are_refused(tmp_path: Path) -> None:
    model = build_model(tmp_path / "m.onnx")
    side = Path(f"{model}.json")
    side.unlink()
    side.symlink_to("/dev/zero")
    with pytest.raises(EdgeTrainError, match="not a regular file"):
        load_onnx(model)
    side.unlink()
    os.mkfifo(side)  # opened without waiting for a writer
    with pytest.raises(EdgeTrainError, match="not a regular file"):
        load_onnx(model)
    side.unlink()
    write_sidecar(model, ("a", "b"), onnx_sha256="")
    model.unlink()
    model.symlink_to("/dev/zero")
    with pytest.raises(EdgeTrainError, match="not a regular file"):
        load_onnx(model)


@pytest.mark.parametrize("text", ["[" * 100_000, "1" * 5000, "x" * (1 << 20 | 1)], ids=len)
def test_hostile_sidecar_text_is_one_line(tmp_path: Path, text: str) -> None:
    model = build_model(tmp_path / "m.onnx")
    Path(f"{model}.json").write_text(text)
    with pytest.raises(EdgeTrainError, match=r"not valid JSON|larger than"):
        load_onnx(model)


# ---- 7: thread counts


@pytest.mark.parametrize("threads", ["999", "-3", "0"])
def test_predict_thread_flag_is_bounded(tmp_path: Path, image: Path, threads: str, capsys):
    model = build_model(tmp_path / "m.onnx")
    assert main(["predict", str(model), str(image), "--threads", threads]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--threads" in err and ("1..1024" in err or "this process may use" in err)


@pytest.mark.parametrize("value", ["abc", "999", "-3", "1" * 5000])
def test_thread_variable_is_bounded(
    tmp_path: Path, image: Path, value: str, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_model(tmp_path / "m.onnx")
    monkeypatch.setenv("EDGETRAIN_THREADS", value)
    assert main(["predict", str(model), str(image)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "EDGETRAIN_THREADS" in err
    # a run directory reads it the same way, before anything is loaded
    with pytest.raises(EdgeTrainError, match="EDGETRAIN_THREADS"):
        load_predictor(tmp_path)


def test_thread_count_within_the_cpus_is_used(
    tmp_path: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_model(tmp_path / "m.onnx")
    monkeypatch.setenv("EDGETRAIN_THREADS", str(available_cpus()))
    assert main(["predict", str(model), str(image)]) == 0
    monkeypatch.setenv("EDGETRAIN_THREADS", "")  # empty: not set
    assert main(["predict", str(model), str(image), "--threads", "1"]) == 0


def test_run_config_keeps_the_thread_range() -> None:
    base = {"model": "xception_lite", "data": "synthetic-pcb"}
    for bad in (0, 1025):
        with pytest.raises(EdgeTrainError, match=r"threads must be 1\.\.1024"):
            RunConfig.from_dict({**base, "threads": bad})
    # not bounded by this machine's CPUs: a config is read back on other machines
    assert RunConfig.from_dict({**base, "threads": 1024}).threads == 1024


# ---- 9: NaN and infinite logits


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_logits_are_refused(tmp_path: Path, image: Path, bad: float, capsys) -> None:
    weights = np.full((3, 2), bad, np.float32)
    model = build_model(tmp_path / "nan.onnx", weights=weights, classes=("Short", "Spur"))
    assert main(["predict", str(model), str(image)]) == 2
    out, err = capsys.readouterr()
    assert "nan%" not in out and err.count("\n") == 1 and "NaN or infinite logits" in err
    data = tmp_path / "data"
    for name in ("Short", "Spur"):
        for i in range(2):
            (data / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((RES, RES, 3), i * 99, np.uint8)).save(data / name / f"{i}.png")
    with pytest.raises(EdgeTrainError, match="NaN or infinite logits"):
        evaluate(model, data=f"folder:{data}", split="all", out_dir=tmp_path / "eval")


# ---- 13: special files and exit status of predict


def _predict_json(args: list[str]) -> tuple[int, dict, str]:
    """`edgetrain predict ARGS --json` in a child (a FIFO must not hang the test process)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "edgetrain", "predict", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout or "{}"), proc.stderr


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_special_files_named_on_the_command_line(tmp_path: Path, image: Path) -> None:
    model = build_model(tmp_path / "m.onnx")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    rc, out, err = _predict_json([str(model), str(fifo), "/dev/zero", str(image)])
    assert rc == 2 and err.count("\n") == 1, err
    assert out["counts"] == {"predicted": 1, "failed": 2}
    reasons = {f["file"]: f["reason"] for f in out["failed"]}
    assert "a FIFO" in reasons[str(fifo)] and "character device" in reasons["/dev/zero"]


@pytest.mark.skipif(not Path("/dev/urandom").exists(), reason="needs /dev/urandom")
def test_a_device_inside_a_folder_is_named_for_what_it_is(tmp_path: Path, image: Path) -> None:
    model = build_model(tmp_path / "m.onnx")
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "noise.jpg").symlink_to("/dev/urandom")
    (folder / "ok.png").write_bytes(image.read_bytes())
    result = predict_files(load_onnx(model), [folder])
    assert [Path(p.file).name for p in result.predictions] == ["ok.png"]
    [(file, reason)] = result.failed
    assert file == str(folder / "noise.jpg") and "empty" not in reason
    assert reason == "not a regular file (a character device), so not an image"


def test_exit_2_for_a_missing_path_or_nothing_predicted(tmp_path: Path, image: Path, capsys):
    model = build_model(tmp_path / "m.onnx")
    assert main(["predict", str(model), str(image), str(tmp_path / "typo.jpg")]) == 2
    out, err = capsys.readouterr()
    assert "1 predicted" in out and "typo.jpg: no such file or folder" in err
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    assert main(["predict", str(model), str(folder)]) == 2
    assert "nothing predicted" in capsys.readouterr().err
    (folder / "ok.png").write_bytes(image.read_bytes())  # one unreadable file in a folder: fine
    assert main(["predict", str(model), str(folder)]) == 0


# ---- 15: the sidecar's normalisation is the one applied


def test_predict_and_evaluate_follow_the_sidecar_scale_and_offset(tmp_path: Path, image: Path):
    """logits = (mean, -mean) of the normalised image: white is +1 with training's
    normalisation (class Short) and -1 with scale -1/127.5, offset 1 (class Spur)."""
    weights = np.array([[1, -1]] * 3, np.float32) / 3
    classes = ("Short", "Spur")
    plain = build_model(tmp_path / "plain.onnx", weights=weights, classes=classes)
    flipped = build_model(
        tmp_path / "flip.onnx",
        weights=weights,
        classes=classes,
        side={"scale": -1 / 127.5, "offset": 1},
    )
    top = [predict_files(load_onnx(m), [image]).predictions[0].top[0][0] for m in (plain, flipped)]
    assert top == ["Short", "Spur"]
    data = tmp_path / "data"  # white images are Spur, black ones Short: right only if flipped
    for name, value in (("Spur", 255), ("Short", 0)):
        (data / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((RES, RES, 3), value, np.uint8)).save(data / name / f"{i}.png")
    accuracy = [
        evaluate(m, data=f"folder:{data}", split="all", out_dir=tmp_path / "e")["accuracy"]
        for m in (plain, flipped)
    ]
    assert accuracy == [0.0, 1.0]


def test_default_sidecar_normalisation_is_trainings_bit_for_bit() -> None:
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16).repeat(3, axis=1)
    assert np.array_equal(Sidecar(classes=["a"], resolution=16).normalize(x), normalize(x))


def test_a_zero_scale_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EdgeTrainError, match="scale must not be 0"):
        load_onnx(build_model(tmp_path / "m.onnx", side={"scale": 0}))


# ---- 5: evaluate counts and names the files it left out


def test_evaluate_names_the_files_left_out(tmp_path: Path, capsys) -> None:
    model = build_model(tmp_path / "m.onnx", classes=("Short", "Spur"))
    data = tmp_path / "data"
    for name in ("Short", "Spur"):
        (data / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((RES, RES, 3), 40 * i, np.uint8)).save(data / name / f"{i}.png")
            (data / name / f"empty{i}.png").write_bytes(b"")
    out = tmp_path / "eval"
    result = evaluate(model, data=f"folder:{data}", split="all", out_dir=out)
    assert result["images"] == 8 and result["skipped_files"] == 8
    skipped = {Path(s["file"]).name for s in result["skipped"]}
    assert skipped == {f"empty{i}.png" for i in range(4)}  # in both class folders
    assert json.loads((out / "metrics.json").read_text())["skipped_files"] == 8
    assert main(["evaluate", str(model), "--data", f"folder:{data}", "--split", "all"]) == 0
    text = capsys.readouterr().out
    assert "8 images, 8 files skipped" in text
    assert text.count("skipped: ") == 8 and "empty0.png: empty file" in text


# ---- 18: a pickled checkpoint is refused in edgetrain's words only


class _Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_pickle_checkpoint_refusal_is_edgetrains_own(tmp_path: Path, image: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    config = RunConfig(model="xception_lite", data="synthetic-pcb", resolution=RES, threads=1)
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    torch.save({"model": {}, "classes": ["a"], "x": _Payload()}, run / "tested.pt")
    with pytest.raises(EdgeTrainError) as info:
        load_checkpoint(run / "tested.pt")
    message = str(info.value)
    assert "it holds a Python object (print)" in message and "refuses such files" in message
    assert "weights_only" not in message and "\n" not in message
    assert main(["predict", str(run), str(image)]) == 2
    captured = capsys.readouterr()
    assert "this ran" not in captured.out
    assert captured.err.count("\n") == 1 and "weights_only" not in captured.err
