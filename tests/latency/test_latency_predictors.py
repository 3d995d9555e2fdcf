import numpy as np
import pytest

from hwnas.latency.predictors import (
    BlockConfig,
    BlockCostPredictor,
    block_features,
    fit_table_from_models,
    refine_table_from_models,
)
from hwnas.latency.table import LatencyTable


def test_features_count_macs_by_hand():
    f = block_features(BlockConfig("k3_e1", 8, 8, 1, (8, 8)))
    # 1x1 expand 8->8 and 1x1 project 8->8 on 8x8: 2 * 64 * 8 * 8; depthwise 3x3 on 8 channels: 64 * 8 * 9.
    assert f[0] == pytest.approx(2 * 64 * 8 * 8 / 1e6)
    assert f[1] == pytest.approx(64 * 8 * 9 / 1e6)
    identity = block_features(BlockConfig("skip", 8, 8, 1, (8, 8)))
    assert identity[-1] == 1.0 and identity[0] == 0 and identity[4] == 0
    projection = block_features(BlockConfig("skip", 8, 16, 2, (8, 8)))
    assert projection[-1] == 0.0 and projection[0] == pytest.approx(16 * 16 * 8 / 1e6)


def _configs():
    configs = []
    for block in ("k3_e1", "k3_e3", "k5_e6", "mb_k3_e3_se", "sep_k5", "skip"):
        for c in (8, 16, 24):
            for hw in (4, 8):
                for stride in (1, 2):
                    configs.append(BlockConfig(block, c, c if stride == 1 else c + 8, stride, (hw, hw)))
    return configs


def _synthetic_cost(configs):
    # A cost that is a known positive function of the features.
    x = np.stack([block_features(c) for c in configs])
    return 5.0 + 40.0 * x[:, 0] + 90.0 * x[:, 1] + 0.02 * x[:, 3] + 1.5 * x[:, 4]


@pytest.mark.parametrize("kind", ["bayesian_ridge", "gaussian_process"])
def test_predictor_learns_held_out_costs_and_round_trips(kind, tmp_path):
    configs = _configs()
    y = _synthetic_cost(configs)
    predictor = BlockCostPredictor(kind)
    metrics = predictor.evaluate_holdout(configs, y, test_fraction=0.25, seed=0)
    limit = 1.0 if kind == "bayesian_ridge" else 10.0  # linear truth: ridge is near exact
    assert metrics["mape_pct"] < limit
    path = tmp_path / "p.json"
    predictor.save(path)
    loaded = BlockCostPredictor.load(path)
    np.testing.assert_allclose(loaded.predict(configs), predictor.predict(configs), rtol=1e-6)
    mean, std = loaded.predict(configs[:3], return_std=True)
    assert np.all(std >= 0) and mean.shape == (3,)


def test_predictor_errors():
    with pytest.raises(ValueError, match="kind"):
        BlockCostPredictor("forest")
    with pytest.raises(ValueError, match="not fitted"):
        BlockCostPredictor().predict([BlockConfig("k3_e1", 8, 8, 1, (4, 4))])
    with pytest.raises(ValueError, match="at least 3"):
        BlockCostPredictor().fit([BlockConfig("k3_e1", 8, 8, 1, (4, 4))], [1.0])


def test_least_squares_table_recovers_block_costs(tiny_space):
    truth = LatencyTable.for_space(tiny_space, {"target": "synthetic"})
    rng = np.random.default_rng(0)
    from hwnas.latency.table import TableEntry

    for key in truth.required_keys():
        truth.entries[key] = TableEntry(float(rng.uniform(5, 50)), key.split("|")[0], 1, 1, 1, (1, 1))
    archs = [tiny_space.sample(seed=s) for s in range(200)]
    measured = [truth.predict(a, correction="none") for a in archs]
    fitted = fit_table_from_models(tiny_space, archs, measured, {"target": "synthetic"}, ridge=1e-9)
    assert fitted.source == "least_squares"
    # Layers 0 and 1 share keys, so every key is identifiable; predictions must match.
    pred = [fitted.predict(a, correction="none") for a in archs[:50]]
    np.testing.assert_allclose(pred, measured[:50], rtol=1e-3)
    # Whole models only pin each layer's costs up to a constant shared by its choices (one
    # of them is always present), so compare the identifiable part: differences within a layer.
    for layer in truth.layers:
        keys = list(layer.values())
        for key in keys[1:]:
            true_gap = truth.value(key) - truth.value(keys[0])
            assert fitted.value(key) - fitted.value(keys[0]) == pytest.approx(true_gap, abs=0.05)


