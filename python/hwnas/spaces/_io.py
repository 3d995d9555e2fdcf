"""Small helpers for the JSON files this package writes.

Every file carries a ``format`` name and an integer ``version`` so that a
reader can refuse a file it does not understand instead of misreading it.
Files are written atomically: a temporary file in the destination folder is
filled, flushed and then moved over the destination with :func:`os.replace`,
so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Mapping


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (temp file + ``os.replace``)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


def atomic_write_bytes_via(path: str | os.PathLike, writer) -> None:
    """Calls ``writer(tmp_path)`` and moves the result to ``path`` atomically.

    Used for files produced by third-party writers (e.g. matplotlib's
    ``savefig``) that want a path rather than a string.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        writer(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


def check_format(data: Any, expected_format: str, supported_versions: tuple[int, ...], source: str) -> None:
    """Raises ``ValueError`` unless ``data`` is a dict of the expected format/version.

    Args:
        data: Parsed JSON document.
        expected_format: Value the ``format`` key must have.
        supported_versions: Versions this reader understands.
        source: Where the data came from (file name or "string"), for messages.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a JSON object with format {expected_format!r}, got {type(data).__name__}")
    fmt = data.get("format")
    if fmt != expected_format:
        raise ValueError(f"{source}: format is {fmt!r}, expected {expected_format!r}")
    version = data.get("version")
    if version not in supported_versions:
        raise ValueError(
            f"{source}: {expected_format} version {version!r} is not supported by this hwnas "
            f"(supported: {', '.join(map(str, supported_versions))}); upgrade hwnas or re-export the file"
        )


def dumps(data: Mapping[str, Any]) -> str:
    """Serialises ``data`` as stable, human-readable JSON (with trailing newline)."""
    return json.dumps(data, indent=2, sort_keys=False) + "\n"
