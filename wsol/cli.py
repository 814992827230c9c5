"""How the command-line tools end: a user error is one message and exit code 2, not a traceback.

A bad path, a missing weights file or an invalid config value is the user's to fix: the tools print
``error: <message>`` (the message names the file or value and the reason) and exit with code 2. So does an
``OSError`` — a full disk, a read-only folder — named by the file and the reason, followed by what the failed write
kept (its notes, ``wsol.io.add_note``: "the previous checkpoint (step 4) is kept") and how to continue, on the same
line. The traceback is printed only on request — ``HYDRA_FULL_ERROR=1`` (Hydra's own switch) or ``WSOL_DEBUG=1``.
Ctrl-C ends with one line (exit code 130): during training where the last checkpoint is and the exact command that
resumes it; elsewhere what was kept (finished feature chunks, CAM shards) and how to continue. Anything else (a bug)
keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

__all__ = ["USER_ERRORS", "ConfigError", "cli_guard", "error_message", "resume_command", "failure_hint", "hydra_entry",
           "positive_int", "box_tolerance"]


class ConfigError(ValueError):
    """Several problems with a config, reported together."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("the config has {} problem{}:\n  - {}".format(
            len(self.problems), "" if len(self.problems) == 1 else "s", "\n  - ".join(self.problems)))


#: Exceptions that mean "the input is wrong", as raised with a message by wsol's checks.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, KeyError,
                                               NotADirectoryError, PermissionError, NotImplementedError)


def _verbose() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("WSOL_DEBUG") == "1"


def error_message(err: BaseException) -> str:
    """The one-line text of an error: its message (an ``OSError``: the file and the reason), then its notes."""
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    elif isinstance(err, OSError) and err.strerror:  # not "[Errno 28] ...": the file, then the reason
        text = err.strerror if err.filename is None else f"{err.filename}: {err.strerror}"
    else:
        text = str(err) or type(err).__name__
    return "; ".join([text, *getattr(err, "__notes__", [])])


def _program() -> str:
    """How this process was started, as a command to type again (``wsol-run``, ``python -m wsol.train``,
    ``torchrun --nproc_per_node=2 -m wsol.train``)."""
    program = os.path.basename(sys.argv[0]) or "wsol-run"
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    module = spec.name if spec is not None else program.replace("wsol-", "wsol.", 1)
    if "TORCHELASTIC_RUN_ID" in os.environ:  # a torchrun worker: only torchrun resumes its checkpoint (same world)
        nodes = int(os.environ.get("GROUP_WORLD_SIZE") or 1)
        per_node = os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("WORLD_SIZE") or "1"
        launcher = (f"torchrun --nproc_per_node={per_node}" if nodes == 1 else
                    f"torchrun --nnodes={nodes} --nproc_per_node={per_node} <the job's --rdzv options, on each node>")
        return f"{launcher} -m {module if module.startswith('wsol.') else 'wsol.run'}"
    if program.endswith(".py") or program == "__main__.py":
        return "python -m " + (module if spec is not None else "wsol.run")
    return program


def resume_command(run_dir: str, overrides: Sequence[str], key: str = "train.resume") -> str:
    """The command line that continues the run in ``run_dir``: this program, the same overrides and ``key=run_dir``
    (``train.resume`` for a training, ``hydra.run.dir`` for an evaluation with a CAM store)."""
    kept = [o for o in overrides if not o.lstrip("+").startswith(f"{key}=")]
    return " ".join([_program(), *map(shlex.quote, kept), shlex.quote(f"{key}={run_dir}")])


@contextmanager
def failure_hint(command: Callable[[], str | None]) -> Iterator[None]:
    """Add "resume with: <command>" to a Ctrl-C or an ``OSError`` (disk full ...) raised in the block, when
    ``command()`` gives one (e.g. only once a checkpoint exists); the guard prints it on the error's line."""
    from wsol.io import add_note

    try:
        yield
    except (KeyboardInterrupt, OSError) as err:
        hint = command()
        if hint:
            add_note(err, f"resume with: {hint}")
        raise


