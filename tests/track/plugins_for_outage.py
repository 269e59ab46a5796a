"""A callback registered for the outage tests: it stops and restarts the tracking server.

The test sets `SERVER` to the `tests.track.server.MlflowServer` the run writes to, and names
the module under the spec's `plugins:` (`tests.track.plugins_for_outage`, the module the test
imported, so the callback sees the same `SERVER`).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import keras

if TYPE_CHECKING:
    from tests.track.server import MlflowServer

SERVER: MlflowServer | None = None
"""The server the callback stops and starts; set by the test."""

EVENTS: list[tuple[str, float]] = []
"""(what happened, `time.monotonic()`): "stopped", "started", "train_end", "restarting",
"start failed: ..."."""

RESTARTER: list[threading.Thread] = []
"""The thread that starts the server again after training (`start_after_training`)."""


@keras.saving.register_keras_serializable(package="dlx_tests")
class ServerOutage(keras.callbacks.Callback):
    """Stop `SERVER` as epoch `stop_at` begins; start it again as epoch `start_at` begins.

    Args:
        stop_at: the epoch at whose beginning the server is stopped.
        start_at: the epoch at whose beginning it is started again; None: not during training.
        start_after_training: start it again only once training ended, from another thread,
            `delay_s` seconds after (the run then sends the held-back metrics at its end).
        delay_s: see `start_after_training`.
    """

    def __init__(self, stop_at=2, start_at=None, start_after_training=False, delay_s=1.0):
        super().__init__()
        self.stop_at = stop_at
        self.start_at = start_at
        self.start_after_training = start_after_training
        self.delay_s = delay_s

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_at:
            SERVER.stop()
            EVENTS.append(("stopped", time.monotonic()))
        if epoch == self.start_at:
            SERVER.start()
            EVENTS.append(("started", time.monotonic()))

    def on_train_end(self, logs=None):
        EVENTS.append(("train_end", time.monotonic()))
        if self.start_after_training and not SERVER.running:
            thread = threading.Thread(target=self._restart, name="restart-mlflow", daemon=True)
            RESTARTER.append(thread)
            thread.start()

    def _restart(self):
        time.sleep(self.delay_s)
        EVENTS.append(("restarting", time.monotonic()))
        try:
            SERVER.start()
        except Exception as exc:  # the test sees it in EVENTS (a thread's error is lost)
            EVENTS.append((f"start failed: {exc}", time.monotonic()))
            raise
        EVENTS.append(("started", time.monotonic()))

    def get_config(self):
        return {
            "stop_at": self.stop_at,
            "start_at": self.start_at,
            "start_after_training": self.start_after_training,
            "delay_s": self.delay_s,
        }
