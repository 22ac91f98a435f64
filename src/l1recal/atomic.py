"""Atomic writes: a stage output appears whole or not at all.

Each writer produces its output under a temporary name in the destination's
folder and renames it into place only after it is complete. A stage that fails
or is interrupted leaves the previous output (or nothing) behind, never a
half-written file or folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(
    destination: str | os.PathLike[str], *, is_dir: bool = False
) -> Iterator[Path]:
    """Yield a temporary path that replaces ``destination`` on success.

    Args:
        destination: final file or folder path.
        is_dir: create the temporary path as an empty folder.

    Yields:
        A path next to ``destination``. On normal exit it is renamed onto
        ``destination`` (replacing an older file or folder); on an exception it
        is deleted and ``destination`` is left untouched.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{destination.name}.tmp-"
    if is_dir:
        temporary = Path(tempfile.mkdtemp(prefix=prefix, dir=destination.parent))
    else:
        handle, name = tempfile.mkstemp(prefix=prefix, dir=destination.parent)
        os.close(handle)
        temporary = Path(name)
    try:
        yield temporary
        _replace(temporary, destination)
    except BaseException:
        _remove(temporary)
        raise


def _replace(source: Path, destination: Path) -> None:
    if source.is_dir():
        os.chmod(source, 0o755)
        if destination.exists():
            # A folder cannot be renamed over a non-empty one: move the old one
            # aside first, so the new one still appears in a single rename.
            old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
            _remove(old)
            os.replace(destination, old)
            os.replace(source, destination)
            _remove(old)
        else:
            os.replace(source, destination)
    else:
        os.chmod(source, 0o644)
        os.replace(source, destination)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_json(destination: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(destination) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def write_text(destination: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(destination) as temporary:
        temporary.write_text(text)
