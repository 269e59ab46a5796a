"""A plugin module for file.yaml and docs/spec.md: registers a layer as `my_project>Scale`."""

import keras


@keras.saving.register_keras_serializable(package="my_project")
class Scale(keras.layers.Layer):
    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
