"""Training progress: a live bar per epoch on a terminal, one plain line per epoch in CI logs."""

from __future__ import annotations

import sys
import time
from typing import Any

import keras


def format_metrics(logs: dict[str, Any]) -> str:
    return "  ".join(f"{k}={float(v):.4f}" for k, v in sorted(logs.items()))


def progress(epochs: int, steps: int | None, stage: str = "", live: bool | None = None) -> Any:
    """The progress callback: a live bar on a terminal, else one plain line per epoch.

    Only the live bar listens to batches: a callback with a batch hook makes Keras fetch the
    logs after every step, which costs throughput that CI logs would not show anyway.
    """
    live = sys.stdout.isatty() if live is None else live
    return (LiveProgress if live else Progress)(epochs, steps, stage, live)


class Progress(keras.callbacks.Callback):
    """Reports each epoch; a rich progress bar with live metrics when stdout is a terminal.

    Args:
        epochs: how many epochs the stage runs.
        steps: batches per epoch, when known.
        stage: shown before the epoch counter (e.g. `fine-tune`).
        live: force the live bar on or off; default: whether stdout is a terminal.
    """

    def __init__(
        self, epochs: int, steps: int | None, stage: str = "", live: bool | None = None
    ) -> None:
        super().__init__()
        self.epochs = epochs
        self.steps = steps
        self.stage = f"{stage} " if stage else ""
        self.live = sys.stdout.isatty() if live is None else live
        self._bar: Any = None
        self._task: Any = None
        self._started = 0.0

    def on_train_begin(self, logs=None):
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[metrics]}"),
                transient=False,
            )
            self._bar.start()

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        if self._bar is not None:
            self._task = self._bar.add_task(
                f"{self.stage}epoch {epoch + 1}/{self.epochs}", total=self.steps, metrics=""
            )

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._started
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=self.steps or 1,
                total=self.steps or 1,
                metrics=format_metrics(logs or {}),
            )
        else:
            print(
                f"{self.stage}epoch {epoch + 1}/{self.epochs}  {seconds:.1f}s  "
                f"{format_metrics(logs or {})}",
                flush=True,
            )

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class LiveProgress(Progress):
    """`Progress` with the bar moving at every batch."""

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None:
            self._bar.update(self._task, completed=batch + 1, metrics=format_metrics(logs or {}))
