"""Malformed latency table and predictor files: refused at load, naming the file and the field."""

import json

import numpy as np
import pytest

from hwnas.latency.predictors import BlockConfig, BlockCostPredictor
from hwnas.latency.table import LatencyTable, TableEntry


def _table(space):
    table = LatencyTable.for_space(space, {"target": "synthetic"})
    for i, key in enumerate(table.required_keys()):
        table.entries[key] = TableEntry(float(10 + 3 * i), key.split("|")[0], 1, 1, 1, (1, 1))
    return table


@pytest.fixture
def table_file(tiny_space, tmp_path):
    path = tmp_path / "table.json"
    _table(tiny_space).save(path)
    return path


def _first_entry(data):
    return data["entries"][data["stem_key"]]


# (name, change to the saved document, what the message must say after the file name)
MALFORMED = [
    ("resolution_text", lambda d: d.update(resolution="abc"), "resolution must be an integer"),
    ("resolution_fraction", lambda d: d.update(resolution=32.9), "resolution must be an integer"),
    ("resolution_missing", lambda d: d.pop("resolution"), "missing field resolution"),
    ("entries_list", lambda d: d.update(entries=[]), "entries must be a JSON object"),
    ("value_text", lambda d: _first_entry(d).update(value="fast"), r"entries\['stem\|c3-8\|s1\|8x8'\].value must be"),
    ("value_negative", lambda d: _first_entry(d).update(value=-1.0), r"entries\[.*\].value must be a finite number >= 0"),
    ("entry_shape", lambda d: _first_entry(d).update(in_hw=[8]), r"entries\[.*\].in_hw must be \[height, width\]"),
    ("overhead_text", lambda d: d.update(call_overhead="x"), "call_overhead must be a finite number"),
    ("layers_text", lambda d: d.update(layers="abc"), "layers must be a list"),
    ("layer_not_object", lambda d: d.update(layers=[1, 2, 3, 4]), r"layers\[0\] must be an object"),
    ("correction_without_a", lambda d: d.update(correction={"kind": "linear"}), "missing field correction.a"),
    ("correction_text", lambda d: d.update(correction="linear"), "correction must be a JSON object"),
    ("correction_kind", lambda d: d.update(correction={"kind": "cubic", "a": 1, "b": 0}), "unknown correction kind"),
]


@pytest.mark.parametrize("name, change, match", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_table_fields_are_named_with_the_file(table_file, name, change, match):
    data = json.loads(table_file.read_text())
    change(data)
    table_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="table.json: " + match):
        LatencyTable.load(table_file)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_entry_values_are_refused(table_file, literal):
    # Python's json reads these non-standard literals; a table must not predict nan or inf.
    data = json.loads(table_file.read_text())
    _first_entry(data)["value"] = "@@"
    table_file.write_text(json.dumps(data).replace('"@@"', literal))
    with pytest.raises(ValueError, match=r"table.json: entries\[.*\].value must be a finite number"):
        LatencyTable.load(table_file)


def test_a_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        LatencyTable.load(tmp_path)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        BlockCostPredictor.load(tmp_path)


def test_valid_tables_still_load(tiny_space, table_file):
    data = json.loads(table_file.read_text())
    data["resolution"] = 8.0  # an integral float is an integer
    data["correction"] = {"kind": "linear", "a": 1.1, "b": -2.0, "depth": 0.5, "n": 4, "models": []}
    table_file.write_text(json.dumps(data))
    table = LatencyTable.load(table_file)
    assert table.resolution == 8 and isinstance(table.resolution, int)
    assert table.to_dict()["entries"] == _table(tiny_space).to_dict()["entries"]
    arch = tiny_space.sample(seed=0)
    assert table.predict(arch) == pytest.approx(1.1 * table.raw_sum(arch) - 2.0 + 0.5 * table.num_blocks(arch) ** 2)


def test_a_refined_table_may_have_a_negative_fixed_part(table_file):
    # refine_table_from_models fits the stem entry (stem + head + per-model overhead) without a lower bound.
    data = json.loads(table_file.read_text())
    _first_entry(data)["value"] = -4.0
    data["source"] = "refined"
    table_file.write_text(json.dumps(data))
    assert LatencyTable.load(table_file).value(data["stem_key"]) == -4.0


@pytest.fixture
def predictor_file(tmp_path):
    configs = [BlockConfig(b, c, c, 1, (8, 8)) for b in ("k3_e1", "k3_e3", "skip") for c in (8, 16)]
    path = tmp_path / "predictor.json"
    BlockCostPredictor().fit(configs, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).save(path)
    return path


@pytest.mark.parametrize("change, match", [
    (lambda d: d.pop("training"), "missing field training"),
    (lambda d: d.pop("kind"), "missing field kind"),
    (lambda d: d.update(kind="forest"), "kind must be one of"),
    (lambda d: d["training"][0].pop("c_in"), r"missing field training\[0\].c_in"),
    (lambda d: d["training"][1].update(value="x"), r"training\[1\].value must be a finite number"),
    (lambda d: d.update(training=d["training"][:2]), "cannot refit the stored training data: need at least 3"),
], ids=["no_training", "no_kind", "unknown_kind", "row_without_c_in", "row_value_text", "too_few_rows"])
def test_malformed_predictor_files_are_named_with_the_file(predictor_file, change, match):
    data = json.loads(predictor_file.read_text())
    change(data)
    predictor_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="predictor.json: " + match):
        BlockCostPredictor.load(predictor_file)


def test_predictor_predicts_nothing_for_no_blocks(predictor_file):
    predictor = BlockCostPredictor.load(predictor_file)
    assert predictor.predict([]).shape == (0,)
    mean, std = predictor.predict([], return_std=True)
    assert mean.shape == std.shape == (0,)
