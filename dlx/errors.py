"""Errors that dlx reports to users, and the exit statuses they map to.

Library code raises `DlxError` (or `SpecError` for anything that can be pinned to a place in a
spec); only `dlx.cli` prints them and turns them into exit statuses.
"""

from __future__ import annotations

import difflib
import enum
import errno
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ExitStatus(enum.IntEnum):
    """Exit statuses of the `dlx` command (docs/spec.md section 8)."""

    OK = 0
    FAILURE = 1
    INVALID = 2
    EXPECTATION_NOT_MET = 3
    INTERRUPTED = 130
    TERMINATED = 143


@dataclass(frozen=True)
class Location:
    """A span of text in a spec file (or in a `--set` argument); lines and columns are 1-based."""

    path: str
    line: int
    column: int
    end_column: int | None = None
    source_line: str | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One error found in a spec: where, which key, and what is wrong."""

    message: str
    key: str = ""
    location: Location | None = None

    def render(self) -> str:
        """Render like a compiler: `path:line:col: error: key: message`, and the line, marked.

        However large the value at fault, what is printed stays small: the message and the
        source line are cut to `MAX_MESSAGE` and `MAX_SOURCE` characters, marked with `…`.
        """
        where = f"{self.location}: " if self.location else ""
        key = shorten(f"{self.key}: ", MAX_SOURCE) if self.key else ""
        text = f"{where}error: {key}{shorten(self.message, MAX_MESSAGE)}"
        loc = self.location
        if loc and loc.source_line is not None:
            line = loc.source_line
            # Past MAX_SOURCE characters, show the window of the line around the column.
            start = max(0, loc.column - 1 - MAX_SOURCE // 2) if len(line) > MAX_SOURCE else 0
            lead = "…" if start else ""
            shown = lead + line[start : start + MAX_SOURCE]
            tail = "…" if start + MAX_SOURCE < len(line) else ""
            column = loc.column - start + len(lead)
            width = max(1, (loc.end_column or loc.column + 1) - loc.column)
            width = max(1, min(width, len(shown) + 1 - column))
            text += (
                f"\n {loc.line:>4} | {shown}{tail}\n {'':>4} | {' ' * (column - 1)}{'^' * width}"
            )
        return text


MAX_MESSAGE = 1000
"""The longest error message printed; longer ones are cut (a value can be megabytes)."""

MAX_SOURCE = 120
"""The most characters of a spec's line printed under an error."""

MAX_VALUE = 80
"""The most characters of a value `received` shows."""


def shorten(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters, `…` and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def received(value: object) -> str:
    """A value as an error shows it after `Received:`: its repr, cut to `MAX_VALUE` characters."""
    return shorten(repr(value), MAX_VALUE)


class DlxError(Exception):
    """An error dlx reports to the user without a traceback."""

    exit_status: ExitStatus = ExitStatus.FAILURE

    def render(self) -> str:
        return f"error: {self}"


@dataclass
class SpecError(DlxError):
    """One or more problems with a spec (exit status 2), each at its file:line:col."""

    problems: list[Problem] = field(default_factory=list)
    exit_status: ExitStatus = ExitStatus.INVALID

    def __post_init__(self) -> None:
        self.problems = sorted(self.problems, key=_position)
        super().__init__(self.render())

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        return "\n".join(problem.render() for problem in self.problems)


def _position(problem: Problem) -> tuple[int, int]:
    """Problems are reported in the order they appear in the file; those without a place first."""
    where = problem.location
    return (where.line, where.column) if where and where.path != "--set" else (0, 0)


class UsageError(DlxError):
    """A bad command line (exit status 2)."""

    exit_status = ExitStatus.INVALID


class ExpectationError(DlxError):
    """A finished run that fell short of what was asked of it (exit status 3): an `--expect`
    gate it did not meet, or final metrics that did not reproduce. The run is recorded all the
    same; `result` is what the call would have returned, for the command to show.

    Args:
        message: the lines to print, one per failure.
        result: the call's result (a `TrainResult`, a `Reproduction`).
        failures: what fell short: the gates not met, or the metrics that differ.
    """

    exit_status = ExitStatus.EXPECTATION_NOT_MET

    def __init__(self, message: str, *, result: Any, failures: list[str]) -> None:
        super().__init__(message)
        self.result = result
        self.failures = failures

    def render(self) -> str:
        return str(self)


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal: Ctrl-C (exit status 130), or SIGTERM (`Terminated`).

    Still a `KeyboardInterrupt`, so whatever stops on Ctrl-C stops on it alike, and the run is
    recorded KILLED. The message says what stopped, and, once a run was open, what became of it.
    """

    exit_status: ExitStatus = ExitStatus.INTERRUPTED
    cause: str = "interrupted"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.cause)


class Terminated(Interrupted):
    """SIGTERM (`timeout`, `docker stop`, Kubernetes), turned into an exception by the
    handler `dlx.proc.signals.stops_raised` installs: handled like Ctrl-C, with exit status 143
    (128 + 15)."""

    exit_status = ExitStatus.TERMINATED
    cause = "terminated (SIGTERM)"


_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_WORDS = ("No space left on device", "database or disk is full", "Disk quota exceeded")


def no_space_left(exc: BaseException) -> str | None:
    """Whether `exc`, or an exception it comes from, is a disk that is full (ENOSPC): what was
    being written when it is known (a path), `""` when not; `None` for any other error.

    The one place that recognises a full disk, however it surfaces: an `OSError` of Python or
    h5py, SQLite's "database or disk is full" through SQLAlchemy and MLflow.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE_ERRNOS:
            return str(current.filename or "")
        if any(words in str(current) for words in _NO_SPACE_WORDS):
            return ""
        current = current.__cause__ or current.__context__
    return None


def no_space_message(where: str, then: str) -> str:
    """`no space left on device (PATH): free space there, then THEN`."""
    return f"no space left on device{f' ({where})' if where else ''}: free space there, then {then}"


def did_you_mean(word: str, choices: Iterable[str], normalize=None) -> str:
    """Return ` (did you mean 'x'?)` naming the closest choices, or an empty string."""
    choices = list(choices)
    if normalize is None:
        matches = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    else:
        by_key: dict[str, str] = {}
        for choice in choices:
            by_key.setdefault(normalize(choice), choice)
        keys = difflib.get_close_matches(normalize(word), list(by_key), n=3, cutoff=0.6)
        matches = [by_key[key] for key in keys]
    if not matches:
        return ""
    return " (did you mean " + " or ".join(f"'{m}'" for m in matches) + "?)"


def relative_path(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
