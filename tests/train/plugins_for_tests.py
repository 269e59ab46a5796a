"""Callbacks registered for the training tests: they fail or interrupt a run mid-training."""

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
