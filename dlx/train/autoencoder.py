"""The autoencoder kind: trained input -> input, scored by reconstruction error.

An autoencoder's encoder and decoder (docs/spec.md section 4.5) are trained to give back their
input. With `model.noise_stddev`, the training inputs are corrupted with Gaussian noise while
the targets stay clean (a denoising autoencoder); validation and test data are not corrupted.

After training, the run holds a picture of inputs above their reconstructions (for images), the
distribution of per-example reconstruction errors with its 95th percentile (a threshold for
anomaly detection, which `dlx score` compares new data against), and the encoder as a second
logged model, `encoder`, for embeddings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlx.build.model import BuiltModel, functional, keras_name, model_builder
from dlx.data import Splits
from dlx.train.tasks import Task, register_task

RECONSTRUCTIONS_SHOWN = 10
"""Examples drawn in `reconstructions.png`."""

ERROR_PERCENTILE = 95
ERROR_METRIC = f"reconstruction_error_p{ERROR_PERCENTILE}"
"""The run metric holding the anomaly threshold: the 95th percentile of held-out errors."""


@register_task("autoencoder")
class AutoencoderTask(Task):
    """Trains `encoder -> decoder` to reconstruct its (optionally noisy) input."""

    logged_models = ("model", "encoder")
    embedding_model = "encoder"
    score_metric = ERROR_METRIC

    def reference_targets(self, x: Any, y: Any) -> Any:
        return x

    def score(self, model: Any, inputs: Any, batch_size: int) -> np.ndarray:
        """Each example's reconstruction error (`reconstruction_errors`)."""
        return reconstruction_errors(model, inputs, batch_size)

    def build_models(self) -> BuiltModel:
        """The encoder, the decoder on the encoder's output, and the two joined."""
        import keras

        model = self.loaded.spec.model
        # An autoencoder needs both (the spec's `Model` checks it).
        assert model.encoder is not None and model.decoder is not None
        builder = model_builder(self.loaded)
        name = keras_name(self.loaded.name)
        encoder = functional(builder, model.encoder, ("model", "encoder"), f"{name}_encoder")
        decoder_input = keras.Input(shape=encoder.output.shape[1:], name="code")
        out, _ = builder.connect(model.decoder, ("model", "decoder"), scope_input=decoder_input)
        decoder = keras.Model(decoder_input, out, name=f"{name}_decoder")
        inputs = encoder.inputs[0] if len(encoder.inputs) == 1 else encoder.inputs
        autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name=name)
        return BuiltModel(autoencoder, encoder=encoder, decoder=decoder)

    def build(self, jit_compile: Any) -> Any:
        model, args = self.build_with_compile_args()
        model.compile(
            optimizer=args.optimizer,
            loss=args.loss if args.loss is not None else "mse",
            metrics=args.metrics,
            jit_compile=jit_compile,
        )
        return model

    def datasets(self, splits: Splits, first: int = 0, end: int = 1) -> tuple[Any, Any, Any]:
        """`(x, x)` pairs; training inputs get the spec's noise, targets never do."""
        stddev = self.loaded.spec.model.noise_stddev
        train = splits.epochs(first, end).map(_to_itself)
        validation = None if splits.validation is None else splits.validation.map(_to_itself)
        test = None if splits.test is None else splits.test.map(_to_itself)
        if stddev and splits.in_memory:  # batches of arrays: the noise drawn by NumPy
            seed = self.loaded.spec.seed
            return (
                train.map(lambda n, x, y: (_add_noise_numpy(x, stddev, seed, n), y), numbered=True),
                validation,
                test,
            )
        if stddev:
            import tensorflow as tf

            # Each batch's noise is drawn from (seed, the batch's number since the run began),
            # so it differs every batch and epoch, and a resumed run draws the same noise.
            numbers = tf.data.Dataset.counter(first * splits.steps_per_epoch)
            seed = self.loaded.spec.seed
            train = tf.data.Dataset.zip(train, numbers).map(
                lambda pair, number: (_add_noise(pair[0], stddev, seed, number), pair[1])
            )
        return train, validation, test

    def log_artifacts(self, run: Any, model: Any, splits: Splits) -> None:
        """Reconstructions, the error distribution and its p95, and the encoder as a model."""
        from dlx.track.plots import histogram_figure, image_rows_figure, is_image_shape

        spec = self.loaded.spec
        name, data = _held_out(splits)
        errors = reconstruction_errors(model, data, spec.train.batch_size)
        if len(errors):
            threshold = float(np.percentile(errors, ERROR_PERCENTILE))
            run.log_metrics(
                {"reconstruction_error_mean": float(errors.mean()), ERROR_METRIC: threshold}
            )
            figure = histogram_figure(
                errors,
                xlabel="reconstruction error (mean squared error per example)",
                title=f"reconstruction errors on the {name} data ({len(errors)} examples)",
                lines={f"p{ERROR_PERCENTILE}": threshold},
            )
            run.log_figure(figure, "reconstruction_errors.png")

        arrays = splits.test_arrays or splits.validation_arrays or splits.train_arrays
        if arrays is not None and isinstance(arrays[0], np.ndarray):
            x = arrays[0][:RECONSTRUCTIONS_SHOWN]
            if is_image_shape(x.shape[1:]):
                rows = {"input": x}
                if spec.model.noise_stddev:
                    noise = np.random.default_rng(spec.seed).normal(size=x.shape)
                    rows["noisy input"] = x = (x + spec.model.noise_stddev * noise).astype(x.dtype)
                rows["reconstruction"] = model.predict(x, verbose=0)
                low, high = float(arrays[0].min()), float(arrays[0].max())
                run.log_figure(image_rows_figure(rows, (low, high)), "reconstructions.png")

        sample = self.sample_inputs(splits)
        if spec.tracking.log_model and sample is not None and self.built is not None:
            run.log_keras_model(self.built.encoder, sample, name="encoder")


