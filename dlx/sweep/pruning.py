"""A sweep's pruning callback: each epoch's metric reported to the Optuna trial, and training
stopped when the study's pruner says the trial will not beat the others."""

from __future__ import annotations

from typing import Any

import keras


class PruneTrial(keras.callbacks.Callback):
    """Report `metric` at the end of each epoch to `trial`; stop the fit when it should prune.

    The run then ends as a finished run with its metrics up to that epoch; `pruned_after` says
    which epoch (from 0), `None` when the trial was not pruned. A metric an epoch does not log
    (a `test_` metric, known only at the end) is not reported, and never prunes.
    """

    def __init__(self, trial: Any, metric: str) -> None:
        super().__init__()
        self.trial, self.metric = trial, metric
        self.pruned_after: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.metric not in logs:
            return
        self.trial.report(float(logs[self.metric]), epoch)
        if self.trial.should_prune():
            self.pruned_after = epoch
            self.model.stop_training = True
