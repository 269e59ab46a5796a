"""dlx's own model kinds: importing this module registers the task of each (`register_task`).

The one place that imports every kind's module; `dlx.train.tasks` imports none of them, so a
kind's module imports `dlx.train.tasks` without a cycle. A new kind's module is added here.
"""

# Imported for their `@register_task` (supervised registers in dlx.train.tasks itself).
from dlx.train import autoencoder, gan  # noqa: F401
from dlx.train.tasks import task_for

__all__ = ["task_for"]