def reconstruction_errors(model: Any, data: Any, batch_size: int = 256) -> np.ndarray:
    """The mean squared error between each example and the model's reconstruction of it.

    This is the anomaly score of an autoencoder: large for inputs unlike its training data.

    Args:
        model: an autoencoder (inputs -> reconstructions of the same shape).
        data: inputs as an array, or a batched `tf.data.Dataset` of `x` or `(x, y)`.
        batch_size: the batch size for array inputs.

    Returns:
        One float32 error per example, in the data's order.
    """
    import keras

    errors = []
    for x in _input_batches(data, batch_size):
        x = np.asarray(x, np.float32)
        reconstructed = keras.ops.convert_to_numpy(model(x, training=False)).astype(np.float32)
        errors.append(np.square(reconstructed - x).reshape(len(x), -1).mean(axis=1))
    return np.concatenate(errors) if errors else np.zeros(0, np.float32)


def _input_batches(data: Any, batch_size: int) -> Any:
    """The inputs of `data`, batch by batch: an array, a `tf.data.Dataset` or batches of
    arrays (`x` or `(x, y)` elements)."""
    if isinstance(data, np.ndarray):
        for start in range(0, len(data), batch_size):
            yield data[start : start + batch_size]
        return
    elements = data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator") else iter(data)
    for element in elements:
        yield element[0] if isinstance(element, tuple) else element


def _held_out(splits: Splits) -> tuple[str, Any]:
    """The data errors are measured on: test, else validation, else (lacking both) training."""
    if splits.test is not None:
        return "test", splits.test
    if splits.validation is not None:
        return "validation", splits.validation
    return "training", splits.train


def _to_itself(*element: Any) -> tuple[Any, Any]:
    x = element[0]
    return x, x


def _add_noise_numpy(x: np.ndarray, stddev: float, seed: int, number: int) -> np.ndarray:
    """Gaussian noise drawn from `(seed, the batch's number)`, as `_add_noise` draws it on
    `tf.data` (another generator: other numbers, the same distribution)."""
    noise = np.random.default_rng([seed, number]).normal(0.0, stddev, size=x.shape)
    return (x + noise).astype(x.dtype)


def _add_noise(x: Any, stddev: float, seed: int, number: Any) -> Any:
    import tensorflow as tf

    noise = tf.random.stateless_normal(
        tf.shape(x), seed=tf.stack([tf.constant(seed, tf.int64), number]), stddev=stddev
    )
    return x + tf.cast(noise, x.dtype)


__all__ = ["ERROR_METRIC", "AutoencoderTask", "reconstruction_errors"]
