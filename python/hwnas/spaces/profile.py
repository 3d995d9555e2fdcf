"""Parameter, MAC and activation-memory profiling of a model.

Conventions (``fbnet.json`` ``macs_convention``): MACs are the
multiply-accumulates of convolution and fully-connected layers only; batch
norm, activations, pooling, element-wise adds/multiplies and biases are not
counted. They are measured with PyTorch's ``torch.utils.flop_counter
.FlopCounterMode``, which counts ``2 * MACs`` FLOPs for ``aten.convolution``
(grouped and depthwise included: ``C_out * C_in/groups * k*k * H_out*W_out``)
and ``aten.mm/addmm/bmm``; the profile reports FLOPs / 2. Parameters are all
parameters (conv, BN affine, linear weight and bias); BN running statistics are
buffers and not counted.

Activation memory is estimated at the granularity of the profile's rows
(stem, each searchable layer, head for :class:`~hwnas.spaces.builder.SpaceNet`):
``activation_bytes`` is the input plus every row's output (what a training step
keeps at row boundaries), ``peak_activation_bytes`` the largest input + output of
a single row (a lower bound for sequential inference).
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hwnas._checks import as_integer
from hwnas._io import atomic_write_text, dumps

__all__ = ["LayerProfile", "Profile", "profile", "PROFILE_FORMAT", "PROFILE_FORMAT_VERSION"]

PROFILE_FORMAT = "hwnas.profile"
PROFILE_FORMAT_VERSION = 1


@dataclass
class LayerProfile:
    """One row of a profile.

    Attributes:
        name: Module path inside the model (e.g. ``"layers.3"``).
        kind: Module class name.
        input_shape: Input tensor shape (with batch).
        output_shape: Output tensor shape (with batch).
        params: Parameters of the module.
        macs: Multiply-accumulates of its conv/linear layers for the given input.
        output_bytes: Bytes of its output tensor.
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int
    output_bytes: int


@dataclass
class Profile:
    """Result of :func:`profile`.

    Attributes:
        input_shape: Shape the model was run with (batch included).
        output_shape: Model output shape.
        params: All parameters.
        macs: Conv + linear multiply-accumulates for ``input_shape`` (whole batch).
        activation_bytes: Input + outputs of every row.
        peak_activation_bytes: Largest input + output of one row.
        layers: Per-row breakdown.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int
    activation_bytes: int
    peak_activation_bytes: int
    layers: list[LayerProfile] = field(default_factory=list)

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def macs_m(self) -> float:
        return self.macs / 1e6

    def to_dict(self) -> dict[str, Any]:
        data = {"format": PROFILE_FORMAT, "version": PROFILE_FORMAT_VERSION}
        data.update(asdict(self))
        return data

    def save(self, path: str | os.PathLike) -> None:
        """Writes the profile as JSON (atomically)."""
        atomic_write_text(path, dumps(self.to_dict()))

    def table(self) -> str:
        """Readable per-row table with totals."""
        lines = [f"{'layer':<12} {'module':<18} {'input':<18} {'output':<18} {'params':>10} {'MACs':>13}"]
        for row in self.layers:
            lines.append(
                f"{row.name:<12} {row.kind:<18} {_shape(row.input_shape):<18} {_shape(row.output_shape):<18} "
                f"{row.params:>10,} {row.macs:>13,}"
            )
        lines.append(
            f"{'total':<12} {'':<18} {_shape(self.input_shape):<18} {_shape(self.output_shape):<18} "
            f"{self.params:>10,} {self.macs:>13,}"
        )
        lines.append(
            f"params {self.params_m:.3f} M, MACs {self.macs_m:.2f} M, activations {self.activation_bytes / 2**20:.2f} MiB "
            f"(peak row {self.peak_activation_bytes / 2**20:.2f} MiB)"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def _profile_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Rows of the breakdown: ``model.profile_units()`` if defined, else top-level children (Sequentials expanded once)."""
    units_fn = getattr(model, "profile_units", None)
    if callable(units_fn):
        return list(units_fn())
    units: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 0:
            units += [(f"{name}.{sub}", m) for sub, m in child.named_children()]
        else:
            units.append((name, child))
    return units or [("model", model)]


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def profile(model: nn.Module, input_shape: Sequence[int], dtype: torch.dtype = torch.float32, meta: bool = True) -> Profile:
    """Counts parameters, MACs and activation memory of ``model``.

    Runs one forward pass under ``torch.no_grad()`` in eval mode. With
    ``meta=True`` (default) the pass runs on a ``meta``-device copy of the
    model, so no arithmetic is done (FBNet-C at 224 takes well under a second)
    and ``model`` itself is untouched; if the copy cannot run on ``meta`` (an
    operator without a meta kernel), the real model is run instead, and its
    train/eval mode is restored afterwards.

    Args:
        model: Any ``nn.Module`` taking one image tensor.
        input_shape: ``(C, H, W)`` (batch 1 is added) or ``(N, C, H, W)``.
        dtype: Input dtype (also used for activation byte counts).
        meta: Count on a meta-device copy.

    Returns:
        A :class:`Profile`; MACs are for the whole given batch.
    """
    if meta:
        try:
            meta_model = copy.deepcopy(model).to("meta")
        except Exception:  # e.g. modules holding non-tensor state deepcopy cannot handle
            meta_model = None
        if meta_model is not None:
            try:
                return _profile_once(meta_model, input_shape, dtype)
            except (NotImplementedError, RuntimeError):
                pass  # some operator has no meta kernel: count on the real model
    return _profile_once(model, input_shape, dtype)


