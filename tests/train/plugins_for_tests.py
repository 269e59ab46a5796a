"""Callbacks registered for the training tests: they fail or interrupt a run mid-training."""

import os
import signal
from pathlib import Path

import keras


@keras.saving.register_keras_serializable(package="dlx_tests")
class FailAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch=1, interrupt=False):
        super().__init__()
        self.epoch = epoch
        self.interrupt = interrupt

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            if self.interrupt:
                raise KeyboardInterrupt
            raise RuntimeError(f"boom at epoch {epoch}")

    def get_config(self):
        return {"epoch": self.epoch, "interrupt": self.interrupt}


@keras.saving.register_keras_serializable(package="dlx_tests")
class InterruptOnce(keras.callbacks.Callback):
    """Ctrl-C at the start of `epoch`, the first time only: `marker` (a file) remembers."""

    def __init__(self, epoch=1, marker="interrupted"):
        super().__init__()
        self.epoch = epoch
        self.marker = marker

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch and not Path(self.marker).exists():
            Path(self.marker).touch()
            raise KeyboardInterrupt

    def get_config(self):
        return {"epoch": self.epoch, "marker": self.marker}


@keras.saving.register_keras_serializable(package="dlx_tests")
class CountBatches(keras.callbacks.Callback):
    """Appends the number of each training batch it is told of to `path`, one a line."""

    def __init__(self, path="batches.txt"):
        super().__init__()
        self.path = path

    def on_train_batch_end(self, batch, logs=None):
        with open(self.path, "a") as file:
            file.write(f"{batch}\n")

    def get_config(self):
        return {"path": self.path}


@keras.saving.register_keras_serializable(package="dlx_tests")
class KillWhileSaving(keras.callbacks.Callback):
    """`kill -9` of its own process in the middle of writing the `save`-th checkpoint, the
    first time only (`marker`, a file, remembers): half its weights file written, then killed."""

    def __init__(self, save=1, marker="killed"):
        super().__init__()
        self.save = save
        self.marker = marker

    def on_train_begin(self, logs=None):
        if Path(self.marker).exists():
            return
        model, save_weights, saves = self.model, self.model.save_weights, []

        def cut_short(filepath, *args, **kwargs):
            save_weights(filepath, *args, **kwargs)
            saves.append(filepath)
            if len(saves) == self.save:
                size = os.path.getsize(filepath)
                with open(filepath, "r+b") as file:
                    file.truncate(size // 2)
                Path(self.marker).touch()
                os.kill(os.getpid(), signal.SIGKILL)

        object.__setattr__(model, "save_weights", cut_short)

    def get_config(self):
        return {"save": self.save, "marker": self.marker}
