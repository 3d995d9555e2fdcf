"""Fixtures of the search tests (helpers live in _search_fixtures.py so test modules can import them)."""

import importlib.util
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from _search_fixtures import synthetic_table, tiny_dataset, tiny_space  # noqa: E402

from hwnas.data import prepare_splits  # noqa: E402


EXPERIMENT_SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "exp_fbnet_search.py")


@pytest.fixture(scope="session")
def experiment():
    """The acceptance experiment ``benchmarks/exp_fbnet_search.py``, loaded as a module."""
    spec = importlib.util.spec_from_file_location("exp_fbnet_search", EXPERIMENT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def space():
    return tiny_space()


@pytest.fixture
def table(space):
    return synthetic_table(space)


@pytest.fixture
def splits():
    return prepare_splits(tiny_dataset(), 8, seed=0)
