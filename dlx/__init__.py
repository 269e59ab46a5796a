"""dlx: declarative deep-learning experiments.

One YAML spec says everything about an experiment; `dlx train spec.yaml` turns it into a Keras 3
model, trains it under a `tf.distribute` strategy and records the run in MLflow.
"""

import os

__version__ = "0.1.0"

# TensorFlow prints pages of start-up noise (oneDNN, CUDA probing) before anything useful; keep
# it quiet unless the user asked for it. Setting the variable costs nothing and imports nothing.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
