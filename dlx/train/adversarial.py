"""What the GAN's training step shares on every backend: both networks in one `keras.Model`,
its two optimizers and its loss trackers (`dlx.train.gan_tensorflow` and `dlx.train.gan_jax`
write the step itself)."""

from __future__ import annotations

from typing import Any

import keras

D_LOSS, G_LOSS = "d_loss", "g_loss"
"""The metrics a GAN logs each epoch: the discriminator's loss and the generator's."""


class AdversarialBase(keras.Model):
    """A generator and a discriminator, trained in turns by `fit`: what both backends' steps
    share (the networks, the two optimizers, the `d_loss` and `g_loss` trackers).

    Each step updates the discriminator on real examples (label 1) against generated ones
    (label 0), then the generator to make the discriminator say 1 (the non-saturating loss).
    The discriminator outputs one logit per example; both losses are binary cross-entropy on
    logits, averaged over the (global) batch.

    Args:
        generator: latent vectors `(batch, latent_dim)` -> samples.
        discriminator: samples -> one logit each.
        latent_dim: the size of a latent vector.
        seed: seeds the latent batches the steps draw.
    """

    def __init__(self, generator: Any, discriminator: Any, latent_dim: int, seed: int) -> None:
        super().__init__(name="gan")
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.seed = seed
        self.d_loss_tracker = keras.metrics.Mean(name=D_LOSS)
        self.g_loss_tracker = keras.metrics.Mean(name=G_LOSS)
        self.cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)
        self.generator_optimizer: Any = None
        self.discriminator_optimizer: Any = None
        self.built = True  # both networks are built; the model itself has no weights of its own

    def compile(
        self, generator_optimizer: Any, discriminator_optimizer: Any, jit_compile: Any = "auto"
    ) -> None:
        """Set the two optimizers (built here, in the strategy's scope) and compile."""
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            generator_optimizer = keras.optimizers.LossScaleOptimizer(generator_optimizer)
            discriminator_optimizer = keras.optimizers.LossScaleOptimizer(discriminator_optimizer)
        generator_optimizer.build(self.generator.trainable_variables)
        discriminator_optimizer.build(self.discriminator.trainable_variables)
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        super().compile(optimizer=None, jit_compile=jit_compile)

    @property
    def metrics(self) -> list[Any]:
        return [self.d_loss_tracker, self.g_loss_tracker]

    def call(self, latent: Any, training: bool = False) -> Any:
        return self.generator(latent, training=training)
