"""Objective parameters must be real numbers: no coercion of strings or bools."""

import math

import numpy as np
import pytest

from hwnas.search.objectives import OBJECTIVES, make_objective

# Every parameter of every objective, with a valid value.
PARAMETERS = [(name, field) for name, cls in OBJECTIVES.items() for field in cls.__dataclass_fields__]


@pytest.mark.parametrize("name, field", PARAMETERS, ids=[f"{n}.{f}" for n, f in PARAMETERS])
@pytest.mark.parametrize("bad", ["0.2", True, False, None, [0.2], complex(1, 0)], ids=repr)
def test_parameters_that_are_not_real_numbers_are_refused(name, field, bad):
    with pytest.raises(ValueError, match=rf"{field} must be a .*finite number \(int or float\), got .*\("):
        make_objective(name, **{field: bad})
    with pytest.raises(ValueError, match=rf"{field} must be a"):
        make_objective({"name": name, field: bad})


@pytest.mark.parametrize("name, field", PARAMETERS, ids=[f"{n}.{f}" for n, f in PARAMETERS])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_parameters_are_refused(name, field, bad):
    with pytest.raises(ValueError, match=rf"{field} must be .*finite"):
        make_objective(name, **{field: bad})


def test_the_messages_name_the_value_and_its_type():
    with pytest.raises(ValueError, match=r"alpha must be a positive finite number \(int or float\), got '0.2' \(str\)"):
        make_objective("fbnet", alpha="0.2")
    with pytest.raises(ValueError, match=r"alpha must be a positive finite number \(int or float\), got True \(bool\)"):
        make_objective("fbnet", alpha=True)
    with pytest.raises(ValueError, match=r"lam must be a non-negative finite number \(int or float\), got '1e-4' \(str\)"):
        make_objective("additive", lam="1e-4")


def test_ints_floats_and_numpy_scalars_are_accepted_as_floats():
    objective = make_objective("fbnet", alpha=1, beta=np.float32(0.5))
    assert objective.alpha == 1.0 and isinstance(objective.alpha, float)
    assert objective.beta == 0.5 and isinstance(objective.beta, float)
    assert make_objective("hard_target", target=np.int64(800), lam=0).to_dict() == {
        "name": "hard_target", "target": 800.0, "lam": 0.0}
