"""The GAN's training step on TensorFlow: `tf.GradientTape`, under `tf.distribute`."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from dlx.train.adversarial import AdversarialBase


class Adversarial(AdversarialBase):
    """Both networks in one `keras.Model`, trained in turns by `fit` on TensorFlow.

    Under a `tf.distribute` strategy Keras runs `train_step` once per replica on that replica's
    share of the global batch. Each replica's loss is its examples' sum divided by the *global*
    batch (`tf.nn.compute_average_loss`), and the optimizers sum the replicas' gradients, so a
    step is the same as on one device with the whole batch. The `d_loss` and `g_loss` trackers
    are weighted by each replica's examples and reset at each epoch.
    """

    def __init__(self, generator: Any, discriminator: Any, latent_dim: int, seed: int) -> None:
        super().__init__(generator, discriminator, latent_dim, seed)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def train_step(self, data: Any) -> dict[str, Any]:
        real = data[0] if isinstance(data, (tuple, list)) else data
        batch = tf.shape(tf.nest.flatten(real)[0])[0]

        with tf.GradientTape() as tape:
            fake = self.generator(self._latent(batch), training=True)
            real_logits = self._logits(real)
            fake_logits = self._logits(fake)
            d_losses = self.cross_entropy(
                tf.ones_like(real_logits), real_logits
            ) + self.cross_entropy(tf.zeros_like(fake_logits), fake_logits)
            d_loss = self.discriminator_optimizer.scale_loss(tf.nn.compute_average_loss(d_losses))
        self._update(self.discriminator_optimizer, self.discriminator, tape, d_loss)

        with tf.GradientTape() as tape:
            fake_logits = self._logits(self.generator(self._latent(batch), training=True))
            g_losses = self.cross_entropy(tf.ones_like(fake_logits), fake_logits)
            g_loss = self.generator_optimizer.scale_loss(tf.nn.compute_average_loss(g_losses))
        self._update(self.generator_optimizer, self.generator, tape, g_loss)

        self.d_loss_tracker.update_state(tf.reduce_mean(d_losses), sample_weight=batch)
        self.g_loss_tracker.update_state(tf.reduce_mean(g_losses), sample_weight=batch)
        return {metric.name: metric.result() for metric in self.metrics}

    def _latent(self, batch: Any) -> Any:
        """A latent batch: the seed generator's next seed, with the replica's id folded in.

        Every replica's seed generator gives the same seeds; without its id, each replica would
        draw the very same latent vectors.
        """
        seed = self.seed_generator.next()
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = seed + tf.cast(tf.stack([replica, 0]), seed.dtype)
        return tf.random.stateless_normal((batch, self.latent_dim), seed=seed)

    def _logits(self, samples: Any) -> Any:
        return tf.cast(self.discriminator(samples, training=True), tf.float32)

    @staticmethod
    def _update(optimizer: Any, network: Any, tape: Any, loss: Any) -> None:
        weights = network.trainable_weights
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))
