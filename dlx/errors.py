"""Errors that dlx reports to users, and the exit statuses they map to.

Library code raises `DlxError` (or `SpecError` for anything that can be pinned to a place in a
spec); only `dlx.cli` prints them and turns them into exit statuses.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


class ExitStatus(enum.IntEnum):
    """Exit statuses of the `dlx` command (docs/spec.md section 8)."""

    OK = 0
    FAILURE = 1
    INVALID = 2
    EXPECTATION_NOT_MET = 3
    INTERRUPTED = 130


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
        """Render like a compiler: `path:line:col: error: key: message`."""
        where = f"{self.location}: " if self.location else ""
        key = f"{self.key}: " if self.key else ""
        text = f"{where}error: {key}{self.message}"
        loc = self.location
        if loc and loc.source_line is not None:
            number = str(loc.line)
            width = max(1, (loc.end_column or loc.column + 1) - loc.column)
            text += (
                f"\n {number:>4} | {loc.source_line}"
                f"\n {'':>4} | {' ' * (loc.column - 1)}{'^' * width}"
            )
        return text


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
    """An `--expect` gate that a finished run did not meet (exit status 3)."""

    exit_status = ExitStatus.EXPECTATION_NOT_MET


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
