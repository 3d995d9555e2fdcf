"""Loads the compiled extension ``hwnas._C`` and checks that it fits this torch.

Importing ``_C`` registers every ``hwnas::`` operator with PyTorch's dispatcher.
A missing or mismatched build fails here, at import, with a message that says what
to do, instead of later with an obscure "operator does not exist" or a crash.
"""

from __future__ import annotations

import torch

_REBUILD_HINT = (
    "Reinstall hwnas from its source folder so that it is compiled against the torch "
    "you use: `pip install --no-build-isolation --force-reinstall .` (or `pip install .` "
    "in a fresh virtual environment)."
)


def _base_version(version: str) -> str:
    """'2.13.0+cpu' -> '2.13.0'."""
    return version.split("+", 1)[0]


try:
    from hwnas import _C  # noqa: F401  (import for its operator registrations)
except ImportError as err:  # pragma: no cover - exercised only on broken installs
    raise ImportError(
        f"hwnas: the compiled extension hwnas._C could not be loaded ({err}). "
        "This happens when hwnas is imported from a source checkout that was never built, "
        "or when the build was made for another Python or torch. " + _REBUILD_HINT
    ) from err

BUILT_TORCH_VERSION: str = _C.torch_version
WITH_CUDA: bool = bool(_C.with_cuda)

if _base_version(torch.__version__) != BUILT_TORCH_VERSION:  # pragma: no cover
    raise ImportError(
        f"hwnas: the extension was built against torch {BUILT_TORCH_VERSION} but torch "
        f"{torch.__version__} is imported; custom operators are not ABI-compatible across "
        "torch versions. " + _REBUILD_HINT
    )
