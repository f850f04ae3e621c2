"""edgetrain: train vision models on the edge device itself and know what it costs.

The top level is kept small; everything else lives in the subpackages (`edgetrain.models`,
`edgetrain.data`, `edgetrain.train`, `edgetrain.measure`, ...). `create_model` and `list_models`
are imported on first use, so `import edgetrain` (and the ONNX prediction path) loads no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgetrain.errors import EdgeTrainError

if TYPE_CHECKING:
    from edgetrain.models import create_model, list_models

__version__ = "0.1.0"
__all__ = ["EdgeTrainError", "__version__", "create_model", "list_models"]

_LAZY = {"create_model", "list_models"}  # names of edgetrain.models, imported on first use


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import edgetrain.models

        return getattr(edgetrain.models, name)
    raise AttributeError(f"module 'edgetrain' has no attribute {name!r}")