def _launch_rank() -> int:
    """This process's rank as the launcher says before the process group exists (torchrun, SLURM), else 0."""
    return int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0)


def cli_guard(fn: Callable[[], Any], *, after_failure: Callable[[], str | None] | None = None,
              run_dir: str | os.PathLike[str] | None = None) -> Any:
    """Run a tool's body; errors become one line (module docstring): ``error: ...`` + exit 2, Ctrl-C exit 130.

    Args:
        fn: the body.
        after_failure: returns an extra line to print when the body fails (e.g. "model.pt is saved; re-score with
            ..."), or None.
        run_dir: the job's run dir, locked for the body's life (``wsol.io.lock_run_dir``: a second job on it is
            refused, naming the first).
    """
    from wsol.data.images import ImageLoadError
    from wsol.engine.trainer import TrainingInterrupted
    from wsol.io import lock_run_dir

    mark_task_started()
    try:
        if run_dir is None:
            return fn()
        with lock_run_dir(Path(run_dir), rank=_launch_rank()):
            return fn()
    except TrainingInterrupted as err:
        if _verbose():
            raise
        where = ("no checkpoint yet" if err.checkpoint_step is None
                 else f"last checkpoint: step {err.checkpoint_step} ({err.checkpoint})")
        print("; ".join([f"\ninterrupted at step {err.step}", where, *getattr(err, "__notes__", [])]),
              file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt as err:  # elsewhere (feature pass, evaluation): what was kept, how to continue
        if _verbose():
            raise
        print("; ".join(["\ninterrupted", *getattr(err, "__notes__", [])]), file=sys.stderr)
        sys.exit(130)
    except (*USER_ERRORS, ImageLoadError, OSError) as err:  # an ImageLoadError names the file and the reason
        if _verbose():
            raise
        extra = after_failure() if after_failure else None
        print(f"error: {error_message(err)}", file=sys.stderr)
        if isinstance(err, ImageLoadError):
            print("(data.on_error=skip drops such images and lists them in metrics.json)", file=sys.stderr)
        if extra:
            print(extra, file=sys.stderr)
        print("(set HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr)
        sys.exit(2)
    except Exception:
        extra = after_failure() if after_failure else None
        if extra:
            print(extra, file=sys.stderr)
        raise


class _TaskState:
    started = False


def hydra_entry(hydra_main: Callable[[], Any]) -> Callable[[], Any]:
    """A console-script entry point around a ``@hydra.main`` function: a config that does not compose (unknown key,
    invalid choice — Hydra prints the message) exits with 2 like every other user error, not Hydra's 1.

    A ``name=`` override that is not one folder name is refused here, before Hydra creates the run dir it names
    (``name=../../x`` would be created outside ``outputs/``); ``wsol.config.check_values`` checks the composed value.
    """

    def entry() -> Any:
        problems = _name_problems(sys.argv[1:])
        if problems:
            print("error: " + "; ".join(problems), file=sys.stderr)
            sys.exit(2)
        try:
            return hydra_main()
        except SystemExit as err:
            if err.code == 1 and not _TaskState.started:
                sys.exit(2)
            raise

    return entry


def _name_problems(argv: Sequence[str]) -> list[str]:
    """What is wrong with the ``name=`` values of command-line overrides (a sweep's every value), by Hydra's grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from wsol.config import run_name_problem

    parser = OverridesParser.create()
    problems = []
    for arg in argv:
        if arg.startswith("-") or "=" not in arg or arg.lstrip("+").split("=", 1)[0] != "name":
            continue
        try:
            override = parser.parse_overrides([arg])[0]
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        except Exception:  # noqa: BLE001 - not valid override syntax: Hydra says so itself
            continue
        problems += [p for p in map(run_name_problem, values) if p]
    return problems


def mark_task_started() -> None:
    """Called first thing in a task function: failures from now on are the task's, not composition's."""
    _TaskState.started = True


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def box_tolerance(text: str) -> float:
    """argparse type: a finite number of pixels >= 0."""
    from wsol.data.metadata import check_box_tolerance

    try:
        return check_box_tolerance(float(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
