"""Fixtures of the search tests (helpers live in _search_fixtures.py so test modules can import them)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from _search_fixtures import synthetic_table, tiny_dataset, tiny_space  # noqa: E402

from hwnas.data import prepare_splits  # noqa: E402


@pytest.fixture
def space():
    return tiny_space()


@pytest.fixture
def table(space):
    return synthetic_table(space)


@pytest.fixture
def splits():
    return prepare_splits(tiny_dataset(), 8, seed=0)
