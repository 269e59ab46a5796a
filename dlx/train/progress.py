"""Training progress as events: the runner reports, its caller renders (the CLI prints).

`ProgressListener` is what a caller gives `dlx.train.runner.train` to follow a run: a stage's
epochs beginning and ending, with their metrics, and its batches when the listener asks for
them. Nothing here prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import keras


@dataclass(frozen=True)
class EpochProgress:
    """Where an epoch is: its stage and its number within the stage."""

    stage: str
    """The stage's label (`fine-tune`); empty for a run's first (or only) stage."""
    number: int
    """The epoch within its stage, from 1."""
    epochs: int
    """How many epochs the stage runs."""
    steps: int | None
    """Batches per epoch, when known."""

    def describe(self) -> str:
        """`epoch 3/20`, `fine-tune epoch 1/5`."""
        return f"{self.stage + ' ' if self.stage else ''}epoch {self.number}/{self.epochs}"


class ProgressListener(Protocol):
    """Follows a training: called by the runner, from the training thread."""

    batches: bool
    """Whether `batch_ended` is wanted (a batch hook makes Keras fetch the logs after every
    step, which costs throughput that a line per epoch would not show anyway)."""

    def run_began(self, lines: list[str]) -> None:
        """What the run trains with, said once before it starts (`backend: jax`)."""
        ...

    def training_began(self) -> None: ...

    def epoch_began(self, epoch: EpochProgress) -> None: ...

    def batch_ended(self, epoch: EpochProgress, batch: int, metrics: dict[str, float]) -> None: ...

    def epoch_ended(
        self, epoch: EpochProgress, seconds: float, metrics: dict[str, float]
    ) -> None: ...

    def training_ended(self) -> None: ...


def progress_callback(
    listener: ProgressListener, epochs: int, steps: int | None, stage: str = "", first: int = 0
) -> keras.callbacks.Callback:
    """The Keras callback that reports one stage's progress to `listener`.

    Args:
        listener: who follows the training.
        epochs: how many epochs the stage runs.
        steps: batches per epoch, when known.
        stage: the stage's label (e.g. `fine-tune`).
        first: the epoch Keras numbers this stage's first one (its `initial_epoch`).
    """
    kind = _BatchProgress if listener.batches else _EpochProgress
    return kind(listener, epochs, steps, stage, first)


def scalar_logs(logs: dict[str, Any] | None) -> dict[str, float]:
    from dlx.track.callback import scalar_metrics

    return scalar_metrics(logs or {})


class _EpochProgress(keras.callbacks.Callback):
    def __init__(
        self, listener: ProgressListener, epochs: int, steps: int | None, stage: str, first: int
    ) -> None:
        super().__init__()
        self.listener = listener
        self.epochs = epochs
        self.steps = steps
        self.stage = stage
        self.first = first
        self._epoch = EpochProgress(stage, 1, epochs, steps)
        self._started = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.listener.training_began()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = EpochProgress(self.stage, epoch - self.first + 1, self.epochs, self.steps)
        self._started = time.perf_counter()
        self.listener.epoch_began(self._epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.perf_counter() - self._started
        self.listener.epoch_ended(self._epoch, seconds, scalar_logs(logs))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.listener.training_ended()


class _BatchProgress(_EpochProgress):
    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.listener.batch_ended(self._epoch, batch, scalar_logs(logs))
