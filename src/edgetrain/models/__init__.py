"""The model zoo: the Xception family and the lightweight baselines, each one spec and one builder.

Use `create_model(name, num_classes=...)` and `list_models(pattern)`; never import model classes.
To build a spec value directly (an architecture search): `build_model(spec, num_classes=...)`, and
`spec_from_dict(spec.to_dict(family=True))` to read one back from JSON.
"""

# Importing a family module registers its family and its models.
from edgetrain.models import efficientnet_v2, mobilenet_v2, mobilevit, xception  # noqa: F401
from edgetrain.models.registry import (
    build_model,
    create_model,
    get_spec,
    list_models,
    register_model,
    register_spec,
    spec_from_dict,
)
from edgetrain.models.spec import ModelSpec
from edgetrain.models.xception import XceptionSpec

__all__ = [
    "ModelSpec",
    "XceptionSpec",
    "build_model",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
    "register_spec",
    "spec_from_dict",
]
