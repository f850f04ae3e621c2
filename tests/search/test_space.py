"""Search spaces: every shipped space's genomes build and round-trip; the hand-made models are
points of their spaces; malformed or contradictory spaces are refused with one clear line."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from edgetrain.errors import EdgeTrainError
from edgetrain.models.registry import build_model, get_spec, spec_from_dict
from edgetrain.search.space import load_space, shipped_spaces

TINY = Path(__file__).with_name("tiny-space.toml")


@pytest.mark.parametrize("name", shipped_spaces())
def test_random_genomes_build_and_round_trip(name):
    space = load_space(name)
    rng = random.Random(1)
    for _ in range(150):
        genome = space.random_genome(rng)
        spec = space.spec_of(genome)
        again = spec_from_dict(spec.to_dict(family=True))
        assert again.id == spec.id == space.spec_of(dict(genome)).id  # deterministic
        back = space.genome_of(spec)
        assert back is not None and space.spec_of(back).id == spec.id


@pytest.mark.parametrize("name", shipped_spaces())
def test_some_genomes_train_a_step(name):
    space = load_space(name)
    rng = random.Random(2)
    for genome in [space.random_genome(rng) for _ in range(2)]:
        model = build_model(space.spec_of(genome), num_classes=3)
        x = torch.randn(2, 3, 32, 32)
        model(x).sum().backward()


@pytest.mark.parametrize(
    ("space", "models"),
    [("xception-family", ["xception", "xception_lite"]), ("mobilenet-family", ["mobilenet_v2"])],
)
def test_hand_made_models_are_points(space, models):
    s = load_space(space)
    for m in models:
        genome = s.genome_of(get_spec(m))
        assert genome is not None, m
        assert s.spec_of(genome).id == get_spec(m).id


def test_tiny_space_has_four_genomes():
    space = load_space(TINY)
    assert space.size == 4
    ids = {space.spec_of({"middle_depth": d, "entry3_width": w, "narrow": 16}).id
           for d in (0, 1) for w in (16, 32)}  # fmt: skip
    assert len(ids) == 4


BAD = {
    "no genes": ('base = "xception_lite"\n', "no genes"),
    "empty choices": (
        'base = "xception_lite"\n[genes.a]\nchoices = []\npaths = ["middle_depth"]\n',
        "non-empty list of choices",
    ),
    "overlap": (
        'base = "xception_lite"\n[genes.a]\nchoices = [1]\npaths = ["middle_depth"]\n'
        '[genes.b]\nchoices = [2]\npaths = ["middle_depth"]\n',
        "both set middle_depth",
    ),
    "contradictory": (  # the middle flow's identity residual needs entry3's width
        'base = "xception_lite"\n[genes.a]\nchoices = [16]\npaths = ["entry.2.convs.*.width"]\n',
        "contradictory space",
    ),
    "bad path": (
        'base = "xception_lite"\n[genes.a]\nchoices = [1]\npaths = ["middle.nope"]\n',
        "no field 'nope'",
    ),
    "unknown base": ('base = "resnet"\n[genes.a]\nchoices = [1]\npaths = ["x"]\n', "unknown model"),
    "mixed types": (
        'base = "xception_lite"\n[genes.a]\nchoices = [1, "two"]\npaths = ["middle_depth"]\n',
        "of one type",
    ),
    "run gene with paths": (
        'base = "xception_lite"\n[genes.resolution]\nchoices = [32]\ntarget = "run"\n'
        'paths = ["middle_depth"]\n',
        "run genes",
    ),
    "not toml": ("base = [\n", "not valid TOML"),
    "paths a string": (
        'base = "xception_lite"\n[genes.a]\nchoices = [1]\npaths = "middle_depth"\n',
        "paths must be a list",
    ),
    "too many choices": (
        'base = "xception_lite"\n[genes.a]\nchoices = ['
        + ", ".join(map(str, range(300)))
        + ']\npaths = ["middle_depth"]\n',
        "300 choices; a gene has at most 256",
    ),
    "too many genes": (
        'base = "xception_lite"\n'
        + "".join(f'[genes.g{i}]\nchoices = [1]\npaths = ["middle_depth"]\n' for i in range(70)),
        "70 genes; a space has at most 64",
    ),
    "choice out of bounds": (
        'base = "xception_lite"\n[genes.a]\nchoices = [1, 65]\npaths = ["middle_depth"]\n',
        r"gene a = 65 builds no valid model \(middle_depth must be in 0\.\.64",
    ),
    "none of another type": (
        'base = "xception_lite"\n[genes.a]\nchoices = [0, 1]\nnone = true\n'
        'paths = ["middle.squeeze"]\n',
        "is not one of the choices",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spaces_are_refused(tmp_path, case):
    text, message = BAD[case]
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(EdgeTrainError, match=message):
        load_space(path)


def test_unknown_space_names_the_shipped_ones():
    with pytest.raises(EdgeTrainError, match="xception-family"):
        load_space("no-such-space")


def test_genome_checks():
    space = load_space(TINY)
    with pytest.raises(EdgeTrainError, match="needs genes"):
        space.spec_of({"middle_depth": 0})
    with pytest.raises(EdgeTrainError, match="must be one of"):
        space.spec_of({"middle_depth": 5, "entry3_width": 16, "narrow": 16})


def test_a_spec_of_another_family_is_no_point_of_a_space():
    space = load_space("xception-family")
    assert space.genome_of(get_spec("mobilenet_v2")) is None
    mnv2 = load_space("mobilenet-family")
    fewer = get_spec("mobilenet_v2").replace(
        stages=get_spec("mobilenet_v2").to_dict()["stages"][:3]
    )
    assert mnv2.genome_of(fewer) is None  # its paths lead past the last stage
