"""Import-time checks of the native extension: a broken install fails with advice."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

import hwnas
from hwnas import _extension


def _reload_extension_module():
    return importlib.reload(_extension)


def test_extension_reports_the_torch_it_was_built_for():
    assert _extension.BUILT_TORCH_VERSION == torch.__version__.split("+")[0]
    assert isinstance(_extension.WITH_CUDA, bool)
    assert hasattr(torch.ops.hwnas, "weighted_sum")


def test_mismatched_torch_version_is_refused(monkeypatch):
    monkeypatch.setattr(hwnas._C, "torch_version", "1.0.0")
    with pytest.raises(ImportError, match=r"built against torch 1\.0\.0.*Reinstall hwnas"):
        _reload_extension_module()
    monkeypatch.undo()
    _reload_extension_module()


def test_missing_extension_says_what_to_do(monkeypatch):
    # sys.modules[name] = None makes `from hwnas import _C` raise ImportError, as a
    # checkout that was never compiled does.
    monkeypatch.setitem(sys.modules, "hwnas._C", None)
    monkeypatch.delattr(hwnas, "_C")
    with pytest.raises(ImportError, match=r"hwnas\._C could not be loaded.*pip install"):
        _reload_extension_module()
    monkeypatch.undo()
    _reload_extension_module()
