"""The spec base and the family registry: pinned ids, dict round trips, `build_model`,
`spec_from_dict`."""

from __future__ import annotations

import json

import pytest
import torch

from edgetrain import EdgeTrainError, create_model, list_models
from edgetrain.models import ModelSpec, build_model, get_spec, spec_from_dict
from edgetrain.models.xception import XCEPTION

# Ids are cache keys and report labels: a refactor must not change them. A deliberate change to a
# registered spec value updates this table.
PINNED_IDS = {
    "efficientnet_v2_b0": "env2-eb1fb11c7f",
    "efficientnet_v2_b1": "env2-cf4d548fd4",
    "mobilenet_v2": "mnv2-8f43699976",
    "mobilevit_xxs": "mvit-5f14f8c000",
    "xception": "xc-1fcb31d5c0",
    "xception_lite": "xc-e2a0d8cf9a",
}
# Ids of overridden specs, to pin the dict format of non-default values (floats, nested blocks).
PINNED_OVERRIDE_IDS = [
    ("xception", {"middle_depth": 2}, "xc-cbc834ffd5"),
    ("xception_lite", {"middle_depth": 3, "stem_bias": False}, "xc-ea4cf0534a"),
    ("mobilenet_v2", {"alpha": 0.5}, "mnv2-ec27a38f60"),
    ("mobilenet_v2", {"alpha": 1.4}, "mnv2-389d1c624f"),
    ("efficientnet_v2_b0", {"depth": 1.2, "width": 1.1}, "env2-a42ef5d66b"),
    ("mobilevit_xxs", {"top": 256}, "mvit-e22d2b19e0"),
]


def test_every_model_has_a_pinned_id():
    assert set(PINNED_IDS) == set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_registered_spec_ids_are_pinned(name):
    spec = get_spec(name)
    assert isinstance(spec, ModelSpec)
    assert spec.id == PINNED_IDS[name]
    assert create_model(name, num_classes=2).spec is spec  # no overrides: the registered value


@pytest.mark.parametrize(("name", "overrides", "spec_id"), PINNED_OVERRIDE_IDS)
def test_overridden_spec_ids_are_pinned(name, overrides, spec_id):
    assert get_spec(name).replace(**overrides).id == spec_id


@pytest.mark.parametrize("name", list_models())
def test_dict_round_trips(name):
    spec = get_spec(name)
    plain = json.loads(json.dumps(spec.to_dict()))
    tagged = json.loads(json.dumps(spec.to_dict(family=True)))
    assert "family" not in plain  # the original format, which the id hashes
    assert tagged == {"family": spec.family, **plain}
    assert type(spec).from_dict(plain) == spec  # untagged (older) dicts still read
    assert type(spec).from_dict(tagged) == spec
    again = spec_from_dict(tagged)
    assert type(again) is type(spec) and again == spec and again.id == spec.id


def test_spec_from_dict_errors():
    with pytest.raises(EdgeTrainError, match="needs a 'family' key"):
        spec_from_dict(XCEPTION.to_dict())
    with pytest.raises(EdgeTrainError, match="unknown model family 'resnet'"):
        spec_from_dict({**XCEPTION.to_dict(), "family": "resnet"})
    mnv2 = get_spec("mobilenet_v2")
    with pytest.raises(EdgeTrainError, match="for family 'xception', not 'mobilenet_v2'"):
        type(mnv2).from_dict(XCEPTION.to_dict(family=True))
    with pytest.raises(EdgeTrainError, match="unknown MobileNetV2 spec fields"):
        spec_from_dict({**mnv2.to_dict(family=True), "colour": "red"})


def test_replace_coerces_and_validates():
    mnv2 = get_spec("mobilenet_v2")
    assert mnv2.replace(alpha=1).id == mnv2.id  # 1 and 1.0 are the same spec
    with pytest.raises(EdgeTrainError, match=r"alpha must be float"):
        mnv2.replace(alpha="wide")
    with pytest.raises(EdgeTrainError, match="alpha must be > 0"):
        mnv2.replace(alpha=0.0)
    with pytest.raises(EdgeTrainError, match="stem_padding must be one of"):
        XCEPTION.replace(stem_padding="full")


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("xception_lite", {"middle_depth": 1}),
        ("mobilenet_v2", {"alpha": 0.5}),
        ("efficientnet_v2_b0", {}),
        ("mobilevit_xxs", {}),
    ],
)
def test_build_model_is_create_model(name, overrides):
    # Same seed, same weights: both paths build the same modules in the same order.
    torch.manual_seed(0)
    a = create_model(name, num_classes=6, dropout=0.1, **overrides)
    torch.manual_seed(0)
    spec = spec_from_dict(get_spec(name).replace(**overrides).to_dict(family=True))
    b = build_model(spec, num_classes=6, dropout=0.1)
    assert b.spec == a.spec and b.head.dropout.p == pytest.approx(0.1)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_build_model_errors():
    with pytest.raises(EdgeTrainError, match="unknown model family None"):
        build_model(XCEPTION.to_dict(), num_classes=3)  # a dict is not a spec value
    with pytest.raises(EdgeTrainError, match="num_classes"):
        build_model(XCEPTION, num_classes=0)
    with pytest.raises(EdgeTrainError, match="dropout"):
        build_model(XCEPTION, num_classes=3, dropout=1.0)
    with pytest.raises(EdgeTrainError, match="unknown model 'no_such_model'"):
        get_spec("no_such_model")


@pytest.mark.parametrize("name", sorted(PINNED_IDS))
def test_every_family_describes_its_specs_on_one_line(name):
    # the search logs every trial's spec with `describe()`: each family must have one
    spec = get_spec(name)
    text = spec.describe()
    assert text and "\n" not in text
    if name == "mobilenet_v2":
        assert text.startswith("a1.0|t1c16n1k3;t6c24n2k3s2;")
        assert spec.replace(alpha=0.5).describe().startswith("a0.5|")
