"""Training progress: a live bar per epoch on a terminal, one plain line per epoch in CI logs."""

from __future__ import annotations

import sys
import time
from typing import Any

import keras


def format_metrics(logs: dict[str, Any]) -> str:
    from dlx.track.callback import scalar_metrics

    return "  ".join(f"{k}={v:.4f}" for k, v in sorted(scalar_metrics(logs).items()))


def progress(
    epochs: int, steps: int | None, stage: str = "", first: int = 0, live: bool | None = None
) -> Any:
    """The progress callback: a live bar on a terminal, else one plain line per epoch.

    Only the live bar listens to batches: a callback with a batch hook makes Keras fetch the
    logs after every step, which costs throughput that CI logs would not show anyway.

    Args:
        epochs: how many epochs the stage runs.
        steps: batches per epoch, when known.
        stage: shown before the epoch counter (e.g. `fine-tune`).
        first: the epoch Keras numbers this stage's first one (its `initial_epoch`).
        live: force the live bar on or off; default: whether stdout is a terminal.
    """
    live = sys.stdout.isatty() if live is None else live
    return (LiveProgress if live else Progress)(epochs, steps, stage, first)


class Progress(keras.callbacks.Callback):
    """One plain line per epoch: its number, its time and its metrics."""

    def __init__(self, epochs: int, steps: int | None, stage: str = "", first: int = 0) -> None:
        super().__init__()
        self.epochs = epochs
        self.steps = steps
        self.stage = f"{stage} " if stage else ""
        self.first = first
        self._started = 0.0

    def describe(self, epoch: int) -> str:
        return f"{self.stage}epoch {epoch - self.first + 1}/{self.epochs}"

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._started
        print(f"{self.describe(epoch)}  {seconds:.1f}s  {format_metrics(logs or {})}", flush=True)


class LiveProgress(Progress):
    """A rich progress bar per epoch, moving at every batch, with live metrics."""

    def __init__(self, epochs: int, steps: int | None, stage: str = "", first: int = 0) -> None:
        super().__init__(epochs, steps, stage, first)
        self._bar: Any = None
        self._task: Any = None

    def on_train_begin(self, logs=None):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"),
        )
        self._bar.start()

    def on_epoch_begin(self, epoch, logs=None):
        self._task = self._bar.add_task(self.describe(epoch), total=self.steps, metrics="")

    def on_train_batch_end(self, batch, logs=None):
        self._bar.update(self._task, completed=batch + 1, metrics=format_metrics(logs or {}))

    def on_epoch_end(self, epoch, logs=None):
        done = self.steps or 1
        metrics = format_metrics(logs or {})
        self._bar.update(self._task, completed=done, total=done, metrics=metrics)

    def on_train_end(self, logs=None):
        self._bar.stop()
