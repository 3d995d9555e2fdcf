"""How supernet layers turn architecture logits into mixture weights.

One function, :func:`sample_mixture`, serves every layer so that the search modes
mean the same thing everywhere:

=================  ==========================================================  ========
mode               mixture weights ``m`` (forward value)                       branches
=================  ==========================================================  ========
``softmax``        ``softmax(logits)`` (DARTS)                                 all
``gumbel``         ``softmax((logits + G) / tau)``, ``G ~ Gumbel(0, 1)`` (FBNet) all
``gumbel_hard``    ``one_hot(argmax of the gumbel sample)``, straight-through  one
``single_path``    ``one_hot(k)``, ``k`` uniform, no gradient (SPOS)           one
``fixed``          ``one_hot(fixed_index)``, no gradient                       one
=================  ==========================================================  ========

``gumbel_hard`` estimator: with ``soft`` the Gumbel-softmax sample and ``k`` its
argmax, the weights are ``one_hot(k) + (soft - soft.detach())``: exactly one-hot in
value (``soft - soft.detach()`` is exactly zero), with the gradient of ``soft``.
Since only branch ``k`` is computed, ``dL/dm_i`` is known only for ``i = k``
(``<dL/dout, op_k(x)>``); the unsampled branches contribute zero. The gradient is thus
``dL/dlogits_j = <dL/dout, op_k(x)> * dsoft_k/dlogits_j``, the straight-through
Gumbel estimator with the unsampled terms dropped. We chose it over ProxylessNAS's
two-path binary gates because it needs no second branch (half the cost per step,
which is the point of the mode). It is biased, more than the full straight-through
estimator (which needs every branch): it credits the sampled branch's output as if
the mixture were linear around the sample, and it compares branches only across
steps, never within one (the gradient of logit ``j != k`` is ``-<g, op_k(x)> *
soft_k * soft_j / tau``: pushed down when the sampled branch helped, up when it
hurt). Use it after a soft warm-up, or to fine-tune a search cheaply. Latency terms
(``sum_i m_i * LAT_i``) still reach every logit through ``soft``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["SEARCH_MODES", "check_mode", "check_temperature", "sample_mixture"]

SEARCH_MODES = ("softmax", "gumbel", "gumbel_hard", "single_path", "fixed")


def check_mode(mode: str, allowed: tuple[str, ...] = SEARCH_MODES) -> str:
    """Returns ``mode`` or raises ValueError naming it and the allowed modes."""
    if mode not in allowed:
        raise ValueError(f"unknown search mode {mode!r}; expected one of {', '.join(allowed)}")
    return mode


def check_temperature(temperature: float) -> float:
    """Returns ``float(temperature)`` or raises ValueError unless it is positive and finite."""
    value = float(temperature)
    if not (value > 0.0 and value != float("inf")):
        raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
    return value


def gumbel_softmax_sample(logits: Tensor, temperature: float) -> Tensor:
    """``softmax((logits + G) / temperature)`` with ``G ~ Gumbel(0, 1)``, shape of ``logits``."""
    temperature = check_temperature(temperature)  # 0 would give NaN weights
    # -log(E) with E ~ Exp(1) is Gumbel(0, 1); exponential_ never returns 0.
    gumbels = -torch.empty_like(logits).exponential_().log()
    return torch.softmax((logits + gumbels) / temperature, dim=-1)


def sample_mixture(
    logits: Tensor, mode: str, temperature: float, fixed_index: Optional[int] = None
) -> tuple[Tensor, Optional[int]]:
    """Mixture weights for one forward pass.

    Args:
        logits: ``[N]`` architecture logits.
        mode: one of :data:`SEARCH_MODES` (see the module docstring).
        temperature: Gumbel-softmax temperature (``gumbel`` and ``gumbel_hard``).
        fixed_index: the chosen candidate in ``fixed`` mode.

    Returns:
        ``(weights, index)``: ``weights`` is ``[N]`` with the dtype and device of
        ``logits``; ``index`` is the only candidate with a non-zero weight in the
        one-branch modes, else ``None``.

    Raises:
        ValueError: for an unknown mode, or ``fixed`` without a valid ``fixed_index``.
    """
    n = logits.shape[-1]
    if mode == "softmax":
        return torch.softmax(logits, dim=-1), None
    if mode == "gumbel":
        return gumbel_softmax_sample(logits, temperature), None
    if mode == "gumbel_hard":
        soft = gumbel_softmax_sample(logits, temperature)
        index = int(soft.detach().argmax())
        hard = torch.nn.functional.one_hot(torch.tensor(index, device=logits.device), n).to(logits.dtype)
        return hard + (soft - soft.detach()), index
    if mode == "single_path":
        index = int(torch.randint(n, ()))
    elif mode == "fixed":
        if fixed_index is None or not 0 <= int(fixed_index) < n:
            raise ValueError(f"mode 'fixed' needs fixed_index in [0, {n}), got {fixed_index!r}")
        index = int(fixed_index)
    else:
        check_mode(mode)
        raise AssertionError("unreachable")
    weights = torch.zeros(n, dtype=logits.dtype, device=logits.device)
    weights[index] = 1.0
    return weights, index
