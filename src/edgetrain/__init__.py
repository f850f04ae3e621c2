"""edgetrain: train vision models on the edge device itself and know what it costs.

The top level is kept small; everything else lives in the subpackages (`edgetrain.models`,
`edgetrain.data`, `edgetrain.train`, `edgetrain.measure`, ...).
"""

from edgetrain.errors import EdgeTrainError
from edgetrain.models import create_model, list_models

__version__ = "0.1.0"
__all__ = ["EdgeTrainError", "__version__", "create_model", "list_models"]
