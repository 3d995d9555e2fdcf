"""Atomic file writing and versioned JSON, shared by everything hwnas writes.

Every JSON file carries a ``format`` name and an integer ``version`` so that a
reader can refuse a file it does not understand instead of misreading it. Files are
written atomically: a temporary file in the destination folder is filled, flushed
and then moved over the destination with :func:`os.replace`, so a crash or a kill
never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Callable, Mapping

import numpy as np

__all__ = [
    "atomic_write_file",
    "atomic_write_text",
    "check_format",
    "dumps",
    "read_json",
    "write_json",
]


def _umask() -> int:
    """The process's umask (reading it means setting it: set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_file(path: str | os.PathLike, writer: Callable[[str], None], fsync: bool = True) -> None:
    """Calls ``writer(tmp_path)`` and moves the result to ``path`` atomically.

    The temporary file lives in the destination folder (so :func:`os.replace` is a
    rename on one file system) and is removed if ``writer`` or the move fails. For
    files produced by writers that want a path (matplotlib's ``savefig``,
    ``torch.save``, ONNX export); :func:`atomic_write_text` writes strings.

    Args:
        fsync: Flush the file to disk before the rename, so that a power cut after
            ``os.replace`` cannot expose an empty file.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder; give a file path")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        writer(tmp)
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_file`).

    Args:
        fsync: Flush to disk before the rename. Without it the file is still never
            half-written when the process dies; only a power loss can lose the
            latest version (used for frequent saves such as each entry of a table build).
    """

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    atomic_write_file(path, write, fsync=fsync)


def _finite_only(value: Any) -> Any:
    """JSON-ready copy: non-finite floats (invalid JSON) become ``None``, numpy scalars
    Python numbers, tuples lists and keys strings, recursively."""
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite_only(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_only(v) for v in value]
    return value


def dumps(data: Mapping[str, Any]) -> str:
    """Serialises ``data`` as stable, human-readable JSON (with a trailing newline)."""
    return json.dumps(_finite_only(data), indent=2, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, data: Mapping[str, Any], fsync: bool = True) -> None:
    """Writes ``data`` (which must carry ``format`` and ``version``) atomically as JSON."""
    if "format" not in data or "version" not in data:
        raise ValueError("every JSON file hwnas writes carries 'format' and 'version'")
    atomic_write_text(path, dumps(data), fsync=fsync)


class UnsupportedVersion(ValueError):
    """A document of the expected format, written in a version this hwnas does not read."""


def check_format(data: Any, expected_format: str, supported_versions: tuple[int, ...], source: str) -> None:
    """Raises ``ValueError`` unless ``data`` is an object of the expected format and a supported version
    (:class:`UnsupportedVersion` for another version: a newer hwnas wrote it, nothing is damaged).

    Args:
        data: Parsed JSON document.
        expected_format: Value the ``format`` key must have.
        supported_versions: Versions this reader understands.
        source: Where the data came from (file name or "string"), for messages.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a JSON object of format {expected_format!r}, got {type(data).__name__}")
    if data.get("format") != expected_format:
        raise ValueError(f"{source}: format is {data.get('format')!r}, expected {expected_format!r}")
    if data.get("version") not in supported_versions:
        raise UnsupportedVersion(
            f"{source}: {expected_format} version {data.get('version')!r} is not supported by this hwnas "
            f"(supported: {', '.join(map(str, supported_versions))}); upgrade hwnas or re-export the file"
        )


def read_json(
    path: str | os.PathLike, expected_format: str, supported_versions: tuple[int, ...] = (1,)
) -> dict[str, Any]:
    """Reads a JSON file and checks its ``format`` and ``version``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not JSON, another format, or a version this hwnas does not read.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    check_format(data, expected_format, supported_versions, path)
    return data


def read_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of ``path``.

    Raises:
        FileNotFoundError: No such file.
        IsADirectoryError: ``path`` is a folder.
        ValueError: The file is not UTF-8 text (a binary file given where a JSON or YAML
            document was expected); the message names it.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: a folder, not a file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason}); "
                         "expected a JSON or YAML document") from None
