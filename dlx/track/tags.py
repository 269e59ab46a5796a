"""The tags every dlx run carries: what was run, on what data, where, and with which versions."""

from __future__ import annotations

import getpass
import hashlib
import importlib
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

import dlx

if TYPE_CHECKING:
    from dlx.spec import LoadedSpec

_GIT_TIMEOUT_S = 5

# The distribution whose version each `dlx.version.*` tag records, by module name.
_VERSIONED_MODULES = ("tensorflow", "keras", "mlflow")


def resolved_spec_text(loaded: LoadedSpec) -> str:
    """The spec as run, after `--set` overrides, as YAML: what a run logs as `spec.yaml`.

    Collections of scalars are written in flow style (`dense: {units: 64}`), as specs are
    usually written; the text loads back to the same data with `dlx.spec.load_spec`.
    """
    return yaml.safe_dump(
        loaded.document.data,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=None,
        width=100,
    )


def standard_tags(
    loaded: LoadedSpec,
    *,
    strategy: str,
    replicas: int,
    data_fingerprint: str | None = None,
    spec_text: str | None = None,
) -> dict[str, str]:
    """The tags of a run of `loaded`, MLflow's own and dlx's.

    - `dlx.spec_hash`: SHA-256 of `resolved_spec_text(loaded)`;
    - `dlx.data_fingerprint` (when given), `dlx.seed`, `dlx.strategy`, `dlx.replicas`;
    - `dlx.version.dlx`, `.tensorflow`, `.keras`, `.mlflow`, `.python`;
    - `mlflow.runName` (the spec's name), `mlflow.source.name` (the spec file),
      `mlflow.source.type`, `mlflow.user`, `mlflow.note.content` (the spec's `description`,
      shown as the run's description in the UI);
    - `mlflow.source.git.commit` when the spec file lies in a git work tree with a commit;
    - the user's `tracking.tags`. A user tag with the same key as one of the above is
      overridden by it: those record facts about the run.

    The versions are those of the modules in this process; TensorFlow, Keras and MLflow are
    imported if they are not already (a training run has imported them anyway).

    Args:
        loaded: the spec being run.
        strategy: the name of the `tf.distribute` strategy in use (e.g. `mirrored`).
        replicas: the number of replicas in sync.
        data_fingerprint: a digest of the training data, as the data pipeline computes it.
        spec_text: `resolved_spec_text(loaded)`, when the caller has it already (it is logged
            beside the tags as `spec.yaml`); default: computed here.

    Returns:
        Tag keys to values.
    """
    spec = loaded.spec
    if spec_text is None:
        spec_text = resolved_spec_text(loaded)
    tags = dict(spec.tracking.tags)
    tags.update(
        {
            "mlflow.runName": loaded.name,
            "mlflow.source.name": str(loaded.document.path.resolve()),
            "mlflow.source.type": "LOCAL",
            "mlflow.user": _user(),
            "dlx.spec_hash": hashlib.sha256(spec_text.encode()).hexdigest(),
            "dlx.seed": str(spec.seed),
            "dlx.strategy": strategy,
            "dlx.replicas": str(replicas),
            "dlx.version.dlx": dlx.__version__,
            "dlx.version.python": platform.python_version(),
        }
    )
    for module in _VERSIONED_MODULES:
        tags[f"dlx.version.{module}"] = importlib.import_module(module).__version__
    if data_fingerprint is not None:
        tags["dlx.data_fingerprint"] = data_fingerprint
    if spec.description:
        tags["mlflow.note.content"] = spec.description
    if commit := git_commit(loaded.base_dir):
        tags["mlflow.source.git.commit"] = commit
    return tags


def git_commit(folder: Path) -> str | None:
    """The commit checked out in the git work tree holding `folder`, or `None`.

    `None` when git is not installed, `folder` is not in a work tree, the repository has no
    commit yet, or git does not answer within 5 seconds.
    """
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No login name and no passwd entry, as in some containers.
        return "unknown"
