"""Run folders: resolved config, per-epoch checkpoints, atomic writes and resume.

Every search or training run owns one folder. Everything in it is written
atomically (a temporary file in the same folder, flushed, then moved over the
destination with :func:`os.replace`), so killing the process at any moment leaves
either the old or the new version of each file, never a torn one.

Checkpoints are written as ``checkpoints/<stage>-epoch-NNNN.pt``; after a checkpoint
is in place, the pointer ``checkpoints/<stage>-latest.json`` is replaced to name it,
and only then are older checkpoints pruned. A kill between those steps leaves the
pointer naming a complete, older checkpoint: at most one epoch is lost.

JSON files carry ``format`` and ``version``; :func:`read_json` refuses unknown ones.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import re
import warnings
from typing import Any, Mapping, Optional

import numpy as np
import torch

from hwnas._io import UnsupportedVersion, atomic_write_file, read_json, write_json

__all__ = [
    "DEFAULT_KEEP_CHECKPOINTS",
    "RunDir",
    "RunInUse",
    "atomic_write_json",
    "atomic_write_file",
    "atomic_torch_save",
    "read_json",
    "capture_rng_state",
    "restore_rng_state",
    "POINTER_FORMAT",
    "CHECKPOINT_FORMAT",
]

POINTER_FORMAT = "hwnas.checkpoint_pointer"
CHECKPOINT_FORMAT = "hwnas.checkpoint"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- atomic files

# Run folders use the package's one implementation of atomic, versioned files.
atomic_write_json = write_json


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through a temporary file and ``os.replace``."""
    atomic_write_file(path, lambda tmp: torch.save(obj, tmp))


# --------------------------------------------------------------------------- RNG state


def capture_rng_state(generators: Optional[Mapping[str, torch.Generator]] = None) -> dict[str, Any]:
    """Every random state a run depends on: torch (CPU), numpy, Python, named generators.

    Args:
        generators: Extra ``torch.Generator`` objects (e.g. the data shuffler), by name.

    Returns:
        A dict that :func:`restore_rng_state` puts back.
    """
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any], generators: Optional[Mapping[str, torch.Generator]] = None) -> None:
    """Restores what :func:`capture_rng_state` captured (generators matched by name).

    Raises:
        ValueError: A named generator has no saved state.
    """
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", {})
    for name, generator in (generators or {}).items():
        if name not in saved:
            raise ValueError(f"checkpoint has no state for random generator {name!r} (saved: {sorted(saved)})")
        generator.set_state(saved[name])


# --------------------------------------------------------------------------- run folders

_STAGE_RE = re.compile(r"^[a-z][a-z0-9_]*$")

#: Epoch checkpoints a run keeps per stage unless told otherwise: the newest two, enough
#: to resume after a kill at any moment (one may be half-written when it comes).
DEFAULT_KEEP_CHECKPOINTS = 2


