import json
import os

import pytest

from hwnas import models
from hwnas.spaces import Architecture, get_space
from hwnas.spaces.architecture import parse_compact


@pytest.mark.parametrize("space_name, kwargs", [("fbnet", {}), ("fbnet", {"resolution": 96, "width": 0.35}),
                                               ("fbnetv2", {}), ("hurricane", {}), ("fbnet_small", {"in_channels": 1})])
def test_json_round_trip_is_exact(space_name, kwargs):
    space = get_space(space_name, **kwargs)
    arch = space.sample(seed=11)
    text = arch.to_json()
    again = Architecture.from_json(text)
    assert again == arch
    assert again.to_json() == text
    data = json.loads(text)
    assert data["format"] == "hwnas.architecture" and data["version"] == 1
    assert data["space"] == space_name and data["choices"] == arch.choices


def test_save_load_round_trip(tmp_path):
    arch = models.architecture("fbnet_96_035_1")
    path = tmp_path / "sub" / "arch.json"
    arch.save(path)
    assert Architecture.load(path) == arch
    assert [p for p in os.listdir(path.parent)] == ["arch.json"]  # no temp file left behind
    assert Architecture.load(path).width == 0.35


def test_unknown_version_and_bad_fields():
    arch = get_space("fbnet").sample(seed=0)
    data = arch.to_dict()
    with pytest.raises(ValueError, match="version 2 is not supported"):
        Architecture.from_dict({**data, "version": 2})
    with pytest.raises(ValueError, match="format is 'hwnas.space'"):
        Architecture.from_dict({**data, "format": "hwnas.space"})
    with pytest.raises(ValueError, match="missing field"):
        Architecture.from_dict({k: v for k, v in data.items() if k != "choices"})
    with pytest.raises(ValueError, match="not valid JSON"):
        Architecture.from_json("{")
    with pytest.raises(ValueError, match="resolution"):
        Architecture("fbnet", 1, ["skip"], resolution=-3)
    # Wrong types are refused by name (and with the file's name), not converted.
    for field, value, message in (("space_version", "abc", "space_version must be a positive integer, got 'abc'"),
                                  ("space_version", 1.7, "space_version must be a positive integer, got 1.7"),
                                  ("stage_lengths", "abc", "stage_lengths must be a list of integers, got 'abc'"),
                                  ("space_options", [1, 2], r"space_options must be a dict, got \[1, 2\]")):
        with pytest.raises(ValueError, match=f"^arch.json: architecture {message}"):
            Architecture.from_dict({**data, field: value}, source="arch.json")
    with pytest.raises(ValueError, match="choices must be a compact architecture string or a list"):
        get_space("fbnet").make_arch(None)


def test_compact_form_and_table():
    arch = models.architecture("fbnet_a")
    assert arch.to_string().startswith("skip | k3_e3 k3_e1 skip skip | k5_e6")
    choices, lengths = parse_compact(arch.to_string())
    assert choices == arch.choices and lengths == [1, 4, 4, 4, 4, 4, 1]
    text = str(arch)
    assert "resolution=224" in text and "head_channels=1504" in text
    lines = text.splitlines()
    assert lines[2].split() == ["0", "0", "skip"]
    assert lines[23].split() == ["21", "6", "k5_e6"]
    with pytest.raises(ValueError, match="stage 1 is empty"):
        parse_compact("skip | | k3_e1")


def test_make_arch_from_string_checks_stages():
    space = get_space("fbnet")
    with pytest.raises(ValueError, match="stages of"):
        space.make_arch("skip skip | " + " ".join(["skip"] * 20))
    flat = space.make_arch(" ".join(["skip"] * 22))
    assert flat.stage_lengths == [1, 4, 4, 4, 4, 4, 1]


def test_key_is_hashable_and_distinguishes():
    space = get_space("fbnet")
    keys = {space.sample(seed=s).key() for s in range(5)}
    assert len(keys) == 5
    assert space.sample(seed=1).key() == space.sample(seed=1).key()
