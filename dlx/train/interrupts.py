"""Stopping a fit that a signal asked to stop, even when the signal's exception was lost."""

from __future__ import annotations

from typing import Any

import keras

from dlx.proc import signals


class StopWhenAsked(keras.callbacks.Callback):
    """Raise the stop a signal asked for (`dlx.proc.signals.check`) before each batch.

    The signal's own exception comes out of `fit` between two steps; this callback is for the
    one that was raised inside a callback of the garbage collector, and lost there: the fit
    stops at the next batch instead of running on to its end. A batch's *begin* hook: Keras
    fetches the step's logs for no one (its end hooks make it wait for them after each step).
    """

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        signals.check()

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        signals.check()