class RunDir:
    """One run's output folder.

    Args:
        path: The folder (created if missing).
        keep_checkpoints: How many epoch checkpoints of each stage to keep (the
            newest ones; at least 1). ``None`` keeps all.

    Attributes:
        path: Absolute folder path.
    """

    CONFIG_FORMAT = "hwnas.run_config"

    def __init__(self, path: str | os.PathLike, keep_checkpoints: Optional[int] = DEFAULT_KEEP_CHECKPOINTS) -> None:
        self.path = os.path.abspath(os.fspath(path))
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"run folder {self.path} exists and is not a folder")
        os.makedirs(self.path, exist_ok=True)
        if keep_checkpoints is not None and keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be at least 1 or None, got {keep_checkpoints!r}")
        self.keep_checkpoints = keep_checkpoints

    @classmethod
    def create(cls, root: str | os.PathLike, prefix: str, **kwargs: Any) -> "RunDir":
        """A new, uniquely named folder ``root/<prefix>-YYYYmmdd-HHMMSS[-k]``."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        root = os.fspath(root)
        os.makedirs(root, exist_ok=True)
        for k in range(1000):
            name = f"{prefix}-{stamp}" + (f"-{k}" if k else "")
            try:
                os.mkdir(os.path.join(root, name))  # mkdir is atomic: two runs never share a folder
            except FileExistsError:
                continue
            return cls(os.path.join(root, name), **kwargs)
        raise ValueError(f"could not create a new run folder under {root}")

    def file(self, *parts: str) -> str:
        """Absolute path of ``parts`` inside the run folder (parent folders created)."""
        full = os.path.join(self.path, *parts)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return full

    # ------------------------------------------------------------------ config

    def write_config(self, config: Mapping[str, Any]) -> str:
        """Writes the resolved config as ``config.json`` (format ``hwnas.run_config`` v1)."""
        path = self.file("config.json")
        atomic_write_json(path, {"format": self.CONFIG_FORMAT, "version": FORMAT_VERSION, **config})
        return path

    def read_config(self) -> dict[str, Any]:
        """The ``config.json`` written by :meth:`write_config` (without format/version).

        Raises:
            FileNotFoundError: The folder has no config (not a run folder).
        """
        path = os.path.join(self.path, "config.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{self.path} is not an hwnas run folder (no config.json)")
        data = read_json(path, self.CONFIG_FORMAT, (FORMAT_VERSION,))
        return {k: v for k, v in data.items() if k not in ("format", "version")}

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint_name(self, stage: str, epoch: int) -> str:
        return os.path.join("checkpoints", f"{stage}-epoch-{epoch:04d}.pt")

    def _pointer_path(self, stage: str) -> str:
        return os.path.join(self.path, "checkpoints", f"{stage}-latest.json")

    def save_checkpoint(self, stage: str, epoch: int, state: Mapping[str, Any]) -> str:
        """Saves ``state`` as the checkpoint of ``stage`` after epoch ``epoch`` (1-based count).

        Order: checkpoint file (atomic), then the ``latest`` pointer (atomic), then
        pruning of older checkpoints, so a kill at any point leaves a valid latest.

        Returns:
            The checkpoint's path.
        """
        if not _STAGE_RE.match(stage):
            raise ValueError(f"checkpoint stage must match {_STAGE_RE.pattern}, got {stage!r}")
        relative = self._checkpoint_name(stage, epoch)
        path = self.file(relative)
        atomic_torch_save({"format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION, "stage": stage, "epoch": epoch, **state}, path)
        atomic_write_json(self._pointer_path(stage), {"format": POINTER_FORMAT, "version": FORMAT_VERSION,
                                                      "stage": stage, "epoch": epoch, "file": relative})
        self._prune(stage, epoch)
        return path

    def remove_temporaries(self) -> list[str]:
        """Removes the temporary files of atomic writes that a kill interrupted (``.tmp-*``,
        anywhere in the folder), returning their paths.

        Call it only while holding :meth:`lock` (when a run is resumed): no other process
        writes into the folder then, and a temporary file is renamed into place when its
        write completes, so any found belongs to a write that never finished.
        """
        removed = []
        for folder, _, names in os.walk(self.path):
            for name in names:
                if name.startswith(".tmp-"):
                    path = os.path.join(folder, name)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                        removed.append(path)
        return removed

    def _kept_epochs(self, stage: str) -> list[int]:
        """Epochs of the checkpoints of ``stage`` in the folder, in increasing order."""
        pattern = re.compile(rf"^{re.escape(stage)}-epoch-(\d+)\.pt$")
        names = os.listdir(os.path.join(self.path, "checkpoints"))
        return sorted(int(m.group(1)) for m in map(pattern.match, names) if m)

    def _prune(self, stage: str, latest_epoch: int) -> None:
        if self.keep_checkpoints is None:
            return
        for epoch in self._kept_epochs(stage):
            if epoch <= latest_epoch - self.keep_checkpoints:
                os.unlink(os.path.join(self.path, self._checkpoint_name(stage, epoch)))

    def load_latest(self, stage: str) -> Optional[dict[str, Any]]:
        """The latest checkpoint of ``stage``, or ``None`` if there is none yet.

        The checkpoint the ``latest`` pointer names is tried first (the pointer moves only
        once its file is whole), then the other kept checkpoints, newest first. Without a
        pointer (a kill between the first checkpoint and its pointer, or a pointer deleted
        by hand) the newest readable checkpoint is the state to continue from, silently.
        A pointer that cannot be read or names a missing file, and a checkpoint that cannot
        be read (damaged on disk), are reported with a warning; the run then continues from
        the newest readable kept checkpoint and repeats the epochs in between.

        Raises:
            ValueError: A pointer or checkpoint of an unknown format version, or a pointer
                naming a checkpoint while none of the kept ones can be read.
        """
        pointer_path = self._pointer_path(stage)
        kept = self._kept_epochs(stage) if os.path.isdir(os.path.join(self.path, "checkpoints")) else []
        if not kept and not os.path.exists(pointer_path):
            return None  # nothing saved yet
        problems: list[str] = []
        order = list(reversed(kept))  # newest first
        if os.path.exists(pointer_path):
            try:
                pointer = read_json(pointer_path, POINTER_FORMAT, (FORMAT_VERSION,))
                pointed = int(pointer["epoch"])
            except UnsupportedVersion:
                raise  # written by another hwnas: not damage to pass over
            except (KeyError, TypeError, ValueError, OSError) as exc:
                problems.append(f"{pointer_path} cannot be read ({exc})")
            else:
                if pointed in kept:
                    order = [pointed] + [epoch for epoch in order if epoch != pointed]
                else:
                    missing = os.path.join(self.path, self._checkpoint_name(stage, pointed))
                    problems.append(f"{pointer_path} names {missing}, which does not exist")
        for epoch in order:
            candidate = os.path.join(self.path, self._checkpoint_name(stage, epoch))
            try:
                state = _read_checkpoint(candidate)
            except _DamagedCheckpoint as damaged:
                problems.append(str(damaged))
                continue
            if problems:
                warnings.warn("; ".join(problems) + f"; resuming from the checkpoint {candidate} instead "
                              "(the run folder was damaged or edited by hand)", stacklevel=2)
            return state
        problems.append(f"no kept checkpoint of {stage!r} can be read to resume from")
        raise ValueError("; ".join(problems))

    def lock(self) -> None:
        """Marks the folder as in use by this process until it exits (an exclusive
        ``flock`` on ``.lock``, which the OS releases when the process ends, however).

        Two processes continuing one run would overwrite each other's checkpoints, and
        :meth:`remove_temporaries` would delete the other's files in flight.

        Raises:
            RunInUse: Another process holds the run.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock (Windows): runs are not guarded
            return
        if getattr(self, "_lock_handle", None) is not None:
            return
        handle = open(os.path.join(self.path, ".lock"), "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RunInUse(f"{self.path} is in use by another hwnas process; wait for it to end "
                           "(or stop it) before continuing this run") from None
        self._lock_handle = handle

    def unlock(self) -> None:
        """Releases :meth:`lock` (a finished run; the OS releases it anyway at exit)."""
        handle = getattr(self, "_lock_handle", None)
        if handle is not None:
            self._lock_handle = None
            handle.close()

    def __del__(self) -> None:
        self.unlock()


class RunInUse(OSError):
    """Another process holds the run folder (:meth:`RunDir.lock`)."""


class _DamagedCheckpoint(ValueError):
    """A checkpoint file torch cannot read."""


def _read_checkpoint(path: str) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, OSError... for a bad file
        raise _DamagedCheckpoint(f"{path}: the checkpoint cannot be read ({type(exc).__name__}: {exc}); "
                                 f"the file is damaged") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or state.get("version") != FORMAT_VERSION:
        found = (state.get("format"), state.get("version")) if isinstance(state, dict) else (type(state).__name__, None)
        raise ValueError(
            f"{path}: checkpoint format {found[0]!r} version {found[1]!r} "
            f"is not supported (expected {CHECKPOINT_FORMAT!r} version {FORMAT_VERSION})"
        )
    return state
