"""The GAN kind: a generator trained against a discriminator (docs/spec.md section 4.6).

`Adversarial` is a `keras.Model` that holds both networks and alternates their updates in its
own `train_step`, so that `Model.fit` (and with it the runner's strategy, callbacks and
tracking) trains it like any other model. The step is written once per backend:
`dlx.train.gan_tensorflow` (`tf.GradientTape`) and `dlx.train.gan_jax` (`stateless_call` and
`jax.value_and_grad`); what they share is `dlx.train.adversarial.AdversarialBase`. Every
`model.sample_every` epochs, and after the last one, the run logs a grid of samples the
generator makes from one fixed latent batch, so that the grids of different epochs compare.
The generator is the run's model.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from dlx.build.compile import build_callbacks, build_compile_args
from dlx.build.model import BuiltModel, model_builder
from dlx.data import Splits
from dlx.train.adversarial import D_LOSS, G_LOSS
from dlx.train.tasks import Task, callback_metrics, register_task

SAMPLE_EVERY = 5
"""Epochs between two sample grids, unless the spec's `model.sample_every` says otherwise."""
SAMPLES = 64
"""Samples in each grid (8 x 8)."""
SIGNATURE_SAMPLES = 8


@register_task("gan")
class GanTask(Task):
    """Trains a spec's generator against its discriminator; logs sample grids as it goes."""

    value_range: tuple[float, float] = (0.0, 1.0)
    """The training data's smallest and largest values (when it gives arrays)."""

    def build_models(self) -> BuiltModel:
        """The generator, from a latent vector, and the discriminator, on its samples."""
        model = self.loaded.spec.model
        # A GAN needs these three (the spec's `Model` checks it).
        assert model.latent_dim is not None
        assert model.generator is not None and model.discriminator is not None
        builder = model_builder(self.loaded)
        latent = keras.Input(shape=(model.latent_dim,), name="latent")
        out, _ = builder.connect(model.generator, ("model", "generator"), scope_input=latent)
        generator = keras.Model(latent, out, name="generator")
        sample = keras.Input(shape=generator.output.shape[1:], name="sample")
        logit, _ = builder.connect(
            model.discriminator, ("model", "discriminator"), scope_input=sample
        )
        discriminator = keras.Model(sample, logit, name="discriminator")
        return BuiltModel(
            generator,
            generator=generator,
            discriminator=discriminator,
            shown=[generator, discriminator],
        )

    def build(self, jit_compile: Any) -> Any:
        spec = self.loaded.spec
        for key in ("loss", "metrics"):
            if getattr(spec.train, key):
                raise self.loaded.error(
                    ("train", key),
                    f"a GAN has no train.{key}: it is trained with the adversarial losses "
                    "d_loss and g_loss (binary cross-entropy on the discriminator's logit)",
                    key=True,
                )
        self.built = self.build_models()
        args = build_compile_args(self.loaded)
        self.callbacks = args.callbacks
        optimizers = args.optimizer
        if not isinstance(optimizers, dict):  # one optimizer: a copy for each network
            copy = type(optimizers).from_config(optimizers.get_config())
            optimizers = {"generator": optimizers, "discriminator": copy}
        if keras.backend.backend() == "jax":
            from dlx.train.gan_jax import Adversarial
        else:
            from dlx.train.gan_tensorflow import Adversarial

        assert spec.model.latent_dim is not None  # a GAN's spec has one (`MODEL_KINDS`)
        model = Adversarial(
            self.built.generator, self.built.discriminator, spec.model.latent_dim, spec.seed
        )
        model.compile(optimizers["generator"], optimizers["discriminator"], jit_compile)
        return model

    def final_metrics(self, output_names: list[str]) -> set[str] | None:
        """Its two losses and what its callbacks log: a GAN has no validation, and its test
        split is not evaluated."""
        return callback_metrics({D_LOSS, G_LOSS}, build_callbacks(self.loaded))

    def prepare(self, model: Any, splits: Splits) -> None:
        """Check the data fits the discriminator, adapt its preprocessing layers, and take the
        data's range of values, which the sample grids show from black to white."""
        super().prepare(model.discriminator, splits)
        arrays = splits.train_arrays
        if arrays is not None and isinstance(arrays[0], np.ndarray):
            self.value_range = (float(arrays[0].min()), float(arrays[0].max()))

    def datasets(self, splits: Splits, first: int = 0, end: int = 1) -> tuple[Any, Any, Any]:
        """The training examples alone: targets are ignored, and there is no validation."""
        return splits.epochs(first, end).map(lambda *element: element[0]), None, None

    def run_callbacks(self, outbox: Any) -> list[Any]:
        from dlx.track.plots import is_image_shape

        if self.built is None or not is_image_shape(self.built.generator.output.shape[1:]):
            return []
        every = self.loaded.spec.model.sample_every or SAMPLE_EVERY
        grids = SampleGrids(
            outbox, self.built.generator, self._latent(SAMPLES), every, self.value_range
        )
        return [grids]

    def evaluate(self, model: Any, test: Any) -> dict[str, Any]:
        return {}

    def saved_model(self, model: Any) -> Any:
        return model.generator

    def sample_inputs(self, splits: Splits) -> Any:
        return self._latent(SIGNATURE_SAMPLES)

    def reference_inputs(self, count: int) -> Any:
        """Latent vectors drawn from the spec's seed: what the generator turns into samples."""
        return self._latent(count)

    def _latent(self, count: int) -> np.ndarray:
        """The first `count` vectors of the fixed latent batch, drawn from the spec's seed."""
        rng = np.random.default_rng(self.loaded.spec.seed)
        latent_dim = self.loaded.spec.model.latent_dim or 0
        return rng.standard_normal((max(count, SAMPLES), latent_dim)).astype(np.float32)[:count]


class SampleGrids(keras.callbacks.Callback):
    """Log `samples/epoch_NNN.png` every `every` epochs and after the last one.

    Args:
        outbox: the run's outbox (`dlx.track.outbox.Outbox`): the grids are kept, then sent.
        generator: the generator being trained.
        latent: the fixed latent batch the grids are drawn from.
        every: epochs between two grids.
        value_range: the data's smallest and largest values, shown as black and white.
    """

    def __init__(
        self,
        outbox: Any,
        generator: Any,
        latent: np.ndarray,
        every: int,
        value_range: tuple[float, float],
    ) -> None:
        super().__init__()
        self.outbox = outbox
        self.generator = generator
        self.latent = latent
        self.every = every
        self.value_range = value_range

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        from dlx.track.plots import image_grid_figure

        done = epoch + 1
        if done % self.every and done != self.params.get("epochs"):
            return
        images = np.asarray(self.generator(self.latent, training=False), dtype=np.float32)
        figure = image_grid_figure(images, self.value_range, title=f"epoch {done}")
        self.outbox.add_figure(figure, f"samples/epoch_{done:03d}.png")
        self.outbox.send()


__all__ = ["SAMPLES", "SAMPLE_EVERY", "GanTask", "SampleGrids"]
