"""Stopping a run whose loss is no longer a number (`train.on_nan: stop`, the default).

A loss that became NaN or infinite does not come back: the gradients of that step were not
finite either, and the weights they updated are now NaN too. Every later epoch would log
`loss=nan` and the run would still end FINISHED, with a model that predicts NaN. Keras's
`TerminateOnNaN` stops such a fit quietly; dlx stops it with an error that says where, so the
run ends FAILED with the metrics it logged up to and including the epoch that diverged.
"""

from __future__ import annotations

import math
from typing import Any

import keras

from dlx.errors import DlxError

HINT = (
    "Lower the learning rate (train.optimizer), or check the data for NaN or infinite values "
    "(train.on_nan: continue lets such a run go on)."
)


class Diverged(DlxError):
    """An epoch ended with a loss that is NaN or infinite (exit status 1)."""


def is_loss(name: str) -> bool:
    """Whether an epoch metric is a loss: `loss`, `val_loss`, `d_loss`, `output_1_loss`, ..."""
    return name == "loss" or name.endswith("_loss")


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise `Diverged` at the end of an epoch whose logs hold a loss that is not finite.

    It comes after the callbacks that record and show the epoch, so that the epoch that
    diverged is logged and printed before the run stops. Every worker of a job sees the same
    losses (they are reduced across the job) and stops at the same epoch.
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        from dlx.track.callback import scalar_metrics

        for name, value in sorted(scalar_metrics(logs or {}).items()):
            if is_loss(name) and not math.isfinite(value):
                raise Diverged(f"training diverged at epoch {epoch + 1}: {name} is {value}. {HINT}")
