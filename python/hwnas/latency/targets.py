"""Measurement targets: where a block or a model runs when it is timed.

A target is a small plug-in: a subclass of :class:`Target` that turns a module and
an input shape into a zero-argument runnable, times it with the native harness,
and describes itself with a device fingerprint. Register new ones with
:func:`register_target`; look them up with :func:`get_target`.

Built-in targets:

* ``eager``: this CPU under eager PyTorch (``module(x)`` under ``inference_mode``),
  timed with :func:`~hwnas.latency.harness.time_callable`. The Python call of the
  module is part of eager latency, so it is part of the measurement.
* ``torchscript``: the traced module run by the C++ TorchScript interpreter with the
  GIL released (:func:`~hwnas.latency.harness.time_module`).
* ``onnxruntime``: the module exported to ONNX (legacy TorchScript exporter, which
  works offline) and run by ONNX Runtime's CPU provider with
  ``intra_op_num_threads = threads``. Timed through ``session.run`` from Python:
  every call pays ONNX Runtime's per-run overhead and the Python call, which
  :meth:`Target.call_overhead` measures on an identity model.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from hwnas._argtypes import check_thread_count

from .fingerprint import device_fingerprint
from .harness import TimingConfig, TimingResult, time_callable, time_module

__all__ = [
    "Target",
    "EagerTarget",
    "TorchScriptTarget",
    "OnnxRuntimeTarget",
    "register_target",
    "get_target",
    "list_targets",
    "target_from_fingerprint",
]

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Target(ABC):
    """A place to run and time modules.

    Args:
        threads: Intra-op threads (1 for reproducible single-core tables).
        batch: Batch size of the inputs.
        dtype: Name of the input and weight dtype (``"float32"``...).
    """

    name: str = "abstract"

    def __init__(self, threads: int = 1, batch: int = 1, dtype: str = "float32") -> None:
        check_thread_count(threads)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r} is not supported; choose one of {sorted(_DTYPES)}")
        self.threads = threads
        self.batch = batch
        self.dtype = dtype

    # ----------------------------------------------------------------- plug-in API

    def libraries(self) -> dict[str, str]:
        """Versions of libraries beyond torch/numpy the target depends on."""
        return {}

    def options(self) -> dict[str, Any]:
        """Target options that change latency (stored in the fingerprint)."""
        return {}

    def fingerprint(self) -> dict[str, Any]:
        return device_fingerprint(self.name, self.threads, self.batch, self.dtype, self.libraries(), self.options())

    def make_input(self, input_shape: Sequence[int]) -> torch.Tensor:
        """A random input of shape ``(batch, *input_shape)`` (fixed seed: reproducible)."""
        generator = torch.Generator().manual_seed(0)
        return torch.randn((self.batch, *input_shape), generator=generator).to(_DTYPES[self.dtype])

    def _prepare_module(self, module: nn.Module) -> nn.Module:
        return module.eval().to(_DTYPES[self.dtype])

    @abstractmethod
    def measure(self, module: nn.Module, input_shape: Sequence[int], config: TimingConfig) -> TimingResult:
        """Times one forward pass of ``module`` on an input of ``(batch, *input_shape)``."""

    def call_overhead(self, input_shape: Sequence[int], config: TimingConfig) -> TimingResult:
        """Time of an identity model: the fixed cost every separately timed call pays."""
        return self.measure(nn.Identity(), input_shape, config)

    def prepared(self, module: nn.Module, input_shape: Sequence[int]) -> Callable[[TimingConfig], TimingResult]:
        """``timer(config)`` that times ``module`` again and again without preparing it anew.

        For a module timed many times (a drift reference): targets whose preparation
        is costly (an ONNX export and session) do it once here.
        """
        return lambda config: self.measure(module, input_shape, config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threads={self.threads}, batch={self.batch}, dtype={self.dtype!r})"


class EagerTarget(Target):
    """This CPU under eager PyTorch: ``module(x)`` under ``torch.inference_mode``."""

    name = "eager"

    def options(self) -> dict[str, Any]:
        return {"mode": "inference_mode", "flush_denormal": True}

    def measure(self, module: nn.Module, input_shape: Sequence[int], config: TimingConfig) -> TimingResult:
        module = self._prepare_module(module)
        x = self.make_input(input_shape)
        cfg = _with_threads(config, self.threads)
        # inference_mode is thread-local state and the harness runs on this thread,
        # so entering it once here covers every call without a per-call context switch.
        with torch.inference_mode(), _flush_denormals():
            return time_callable(lambda: module(x), cfg)

    def call_overhead(self, input_shape: Sequence[int], config: TimingConfig) -> TimingResult:
        """The harness's Python call of a lambda: the only cost a standalone block pays extra.

        Inside a whole model every block is still called through ``nn.Module.__call__``,
        so (unlike ONNX Runtime's per-run cost) the module call itself is no overhead.
        """
        x = self.make_input(input_shape)
        return time_callable(lambda: x, _with_threads(config, self.threads))


class TorchScriptTarget(Target):
    """The traced module run by the C++ TorchScript interpreter, GIL released."""

    name = "torchscript"

    def options(self) -> dict[str, Any]:
        return {"mode": "trace", "flush_denormal": True, "profiling_executor": bool(torch._C._get_graph_executor_optimize())}

    def measure(self, module: nn.Module, input_shape: Sequence[int], config: TimingConfig) -> TimingResult:
        return self.prepared(module, input_shape)(config)

    def prepared(self, module: nn.Module, input_shape: Sequence[int]) -> Callable[[TimingConfig], TimingResult]:
        """Traces ``module`` once for all its timings: every trace adds compiled code that
        the interpreter keeps, so tracing the drift reference (timed around every
        measurement) anew each time grew the process by ~10 MB/s and slowed it down."""
        module = self._prepare_module(module)
        x = self.make_input(input_shape)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, (x,), check_trace=False)

        def timer(config: TimingConfig) -> TimingResult:
            with _flush_denormals():
                return time_module(traced, [x], _with_threads(config, self.threads))

        return timer


class OnnxRuntimeTarget(Target):
    """ONNX Runtime on the CPU (``CPUExecutionProvider``), timed through ``session.run``.

    Args:
        threads: ``intra_op_num_threads`` of the session (inter-op threads: 1).
        batch: Batch size.
        dtype: Only ``"float32"``.
        opset: ONNX opset of the export.
        optimization: ONNX Runtime graph optimisation level: ``"all"``,
            ``"extended"``, ``"basic"`` or ``"disabled"``.
    """

    name = "onnxruntime"

    _LEVELS = ("disabled", "basic", "extended", "all")

    def __init__(self, threads: int = 1, batch: int = 1, dtype: str = "float32", opset: int = 17, optimization: str = "all") -> None:
        super().__init__(threads, batch, dtype)
        if dtype != "float32":
            raise ValueError(f"the onnxruntime target supports dtype 'float32' only, got {dtype!r}")
        if optimization not in self._LEVELS:
            raise ValueError(f"optimization must be one of {self._LEVELS}, got {optimization!r}")
        self.opset = int(opset)
        self.optimization = optimization
        self._ort = _import_onnxruntime()

    def libraries(self) -> dict[str, str]:
        import onnx

        return {"onnxruntime": self._ort.__version__, "onnx": onnx.__version__}

    def options(self) -> dict[str, Any]:
        return {"opset": self.opset, "optimization": self.optimization, "provider": "CPUExecutionProvider",
                "call": "session.run", "denormal_as_zero": True}

    def export(self, module: nn.Module, x: torch.Tensor) -> bytes:
        """The module as ONNX bytes (legacy exporter: needs no onnxscript, works offline)."""
        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (x,), buffer, dynamo=False, input_names=["x"], output_names=["y"], opset_version=self.opset
            )
        return buffer.getvalue()

    def session(self, onnx_bytes: bytes) -> Any:
        ort = self._ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.optimization]
        # Spinning worker threads would burn the other core while idle; with one
        # intra-op thread there are none, and the setting keeps multi-thread runs fair.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Same reason as _flush_denormals for the PyTorch targets.
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])

    def measure(self, module: nn.Module, input_shape: Sequence[int], config: TimingConfig) -> TimingResult:
        return self.prepared(module, input_shape)(config)

    def prepared(self, module: nn.Module, input_shape: Sequence[int]) -> Callable[[TimingConfig], TimingResult]:
        module = self._prepare_module(module)
        x = self.make_input(input_shape)
        session = self.session(self.export(module, x))
        feed = {session.get_inputs()[0].name: x.numpy()}
        run = session.run
        # num_threads=0: the harness must not touch torch's pool; ORT has its own.
        return lambda config: time_callable(lambda: run(None, feed), _with_threads(config, 0))


@contextlib.contextmanager
def _flush_denormals() -> Iterator[None]:
    """Treats denormal floats as zero while timing.

    Untrained networks shrink their activations layer after layer (BatchNorm in eval
    mode with initial running statistics does not renormalise), so deep in a whole
    model most values become denormal and every multiply takes a slow microcode path:
    measured here, an FBNet model ran 1.7x slower with denormals. A standalone block fed
    a unit-variance input never sees them, so without this the table would not add up
    to the model. Trained models do not live in the denormal range either.
    """
    # torch offers no getter for the mode; it is off by default, so restore "off".
    enabled = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if enabled:
            torch.set_flush_denormal(False)


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the onnxruntime target needs onnxruntime and onnx: pip install 'hwnas[onnx]'"
        ) from exc
    return onnxruntime


def _with_threads(config: TimingConfig, threads: int) -> TimingConfig:
    from dataclasses import replace

    return replace(config, num_threads=threads)


_TARGETS: dict[str, Callable[..., Target]] = {}


def register_target(name: str, factory: Callable[..., Target], overwrite: bool = False) -> None:
    """Makes ``get_target(name, **kw)`` return ``factory(**kw)``.

    Raises:
        ValueError: ``name`` is taken and ``overwrite`` is false.
    """
    if name in _TARGETS and not overwrite:
        raise ValueError(f"target {name!r} is already registered (pass overwrite=True to replace it)")
    _TARGETS[name] = factory


def get_target(name: str, **kwargs: Any) -> Target:
    """A target by name, e.g. ``get_target("onnxruntime", threads=1, batch=1)``."""
    if name not in _TARGETS:
        raise ValueError(f"unknown target {name!r}; registered targets: {sorted(_TARGETS)}")
    return _TARGETS[name](**kwargs)


def list_targets() -> list[str]:
    return sorted(_TARGETS)


def target_from_fingerprint(fp: dict[str, Any]) -> Target:
    """The target a table was built on (same name, threads, batch, dtype and options)."""
    kwargs: dict[str, Any] = {"threads": int(fp["threads"]), "batch": int(fp["batch"]), "dtype": str(fp["dtype"])}
    if fp["target"] == "onnxruntime":
        options = fp.get("options", {})
        kwargs.update(opset=int(options.get("opset", 17)), optimization=str(options.get("optimization", "all")))
    return get_target(str(fp["target"]), **kwargs)


register_target("eager", EagerTarget)
register_target("torchscript", TorchScriptTarget)
register_target("onnxruntime", OnnxRuntimeTarget)
