"""Deploy what you trained: export a run to ONNX, predict on new images, evaluate on a data set.

    edgetrain export RUNS/lite                   # RUNS/lite/model.onnx + model.onnx.json
    edgetrain predict RUNS/lite/model.onnx img/  # onnxruntime only: no torch is imported
    edgetrain evaluate RUNS/lite --data REF      # accuracy, macro-F1, confusion PNG, misclassified

Modules: `sidecar` (the JSON next to an .onnx: classes, resolution, normalisation, checksums),
`runtime` (a safe onnxruntime session, CPU only, its memory capped), `graphcheck` (what an
untrusted .onnx may contain), `runmodel` (the PyTorch model of a run directory), `export`
(torch -> ONNX, parity check, int8), `measure` (latency and peak RSS of an .onnx in a fresh
process), `predict`, `evaluate`, `cli`. Only `export`, `runmodel` and `evaluate` import torch,
and only when called; this package's import and the .onnx prediction path do not. Images are
decoded by `edgetrain.preprocess`, the decoder training uses, and normalised as the model says.
"""
