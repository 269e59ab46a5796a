"""`dlx score`: data scored by a run's trained model, one value per example (an autoencoder's
reconstruction error, for anomaly detection); what a kind scores is its task's `score`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlx.errors import UsageError
from dlx.spec import LoadedSpec

if TYPE_CHECKING:
    import numpy as np

    from dlx.track.read import Store


@dataclass
class Scores:
    """A run's scores of some data (`dlx score`)."""

    run_id: str
    split: str
    """Which data was scored: `test` (the spec's test split) or `all` (the whole source)."""
    errors: np.ndarray
    """One float per example, in the data's order."""
    threshold: float | None
    """The run's threshold metric (an autoencoder's `reconstruction_error_p95` on its held-out
    data), when it logged one."""
    embeddings: Path | None = None

    @property
    def over_threshold(self) -> int | None:
        """How many examples score above the threshold: anomaly candidates."""
        return None if self.threshold is None else int((self.errors > self.threshold).sum())

    def summary(self) -> dict[str, float | int | None]:
        import numpy as np

        errors = self.errors
        return {
            "count": len(errors),
            "mean": float(errors.mean()) if len(errors) else None,
            "p95": float(np.percentile(errors, 95)) if len(errors) else None,
            "threshold": self.threshold,
            "over_threshold": self.over_threshold,
        }


def score_run(store: Store, run: Any, loaded: LoadedSpec, embed: str | Path | None) -> Scores:
    """Score the data of `loaded`'s `data:` section by a run's logged model.

    The data is read as training reads it: its test split when it has one, else all of the
    source. `dlx.api.score` documents the rest.

    Raises:
        UsageError: the run's kind does not score examples, or it logged no model.
        SpecError: the spec has no data, or its data cannot be read.
    """
    import numpy as np

    from dlx.backend import current, use_backend
    from dlx.data import call_source
    from dlx.track.logged_models import load_logged_model
    from dlx.train.preparation import has_data, read_splits, source_context, sources_located

    data = has_data(loaded, "to score")
    use_backend(current() or loaded.spec.runtime.backend)
    from dlx.train.kinds import task_for

    run_id = run.info.run_id
    task = task_for(store.logged_spec(run))
    if task.score_metric is None:
        kind = run.data.params.get("model.kind") or "supervised"
        raise UsageError(
            f"the run {run_id} is not an autoencoder's (model.kind: {kind}); dlx score needs "
            "a kind that scores examples"
        )
    batch_size = loaded.spec.train.batch_size
    feed = "arrays" if current() == "jax" else "tf.data"
    if data.test_split:
        split, inputs = "test", read_splits(loaded, "to score", feed=feed).test
    else:
        with sources_located(loaded):
            read = call_source(data.source, source_context(loaded))
        split = "all"
        inputs = read.x if read.dataset is None else read.dataset.batch(batch_size)
    errors = task.score(load_logged_model(store.uri, run_id, "model"), inputs, batch_size)
    scores = Scores(run_id, split, errors, run.data.metrics.get(task.score_metric))
    if embed is not None and task.embedding_model is not None:
        embedder = load_logged_model(store.uri, run_id, task.embedding_model)
        scores.embeddings = Path(embed)
        np.save(scores.embeddings, embedder.predict(inputs, batch_size=batch_size, verbose=0))
    return scores
