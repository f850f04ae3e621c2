"""The model zoo: the Xception family (one spec, one builder) and the lightweight baselines.

Use `create_model(name, num_classes=...)` and `list_models(pattern)`; never import model classes.
"""

from edgetrain.models import xception as _xception  # noqa: F401  (registers models)
from edgetrain.models.registry import create_model, list_models, register_model
from edgetrain.models.xception import XceptionSpec

for _optional in ("mobilenet_v2", "efficientnet_v2", "mobilevit"):
    try:
        __import__(f"edgetrain.models.{_optional}")
    except ModuleNotFoundError as _exc:  # a baseline still being written
        if _exc.name != f"edgetrain.models.{_optional}":
            raise

__all__ = ["XceptionSpec", "create_model", "list_models", "register_model"]
