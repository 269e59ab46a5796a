"""A Keras callback that records each epoch's metrics in the run, one request per epoch."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

if TYPE_CHECKING:
    from dlx.track.outbox import Outbox
    from dlx.track.run import TrackedRun


class MlflowMetricsCallback(keras.callbacks.Callback):
    """Log the logs of every epoch as MLflow metrics at `step=epoch`, and keep them.

    One `log_batch` request per epoch, nothing per batch, so tracking costs nothing noticeable
    even on a remote server. Epochs are numbered as Keras numbers them (from 0, and onwards
    from `initial_epoch` in a second `fit`, so a fine-tuning stage continues the curves). A
    metric with several values (e.g. `f1_score` with `average=None`) is logged as
    `f1_score.0`, `f1_score.1`, ...

    With an `outbox`, each epoch's metrics are journaled on disk first, then the `checkpoint`
    callback (a `keras.callbacks.BackupAndRestore`) saves the epoch, and only then are the
    metrics sent: a run killed at any point and resumed from its checkpoint neither loses an
    epoch's metrics nor logs one twice, and a tracking server that is down only delays them.

    Args:
        run: the started run to log to.
        outbox: where epochs' metrics wait to be sent (default: sent at once, directly).
        checkpoint: the callback that saves each epoch; this callback calls it, in order.

    Attributes:
        history: one dict per epoch, `{"epoch": 0, "loss": ..., "val_loss": ...}`, across every
            `fit` this callback was passed to.

    Example:

    ```python
    callback = MlflowMetricsCallback(run)
    model.fit(x, y, validation_split=0.2, epochs=5, callbacks=[callback])
    run.log_text(callback.history_csv(), "history.csv")
    ```
    """

    def __init__(
        self,
        run: TrackedRun,
        outbox: Outbox | None = None,
        checkpoint: keras.callbacks.Callback | None = None,
    ):
        super().__init__()
        self.run = run
        self.outbox = outbox
        self.checkpoint = checkpoint
        self.history: list[dict[str, float]] = []

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        if self.checkpoint is not None:
            self.checkpoint.set_model(model)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.checkpoint is not None:
            self.checkpoint.on_train_begin(logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = scalar_metrics(logs or {})
        self.history.append({"epoch": epoch, **metrics})
        if self.outbox is None:
            self.run.log_metrics(metrics, step=epoch)
            return
        self.outbox.add(metrics, step=epoch)
        if self.checkpoint is not None:
            self.checkpoint.on_epoch_end(epoch, logs)
        self.outbox.send()

    def columns(self) -> dict[str, list[float]]:
        """The history by column, `{"epoch": [0, 1, ...], "loss": [...], ...}`.

        This is what `learning_curves_figure` takes. A metric missing from an epoch (one
        that only a later `fit` reports) is NaN there.
        """
        names = list(dict.fromkeys(name for row in self.history for name in row))
        return {name: [row.get(name, float("nan")) for row in self.history] for name in names}

    def history_csv(self) -> str:
        """The history as CSV text: a header, then one line per epoch (like `CSVLogger`)."""
        columns = self.columns()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(zip(*columns.values(), strict=True))
        return buffer.getvalue()


def scalar_metrics(logs: Mapping[str, Any]) -> dict[str, float]:
    """Metrics as MLflow takes them: one float per name.

    A metric with several values (e.g. `f1_score` with `average=None`) becomes one metric per
    value, `f1_score.0`, `f1_score.1`, ...

    Args:
        logs: metric names to values: numbers, NumPy or TensorFlow scalars or arrays, as
            Keras's `logs` and `Model.evaluate(..., return_dict=True)` give them.

    Returns:
        Metric names to floats.

    Example:

    >>> scalar_metrics({"loss": np.float32(0.5), "f1_score": np.array([0.25, 0.75])})
    {'loss': 0.5, 'f1_score.0': 0.25, 'f1_score.1': 0.75}
    """
    scalars: dict[str, float] = {}
    for name, value in logs.items():
        array = np.asarray(value, dtype=np.float64)
        if array.size == 1:
            scalars[name] = float(array.reshape(()))
        else:
            scalars.update({f"{name}.{i}": float(v) for i, v in enumerate(array.ravel())})
    return scalars
