"""Durable file writes and safe loading, stated once and imported everywhere they are needed.

* ``atomic_write(path, write)``: temp sibling -> write -> flush + fsync -> rename -> fsync of the directory. A
  reader sees either the previous file or the whole new one; after a crash the renamed file cannot be an empty or
  partial one (delayed allocation). Used by checkpoints, ``metrics.json``, the CAM store and score-map exports.
* Fault injection for the kill tests (``tests/test_faults.py``): with ``WSOL_KILL_DURING_WRITE=<name part>:<n>`` in
  the environment, the process SIGKILLs itself halfway through the n-th atomic write of a file whose name contains
  ``<name part>`` — after half the bytes reached the temporary file, before the rename. Unset, it costs one lookup.
* ``load_torch_file(path, what)``: ``torch.load(weights_only=True)`` (no pickled code is ever executed) with a
  clear error naming the file when it is missing, empty, truncated or not a dict.
* ``safe_join(root, name)``: the one rule for "an id names a file inside its root" (image ids, mask paths,
  score-map names), checked lexically before the disk is touched: not empty, not absolute, no drive letter, no
  backslash, no control character (NUL included), no empty, ``.`` or ``..`` component. Symbolic links inside
  the root are not resolved, so a dataset tree whose folders link to shared storage keeps working: the rule
  is about what the metadata names, not about where the user put the bytes.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text", "atomic_torch_save", "fsync_dir",
           "load_torch_file", "UnsafePathError", "unsafe_path_reason", "unsafe_path_message", "safe_join"]


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


# A drive letter ("C:/x", "c:foo"): harmless on POSIX, but never part of a portable id.
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafePathError(ValueError):
    """A name that does not denote a file inside its root (absolute, climbing out, ...)."""


def unsafe_path_reason(name: object) -> str | None:
    """Why ``name`` cannot name a file inside a root, or ``None`` when it can (rules in the module docstring).

    The check is lexical: nothing is read from the disk, and symbolic links are not resolved.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    control = _CONTROL.search(name)
    if control:
        return f"contains the control character {control.group()!r}"
    if "\\" in name:
        return "contains a backslash (a Windows path separator; ids use '/')"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    parts = name.split("/")
    if ".." in parts:
        return "climbs out of its root ('..' component)"
    if "." in parts:
        return "has a '.' component"
    if "" in parts:
        return "has an empty path component ('//', or a trailing '/')"
    return None


def unsafe_path_message(name: object, *, what: str = "image id", root: object = "its root") -> str | None:
    """The sentence refusing ``name`` ("image id '../a' is not a relative path inside ROOT: it climbs ..."),
    or ``None`` when ``name`` is safe. Readers put it in their own error with file and line."""
    reason = unsafe_path_reason(name)
    if reason is None:
        return None
    return f"{what} {name!r} is not a relative path inside {root}: it {reason}"


def safe_join(root: str | os.PathLike[str], name: str, *, what: str = "image id", where: str = "") -> Path:
    """``root / name`` for a ``name`` that stays inside ``root`` (rules in the module docstring).

    Args:
        root: the folder the name is relative to (may itself be absolute or hold symbolic links).
        name: a ``/``-separated relative path, e.g. an image id ``val/ILSVRC2012_val_00000001.JPEG``.
        what: what ``name`` is, for the message ("image id", "mask path", "score map").
        where: where ``name`` came from (``file`` or ``file:line``), for the message.

    Returns:
        ``Path(root).joinpath(*name.split("/"))``.

    Raises:
        UnsafePathError: (a ``ValueError``) naming ``name``, the reason and ``where``.
    """
    message = unsafe_path_message(name, what=what, root=root)
    if message is not None:
        raise UnsafePathError(f"{where}: {message}" if where else message)
    return Path(root).joinpath(*name.split("/"))
