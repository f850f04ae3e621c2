"""The spec base and the family registry: pinned ids, dict round trips, `build_model`,
`spec_from_dict`; every number of a spec bounded, and a spec sized before it is built."""

from __future__ import annotations

import json

import pytest
import torch

from edgetrain import EdgeTrainError, create_model, list_models
from edgetrain.measure import SavedTensorsCounter
from edgetrain.models import ModelSpec, build_model, get_spec, spec_from_dict
from edgetrain.models.estimate import model_size, saved_for_backward
from edgetrain.models.found import read_spec_file, spec_of
from edgetrain.models.profile import count_params
from edgetrain.models.registry import meta_model
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


# --- bounds and sizes before anything is built ----------------------------------------------------

OUT_OF_BOUNDS = [
    ("xception_lite", {"middle_depth": 65}, "middle_depth must be in 0..64, got 65"),
    ("xception_lite", {"middle_depth": 1e300}, "middle_depth must be in 0..64"),
    ("xception", {"stem": [8193]}, "stem width must be in 1..8192"),
    ("xception", {"stem": [32] * 33}, "at most 32 entries, got 33"),
    ("mobilenet_v2", {"head": 8193}, "head must be in 1..8192"),
    ("mobilenet_v2", {"alpha": 17.0}, "alpha must be > 0 and at most 16"),
    ("mobilenet_v2", {"alpha": 10**400}, "alpha must be float"),  # beyond the float range
    ("mobilenet_v2", {"alpha": 16.0}, "the widest layer after alpha"),  # head 1280 x 16
    ("efficientnet_v2_b0", {"depth": 16.0}, "blocks in all after depth scaling"),
    ("efficientnet_v2_b0", {"width": 8.0}, "the widest layer after width"),
    ("mobilevit_xxs", {"top": 8193}, "top must be in 1..8192"),
    ("mobilevit_xxs", {"kernel": 33}, "odd and in 1..31"),
]


@pytest.mark.parametrize(("name", "overrides", "message"), OUT_OF_BOUNDS)
def test_every_number_of_a_spec_is_bounded(name, overrides, message):
    with pytest.raises(EdgeTrainError, match=message):
        get_spec(name).replace(**overrides)


def test_stage_fields_are_bounded():
    mnv2 = get_spec("mobilenet_v2").to_dict()
    stages = [{**s, "repeats": 65} if i == 1 else s for i, s in enumerate(mnv2["stages"])]
    with pytest.raises(EdgeTrainError, match=r"stage 1: repeats must be in 1\.\.64"):
        get_spec("mobilenet_v2").replace(stages=stages)
    mvit = get_spec("mobilevit_xxs").to_dict()
    layers = [{**s, "ffn_dim": 2**63} for s in mvit["stages"]]  # unused without a transformer
    with pytest.raises(EdgeTrainError, match=r"layer1: ffn_dim must be in 0\.\.8192"):
        get_spec("mobilevit_xxs").replace(stages=layers)


def test_whole_floats_are_integers_and_messages_stay_short():
    assert XCEPTION.replace(middle_depth=3.0).middle_depth == 3
    with pytest.raises(EdgeTrainError) as info:
        XCEPTION.replace(stem_padding="x" * 10_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("name", list_models())
def test_meta_size_is_the_built_size_and_draws_no_random_numbers(name):
    rng = torch.get_rng_state()
    size = model_size(meta_model(get_spec(name), num_classes=7))
    assert torch.equal(rng, torch.get_rng_state())  # seeded builds keep their weights
    trainable, bn_stats = count_params(create_model(name, num_classes=7))
    assert size.params == trainable and size.buffer_elements >= bn_stats


def test_saved_for_backward_on_meta_matches_a_real_step():
    spec = get_spec("xception_lite").replace(middle_depth=1)
    estimate = saved_for_backward(meta_model(spec, num_classes=2), 64)
    model = build_model(spec, num_classes=2).train()
    with SavedTensorsCounter(model) as counter:
        model(torch.zeros(2, 3, 64, 64))
    assert estimate.total_bytes == pytest.approx(counter.saved_bytes / 2, rel=0.05)
    assert 0 < estimate.largest_block_bytes < estimate.total_bytes


def test_build_model_refuses_what_the_memory_limit_cannot_hold(monkeypatch):
    monkeypatch.setattr(
        "edgetrain.models.estimate.memory_limit", lambda: (64 << 20, "a 64 MB test limit")
    )
    with pytest.raises(EdgeTrainError, match=r"too large to build here.*64 MB of a 64 MB test"):
        create_model("xception", num_classes=3)  # 21 M parameters: 166 MB with gradients
    create_model("mobilevit_xxs", num_classes=3)  # 1 M parameters: fits


def test_a_spec_file_or_config_of_another_id_is_refused(tmp_path):
    path = tmp_path / "xc-0123456789.json"
    path.write_text(json.dumps(XCEPTION.to_dict(family=True)))
    with pytest.raises(EdgeTrainError, match=f"holds spec {XCEPTION.id}, not xc-0123456789"):
        read_spec_file(path, expect_id="xc-0123456789")
    assert read_spec_file(path).id == XCEPTION.id
    with pytest.raises(EdgeTrainError, match="model_args: holds spec"):
        spec_of("xc-0123456789", XCEPTION.to_dict(family=True))