def _profile_once(model: nn.Module, input_shape: Sequence[int], dtype: torch.dtype) -> Profile:
    try:
        shape = tuple(as_integer("input_shape", s) for s in input_shape)  # 8.5 is a mistake, not 8
    except (TypeError, ValueError):
        shape = ()
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W) with positive sizes, got {tuple(input_shape)}")
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    x = torch.zeros(shape, dtype=dtype, device=device)

    units = _profile_units(model)
    records: dict[str, dict[str, Any]] = {}
    counter = FlopCounterMode(display=False)
    handles = []

    def make_hooks(unit_name: str):
        def pre_hook(module: nn.Module, args: Any) -> None:
            records[unit_name] = {"flops_before": counter.get_total_flops(), "input": _first_tensor(args)}

        def post_hook(module: nn.Module, args: Any, output: Any) -> None:
            rec = records[unit_name]
            rec["flops"] = counter.get_total_flops() - rec.pop("flops_before")
            out = _first_tensor(output)
            inp = rec.pop("input")
            rec["input_shape"] = tuple(inp.shape) if inp is not None else ()
            rec["input_bytes"] = _nbytes(inp) if inp is not None else 0
            rec["output_shape"] = tuple(out.shape) if out is not None else ()
            rec["output_bytes"] = _nbytes(out) if out is not None else 0

        return pre_hook, post_hook

    for unit_name, unit in units:
        pre, post = make_hooks(unit_name)
        handles.append(unit.register_forward_pre_hook(pre))
        handles.append(unit.register_forward_hook(post))

    was_training = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), counter:
            out = model(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in was_training:
            m.training = mode

    rows = []
    for unit_name, unit in units:
        rec = records.get(unit_name)
        if rec is None or "flops" not in rec:
            continue  # module not used in forward
        rows.append(
            LayerProfile(
                name=unit_name,
                kind=type(unit).__name__,
                input_shape=rec["input_shape"],
                output_shape=rec["output_shape"],
                params=sum(p.numel() for p in unit.parameters()),
                macs=rec["flops"] // 2,
                output_bytes=rec["output_bytes"],
            )
        )
    out_t = _first_tensor(out)
    input_bytes = _nbytes(x)
    activation = input_bytes + sum(r.output_bytes for r in rows)
    peak = max([records[r.name]["input_bytes"] + r.output_bytes for r in rows], default=input_bytes)
    return Profile(
        input_shape=shape,
        output_shape=tuple(out_t.shape) if out_t is not None else (),
        params=sum(p.numel() for p in model.parameters()),
        macs=counter.get_total_flops() // 2,
        activation_bytes=activation,
        peak_activation_bytes=peak,
        layers=rows,
    )
