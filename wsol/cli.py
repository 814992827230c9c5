"""How the command-line tools end: a user error is one message and exit code 2, not a traceback.

A bad path, a missing weights file or an invalid config value is the user's to fix: the tools print
``error: <message>`` (the message names the file or value and the reason) and exit with code 2. The traceback is
printed only on request — ``HYDRA_FULL_ERROR=1`` (Hydra's own switch) or ``WSOL_DEBUG=1``. Ctrl-C during training
ends with one line saying where the last checkpoint is and the exact command that resumes it (exit code 130).
Anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any, Callable, Sequence

__all__ = ["USER_ERRORS", "ConfigError", "cli_guard", "resume_command", "hydra_entry", "positive_int", "box_tolerance"]


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


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    return str(err) or type(err).__name__


def resume_command(run_dir: str, overrides: Sequence[str]) -> str:
    """The command line that resumes the interrupted run in ``run_dir`` (the same overrides, ``train.resume``)."""
    program = os.path.basename(sys.argv[0]) or "wsol-run"
    if program.endswith(".py") or program == "__main__.py":
        program = "python -m " + (sys.modules["__main__"].__spec__.name if getattr(sys.modules["__main__"], "__spec__",
                                                                                       None) else "wsol.run")
    kept = [o for o in overrides if not o.startswith(("train.resume=", "+train.resume=", "++train.resume="))]
    return " ".join([program, *map(shlex.quote, kept), shlex.quote(f"train.resume={run_dir}")])


def cli_guard(fn: Callable[[], Any], *, after_failure: Callable[[], str | None] | None = None) -> Any:
    """Run a tool's body; user errors become ``error: ...`` + exit 2, Ctrl-C in training a one-line resume hint.

    Args:
        fn: the body.
        after_failure: returns an extra line to print when the body fails (e.g. "model.pt is saved; re-score with
            ..."), or None.
    """
    from wsol.data.images import ImageLoadError
    from wsol.engine.trainer import TrainingInterrupted

    mark_task_started()
    try:
        return fn()
    except TrainingInterrupted as err:
        if _verbose():
            raise
        where = ("no checkpoint yet" if err.checkpoint_step is None
                 else f"last checkpoint: step {err.checkpoint_step} ({err.checkpoint})")
        hint = getattr(err, "resume_hint", None)
        print(f"\ninterrupted at step {err.step}; {where}" + (f"; resume with: {hint}" if hint else ""),
              file=sys.stderr)
        sys.exit(130)
    except (*USER_ERRORS, ImageLoadError) as err:  # an ImageLoadError names the file and the reason: the data's fault
        if _verbose():
            raise
        extra = after_failure() if after_failure else None
        print(f"error: {_message(err)}", file=sys.stderr)
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
    invalid choice — Hydra prints the message) exits with 2 like every other user error, not Hydra's 1."""

    def entry() -> Any:
        try:
            return hydra_main()
        except SystemExit as err:
            if err.code == 1 and not _TaskState.started:
                sys.exit(2)
            raise

    return entry


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
