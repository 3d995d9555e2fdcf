"""Atomic JSON writing and format/version checks for the files this package writes."""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Callable, Mapping


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> None:
    """Writes ``text`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``.

    Args:
        fsync: Flush to disk before the rename. Without it the file is still never
            half-written when the process dies; only a power loss can lose the
            latest version (used for the per-entry saves of a table build).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_file(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
    """Calls ``writer(tmp_path)`` (e.g. matplotlib's ``savefig``) and moves the result to ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _clean(value: Any) -> Any:
    """Replaces non-finite floats (not valid JSON) by ``None``, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | os.PathLike, data: Mapping[str, Any], fsync: bool = True) -> None:
    """Writes ``data`` (which must carry ``format`` and ``version``) atomically as JSON."""
    if "format" not in data or "version" not in data:
        raise ValueError("every JSON file hwnas writes carries 'format' and 'version'")
    atomic_write_text(path, json.dumps(_clean(data), indent=1, allow_nan=False) + "\n", fsync=fsync)


def read_json(path: str | os.PathLike, expected_format: str, supported_versions: tuple[int, ...]) -> dict[str, Any]:
    """Reads a JSON file and checks its ``format`` and ``version``.

    Raises:
        ValueError: Not JSON, another format, or a version this hwnas does not read.
    """
    path = os.fspath(path)
    with open(path, "r", encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    check_format(data, expected_format, supported_versions, path)
    return data


def check_format(data: Any, expected_format: str, supported_versions: tuple[int, ...], source: str) -> None:
    """Raises ``ValueError`` unless ``data`` is an object of the expected format and a supported version."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a JSON object of format {expected_format!r}, got {type(data).__name__}")
    if data.get("format") != expected_format:
        raise ValueError(f"{source}: format is {data.get('format')!r}, expected {expected_format!r}")
    if data.get("version") not in supported_versions:
        raise ValueError(
            f"{source}: {expected_format} version {data.get('version')!r} is not supported by this hwnas "
            f"(supported: {list(supported_versions)})"
        )
