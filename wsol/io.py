"""Durable file writes and safe loading, stated once and imported everywhere they are needed.

* ``atomic_write(path, write)``: temp sibling -> write -> flush + fsync -> rename -> fsync of the directory. A
  reader sees either the previous file or the whole new one; after a crash the renamed file cannot be an empty or
  partial one (delayed allocation). Used by checkpoints, ``metrics.json``, the CAM store and score-map exports.
* Fault injection for the kill tests (``tests/test_faults.py``): with ``WSOL_KILL_DURING_WRITE=<name part>:<n>`` in
  the environment, the process SIGKILLs itself halfway through the n-th atomic write of a file whose name contains
  ``<name part>`` — after half the bytes reached the temporary file, before the rename. Unset, it costs one lookup.
* ``load_torch_file(path, what)``: ``torch.load(weights_only=True)`` (no pickled code is ever executed) with a
  clear error naming the file when it is missing, empty, truncated or not a dict.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text", "atomic_torch_save", "fsync_dir",
           "load_torch_file"]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Persist a directory's entries (renames into it); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(binary_file)`` atomically and durably (module docstring).

    Raises:
        Whatever ``write`` raises; the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            if _KILL_SPEC:
                _maybe_kill(path, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


_KILL_SPEC = os.environ.get("WSOL_KILL_DURING_WRITE", "")
_kill_counts: dict[str, int] = {}


def _maybe_kill(path: Path, f: IO[bytes]) -> None:
    """The fault-injection hook (module docstring): truncate the temporary file to half, then SIGKILL."""
    part, _, nth = _KILL_SPEC.partition(":")
    if part not in path.name:
        return
    _kill_counts[part] = _kill_counts.get(part, 0) + 1
    if _kill_counts[part] == int(nth or 1):
        f.flush()
        f.truncate(max(f.tell() // 2, 1))
        os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """``atomic_write`` of UTF-8 text."""
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """``atomic_write`` of ``obj`` as indented JSON (NaN written as JSON ``NaN``, which pandas and Python read)."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through ``atomic_write``."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def load_torch_file(path: str | os.PathLike[str], what: str = "file") -> dict[str, Any]:
    """Load a dict saved with ``torch.save``, safely (``weights_only=True``) and with errors that name the file.

    Args:
        path: the file.
        what: what the file should be, for messages ("checkpoint", "CAM shard", "feature cache").

    Returns:
        The loaded dict (on CPU).

    Raises:
        FileNotFoundError: no such file.
        ValueError: empty, truncated or foreign file, or not a dict.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty {what} (0 bytes; was its write interrupted?)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, unsupported global: say which file
        raise ValueError(f"{path}: unreadable {what} ({type(err).__name__}: {str(err).splitlines()[0][:200]})") \
            from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a {what} (a {type(obj).__name__}, expected a dict)")
    return obj