def _standalone_table(space, seed=0):
    from hwnas.latency.table import TableEntry

    table = LatencyTable.for_space(space, {"target": "synthetic"})
    rng = np.random.default_rng(seed)
    for key in table.required_keys():
        table.entries[key] = TableEntry(float(rng.uniform(5, 50)), key.split("|")[0], 1, 1, 1, (1, 1))
    return table


def _block_sum(table, arch):
    """Sum of the layer entries of ``arch`` (no stem, head)."""
    return sum(table.value(layer[choice]) for layer, choice in zip(table.layers, arch.choices))


def test_refined_table_is_exact_when_models_are_a_scaled_table(tiny_space):
    # Whole models cost 1.5x the standalone blocks plus 20: e = 1.5 t zeroes both terms
    # of the objective, so any strength must find it.
    table = _standalone_table(tiny_space)
    archs = [tiny_space.sample(seed=s) for s in range(12)]
    measured = [1.5 * _block_sum(table, a) + 20.0 for a in archs]
    for strength in (0.01, 1.0, 100.0):
        refined = refine_table_from_models(table, tiny_space, archs, measured, strength=strength)
        assert refined.source == "refined"
        assert refined.notes["refined"]["a"] == pytest.approx(1.5, rel=1e-4)
        assert refined.notes["refined"]["b"] == pytest.approx(20.0, rel=1e-3)
        held_out = [tiny_space.sample(seed=100 + s) for s in range(10)]
        np.testing.assert_allclose([refined.predict(a, correction="none") for a in held_out],
                                   [1.5 * _block_sum(table, a) + 20.0 for a in held_out], rtol=1e-4)


def test_refined_table_learns_a_block_that_costs_more_inside_models(tiny_space):
    # One block costs 1.6x as much inside a model as alone (it does not fuse, say). No
    # single scale of the standalone table expresses that; the refined table moves
    # towards it as far as its pull towards the standalone entries lets it.
    table = _standalone_table(tiny_space, seed=1)
    odd = table.layers[2]["k5_e3"]
    truth = {key: table.value(key) for key in table.required_keys()}
    truth[odd] *= 1.6

    def cost(arch):
        return sum(truth[layer[c]] for layer, c in zip(table.layers, arch.choices)) + 10.0

    archs = [tiny_space.sample(seed=s) for s in range(40)]
    held_out = [tiny_space.sample(seed=200 + s) for s in range(40)]
    refined = refine_table_from_models(table, tiny_space, archs, [cost(a) for a in archs], strength=0.03)
    refined_err = np.mean([abs(refined.predict(a, correction="none") / cost(a) - 1) for a in held_out])
    # The best affine correction of the standalone sums, fitted on the same models.
    x = np.array([_block_sum(table, a) for a in archs])
    a, b = np.polyfit(x, [cost(arch) for arch in archs], 1)
    affine_err = np.mean([abs((a * _block_sum(table, arch) + b) / cost(arch) - 1) for arch in held_out])
    assert refined_err < affine_err / 3
    # Whole models pin a layer's choices only relative to each other (one of them is
    # always present): the gaps between the odd block and the others of its layer move
    # at least halfway from the scaled standalone gaps to the true ones.
    for key in table.layers[2].values():
        if key != odd:
            true_gap = truth[odd] - truth[key]
            learned = refined.value(odd) - refined.value(key)
            scaled = a * (table.value(odd) - table.value(key))
            assert abs(learned - true_gap) < 0.5 * abs(scaled - true_gap)


def test_refine_rejects_bad_input(tiny_space):
    table = _standalone_table(tiny_space)
    archs = [tiny_space.sample(seed=s) for s in range(3)]
    with pytest.raises(ValueError, match="at least 2"):
        refine_table_from_models(table, tiny_space, archs, [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        refine_table_from_models(table, tiny_space, archs, [1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="strength"):
        refine_table_from_models(table, tiny_space, archs, [1.0, 2.0, 3.0], strength=-1)
    del table.entries[table.layers[0]["skip"]]
    with pytest.raises(ValueError, match="incomplete"):
        refine_table_from_models(table, tiny_space, archs, [1.0, 2.0, 3.0])
