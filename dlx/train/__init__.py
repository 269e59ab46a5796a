"""Training: a task per model kind, placed on a tf.distribute strategy by the runner, with
its checkpoints and resume."""
