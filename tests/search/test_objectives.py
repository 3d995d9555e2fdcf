import math

import pytest
import torch

from hwnas.search.objectives import make_objective


def test_fbnet_objective_matches_formula_and_grows_with_latency():
    objective = make_objective("fbnet", alpha=0.2, beta=0.6)
    ce = torch.tensor(1.5)
    value = objective(ce, torch.tensor(500.0))
    assert float(value) == pytest.approx(1.5 * 0.2 * math.log(500.0) ** 0.6, rel=1e-6)
    assert float(objective(ce, torch.tensor(1000.0))) > float(value)


def test_additive_and_proxyless_formulas():
    ce, lat = torch.tensor(2.0), torch.tensor(300.0)
    assert float(make_objective("additive", lam=1e-3)(ce, lat)) == pytest.approx(2.3)
    assert float(make_objective("proxyless", target=600.0, beta=1.0)(ce, lat)) == pytest.approx(1.0)


def test_hard_target_penalises_only_above_the_target():
    objective = make_objective("hard_target", target=100.0, lam=2.0)
    ce = torch.tensor(0.7)
    assert float(objective(ce, torch.tensor(80.0))) == pytest.approx(0.7)
    assert float(objective(ce, torch.tensor(100.0))) == pytest.approx(0.7)
    assert float(objective(ce, torch.tensor(150.0))) == pytest.approx(0.7 + 2.0 * 0.5)
    lat = torch.tensor(150.0, requires_grad=True)
    objective(ce, lat).backward()
    assert float(lat.grad) == pytest.approx(2.0 / 100.0)


def test_absolute_target_penalises_both_sides_with_the_same_slope():
    objective = make_objective("absolute", target=200.0, lam=3.0)
    ce = torch.tensor(0.4)
    assert float(objective(ce, torch.tensor(200.0))) == pytest.approx(0.4)
    assert float(objective(ce, torch.tensor(150.0))) == pytest.approx(0.4 + 3.0 * 0.25)
    assert float(objective(ce, torch.tensor(250.0))) == pytest.approx(0.4 + 3.0 * 0.25)
    for value, sign in ((150.0, -1.0), (250.0, 1.0)):
        lat = torch.tensor(value, requires_grad=True)
        objective(ce, lat).backward()
        # Below the target the loss falls as latency rises: the search is pulled up to it.
        assert float(lat.grad) == pytest.approx(sign * 3.0 / 200.0)
    with pytest.raises(ValueError, match="lam must be non-negative"):
        make_objective("absolute", target=100.0, lam=-1.0)


def test_round_trip_and_errors():
    objective = make_objective("proxyless", target=250.0, beta=0.3)
    assert make_objective(objective.to_dict()).to_dict() == objective.to_dict()
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        make_objective("nope")
    with pytest.raises(ValueError, match="not \\['gamma'\\]"):
        make_objective("fbnet", gamma=1.0)
    with pytest.raises(ValueError, match="target must be positive"):
        make_objective("hard_target", target=0.0)
