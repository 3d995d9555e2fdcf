"""The CUDA kernels compile with nvcc, even where torch and the machine have no GPU.

A CPU build of torch ships the ATen and c10 headers the kernels use except one
generated configuration header, for which cmake/cuda_compile_check/ has a stand-in.
Where a GPU and a CUDA torch exist, tests/test_*_cuda.py run the kernels themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CUDA_SOURCES = sorted((ROOT / "csrc" / "ops" / "cuda").glob("*.cu"))
NVCC = shutil.which("nvcc") or next(
    (p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None
)

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")


@pytest.mark.parametrize("source", CUDA_SOURCES, ids=[s.name for s in CUDA_SOURCES])
def test_cuda_kernel_compiles(source, tmp_path):
    torch_include = Path(torch.__file__).parent / "include"
    cmd = [
        NVCC, "-std=c++20", "-c", str(source), "-o", str(tmp_path / "kernel.o"),
        "-arch=sm_80", "--expt-relaxed-constexpr", "-w",
        f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'cmake' / 'cuda_compile_check'}",
        f"-I{torch_include}", f"-I{torch_include / 'torch' / 'csrc' / 'api' / 'include'}",
        f"-I{sysconfig.get_paths()['include']}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"nvcc failed on {source.name}:\n{result.stderr[-4000:]}"
    assert (tmp_path / "kernel.o").stat().st_size > 0
