"""Durable file writes and safe loading, stated once and imported everywhere they are needed.

* ``atomic_write(path, write)``: temp sibling -> write -> flush + fsync -> rename -> fsync of the directory. A
  reader sees either the previous file or the whole new one; after a crash the renamed file cannot be an empty or
  partial one (delayed allocation). Used by checkpoints, ``metrics.json``, the CAM store and score-map exports.
* Fault injection for the kill tests (``tests/test_faults.py``): with ``WSOL_KILL_DURING_WRITE=<name part>:<n>`` in
  the environment, the process SIGKILLs itself halfway through the n-th atomic write of a file whose name contains
  ``<name part>`` — after half the bytes reached the temporary file, before the rename. Unset, it costs one lookup.
* ``load_torch_file(path, what)``: ``torch.load(weights_only=True)`` (no pickled code is ever executed) with a
  clear error naming the file when it is missing, empty, truncated or not a dict.
* ``lock_run_dir(run_dir)``: the one-job-per-run-dir rule (below).
* ``add_note(err, note)``: what survived a failed write, said next to the error (PEP 678 notes); the tools' guard
  (``wsol.cli.cli_guard``) prints the error and its notes as one line.
* ``safe_join(root, name)``: the one rule for "an id names a file inside its root" (image ids, mask paths,
  score-map names), checked lexically before the disk is touched: not empty, not absolute, no drive letter, no
  backslash, no control character (NUL included), no empty, ``.`` or ``..`` component. Symbolic links inside
  the root are not resolved, so a dataset tree whose folders link to shared storage keeps working: the rule
  is about what the metadata names, not about where the user put the bytes.

A failed write (disk full, read-only folder) raises an ``OSError`` naming the file it was writing (the target, not
the temporary sibling) and the reason.

Run-dir lock: a job holds an exclusive ``flock`` on ``<run dir>/.wsol.lock`` for its whole life, so two jobs cannot
write one run dir (checkpoints, ``train_log.csv``, ``metrics.json`` of one, overrides of the other); the kernel
releases it when the process ends, however it ends (exit, exception, SIGKILL). The file holds the holder's pid, host,
start time and command, which a refused job names. Hydra writes ``.hydra/{config,hydra,overrides}.yaml`` (what
``wsol-report`` groups runs by) before any wsol code runs, so every job, even one refused at once, has replaced them:
the lock file also keeps the ``.hydra`` files that describe the run dir's results — those of the last job that wrote
a file there (through ``atomic_write``) — and a job that ends without writing one (refused by the lock, by a finished
run of other settings, by a config error; or "already complete") puts them back. Under ``torchrun`` rank 0 holds the
lock for the job (the other ranks write only their CAM shards, in the same job); a refused rank 0 ends, and torchrun
ends the job's other ranks with it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text", "atomic_torch_save", "fsync_dir",
           "load_torch_file", "add_note", "check_writable_dir", "RunDirInUseError", "lock_run_dir", "UnsafePathError",
           "unsafe_path_reason", "unsafe_path_message", "safe_join"]

log = logging.getLogger(__name__)


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
        OSError: the write failed (disk full, read-only folder ...), naming ``path`` and the reason.
        Whatever else ``write`` raises. Either way the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if _held:
        _note_write(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            if _KILL_SPEC:
                _maybe_kill(path, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # the file the user knows is the target, not the temporary sibling
        _discard(tmp)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(path.parent)


def _discard(path: Path) -> None:
    """Remove a temporary file if it is there (on a read-only file system even a missing one is EROFS)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


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


def add_note(err: BaseException, note: str) -> BaseException:
    """Attach ``note`` to ``err`` (PEP 678 ``__notes__``, also on Python 3.10), e.g. what a failed write kept.

    ``wsol.cli.cli_guard`` prints an error and its notes as one line; a traceback shows them below the error.
    """
    err.__notes__ = [*getattr(err, "__notes__", []), note]  # type: ignore[attr-defined]
    return err


def check_writable_dir(folder: Path, what: str) -> None:
    """Create ``folder`` and write a probe file in it, so that a read-only, full or missing location is an error
    before the work whose result goes there, not after it.

    Raises:
        OSError: naming ``what``, the folder and the reason.
    """
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"\0")  # one byte: a full disk refuses it, an empty file it may not
        probe.unlink()
    except OSError as err:
        _discard(probe)
        raise OSError(err.errno, f"{what}: cannot write in {folder} ({err.strerror or err})") from None


