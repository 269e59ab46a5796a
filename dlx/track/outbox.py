"""Epoch metrics (and figures made while training) kept on local disk until the store has them.

A run's metrics must survive two faults: the tracking server going away for a while (training
goes on; the metrics are sent when it is back, or at the end), and the training process
being killed (`kill -9`; `dlx train --resume` sends what was kept and not sent). Both are
solved by one journal: every epoch's metrics are appended to a JSON-lines file, flushed to
disk, before anything is sent; sending is then retried until the store has them.

The store, not the journal, says what was delivered (`Outbox.delivered_steps`), so an
answer lost on the way back never makes a metric be logged twice. Figures logged while training
(a GAN's sample grids) wait as files in the outbox's `artifacts/` folder, deleted once sent;
sending one again only overwrites it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from dlx.track.store import fail_fast

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from dlx.track.run import TrackedRun

logger = logging.getLogger(__name__)


class Outbox:
    """A run's epoch metrics and figures: kept on disk first, then sent when they can be.

    Args:
        run: the started run they belong to.
        folder: where they are kept: `metrics.jsonl`, the journal (created, or read when it
            exists: a resumed run's), and `artifacts/`, figures not sent yet.

    Example:

    ```python
    outbox = Outbox(run, Path("dlx-checkpoints/<run id>"))
    outbox.add({"loss": 0.3}, step=0)   # on disk now
    outbox.send()                       # in MLflow, unless the server is down: then later
    outbox.send(wait=True)              # at the end: MLflow's own retries, then an error
    ```
    """

    def __init__(self, run: TrackedRun, folder: Path):
        self.run = run
        self.journal = folder / "metrics.jsonl"
        self.artifacts = folder / "artifacts"
        self.pending: list[tuple[int, dict[str, float], int]] = []
        """(step, metrics, timestamp in ms) not known to be in the store yet."""
        self.outage_since: float | None = None

    def kept(self) -> dict[int, tuple[dict[str, float], int]]:
        """The journal's epochs: step to (metrics, timestamp); the last entry of a step wins."""
        entries: dict[int, tuple[dict[str, float], int]] = {}
        if not self.journal.exists():
            return entries
        for line in self.journal.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            entries[int(entry["step"])] = (entry["metrics"], int(entry["timestamp"]))
        return entries

    def add(self, metrics: Mapping[str, float], step: int) -> None:
        """Journal one epoch's metrics (on disk when this returns) and queue them to send."""
        timestamp = int(time.time() * 1000)
        line = json.dumps({"step": step, "timestamp": timestamp, "metrics": dict(metrics)})
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with self.journal.open("a", encoding="utf-8") as file:
            if file.tell() and not self._ends_a_line():  # its last line was cut by a kill
                line = "\n" + line
            file.write(line + "\n")
            file.flush()
            os.fsync(file.fileno())
        self.pending.append((step, dict(metrics), timestamp))

    def _ends_a_line(self) -> bool:
        with self.journal.open("rb") as file:
            file.seek(-1, os.SEEK_END)
            return file.read(1) == b"\n"

    def add_figure(self, figure: Figure, artifact_file: str) -> None:
        """Keep a Matplotlib figure as the PNG `artifact_file`, to send with the metrics."""
        path = self.artifacts / artifact_file
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)

    def requeue(self, steps: range | list[int]) -> None:
        """Queue the journal's metrics of `steps` that the store does not have (after a kill).

        Steps already pending (held back by an outage) are not queued a second time.
        """
        kept = self.kept()
        delivered = self.delivered_steps()
        queued = {step for step, _, _ in self.pending}
        for step in steps:
            if step in kept and step not in delivered and step not in queued:
                metrics, timestamp = kept[step]
                self.pending.append((step, metrics, timestamp))

    def delivered_steps(self) -> set[int]:
        """The steps the store has metrics at, for this run (asked of the store itself)."""
        return self.run.metric_steps()

    def send(self, *, wait: bool = False) -> bool:
        """Send what is pending, metrics oldest first, then figures; True when nothing is left.

        Args:
            wait: retry as MLflow does by default (minutes) and raise if the store stays
                unreachable; otherwise one quick try, and what fails stays pending.

        Raises:
            MlflowException: with `wait`, the store could not be reached.
        """
        while self.pending or (files := self._files()):
            try:
                with contextlib.nullcontext() if wait else fail_fast():
                    if self.pending:
                        step, metrics, timestamp = self.pending[0]
                        self.run.log_metrics(metrics, step=step, timestamp=timestamp)
                    else:
                        folder = files[0].parent.relative_to(self.artifacts).as_posix()
                        self.run.log_artifact(files[0], None if folder == "." else folder)
            except Exception as exc:
                if wait:
                    raise
                if self.outage_since is None:
                    self.outage_since = time.monotonic()
                    logger.warning(
                        "tracking store unreachable (%s); training goes on, metrics are kept "
                        "in %s and sent when it is back",
                        type(exc).__name__,
                        self.journal,
                    )
                return False
            if self.pending:
                self.pending.pop(0)
            else:
                files[0].unlink()
        if self.outage_since is not None:
            logger.warning(
                "tracking store back after %.0f s; kept metrics sent",
                time.monotonic() - self.outage_since,
            )
            self.outage_since = None
        return True

    def _files(self) -> list[Path]:
        return sorted(p for p in self.artifacts.rglob("*") if p.is_file())