# ----------------------------------------------------------------------------- the run-dir lock
LOCK_FILE = ".wsol.lock"
#: The files Hydra writes into a run dir before the task runs (``hydra.output_subdir``).
_HYDRA_FILES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml")
#: Run dirs this process holds (absolute path -> claim): ``atomic_write`` into one marks the job's work as started.
_held: dict[str, "_Claim"] = {}


class RunDirInUseError(OSError):
    """Another job holds the run dir's lock."""


class _Claim:
    """A held run-dir lock: the lock file's record (module docstring), rewritten in place (a replaced file would
    leave the lock on the old inode)."""

    def __init__(self, fd: int, run_dir: Path, previous: dict[str, Any]) -> None:
        self.fd, self.run_dir = fd, run_dir
        # the .hydra files of the results already in the run dir (None: a new dir, or one made before the lock)
        self.dir_files = previous.get("files") if isinstance(previous.get("files"), dict) else None
        self.own = {name: (run_dir / name).read_text() for name in _HYDRA_FILES if (run_dir / name).is_file()}
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
        self.wrote = False
        self._record({**self.holder, "hydra": self.own, "files": self.dir_files})

    def _record(self, record: dict[str, Any]) -> None:
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, json.dumps(record).encode(), 0)
        except OSError as err:
            raise OSError(err.errno, f"the run dir: cannot write in {self.run_dir} ({err.strerror or err})") from None

    def note_write(self) -> None:
        """The job wrote into the run dir: from now on its ``.hydra`` files describe the results."""
        if not self.wrote:
            self.wrote = True
            self._record({**self.holder, "hydra": self.own, "files": self.own})

    def release(self) -> None:
        """Record (without a holder) which ``.hydra`` files describe the results; put them back if this job wrote
        nothing."""
        if not self.wrote and self.dir_files is not None:
            _restore_hydra_files(self.run_dir, self.dir_files)
        try:
            self._record({"files": self.own if self.wrote or self.dir_files is None else self.dir_files})
        except OSError:
            pass


@contextmanager
def lock_run_dir(run_dir: str | os.PathLike[str], *, rank: int = 0) -> Iterator[None]:
    """Hold the run dir's lock while the block runs (module docstring); rank > 0 does not lock.

    Raises:
        RunDirInUseError: another live process holds it (naming its pid, host, start time and command); the run
            dir's ``.hydra`` files are the holder's again.
        OSError: the run dir is not writable (read-only, full), naming it and the reason.
    """
    if rank != 0:
        yield
        return
    import fcntl

    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    check_writable_dir(run_dir, "the run dir")  # a read-only or full run dir is found now, not at the first checkpoint
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OSError(err.errno, f"the run dir: cannot write in {run_dir} ({err.strerror or err})") from None
    key = os.path.abspath(run_dir)
    try:
        locked = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_record(fd)
            if isinstance(holder.get("hydra"), dict):  # Hydra just replaced the holder's files with ours
                _restore_hydra_files(run_dir, holder["hydra"])
            who = (f"pid {holder['pid']} on {holder.get('host', '?')}, started {holder.get('started', '?')}: "
                   f"{holder.get('command', '?')}") if "pid" in holder else "a process that has not yet said who it is"
            raise RunDirInUseError(errno.EBUSY, f"the run dir {run_dir} is in use by another job ({who}); wait for it "
                                   "to end, or choose another run name (name=...) or run dir (hydra.run.dir=...)") \
                from None
        except OSError as err:  # a file system without locks: run, but say that nothing guards the dir
            log.warning("%s: cannot lock (%s); concurrent jobs in this run dir are not detected", path,
                        err.strerror or err)
            locked = False
        if not locked:
            yield
            return
        claim = _held[key] = _Claim(fd, run_dir, _read_record(fd))
        try:
            yield
        finally:
            del _held[key]  # before release: putting files back is not the job's work
            claim.release()
    finally:
        os.close(fd)  # releases the lock


def _note_write(path: Path) -> None:
    """``atomic_write`` of ``path``: the job holding the run dir that contains it has started writing results."""
    target = os.path.abspath(path)
    for run_dir, claim in _held.items():
        if target.startswith(run_dir + os.sep):
            claim.note_write()


def _read_record(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 1 << 22, 0)
        record = json.loads(data) if data else {}
    except (OSError, ValueError):  # being written this very moment, or not ours
        return {}
    return record if isinstance(record, dict) else {}


def _restore_hydra_files(run_dir: Path, files: dict[str, Any]) -> None:
    """Put back ``.hydra`` files as recorded (known names only: the record is not trusted with other paths)."""
    for name in _HYDRA_FILES:
        if isinstance(files.get(name), str):
            try:
                atomic_write_text(run_dir / name, files[name])
            except OSError:
                pass


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
