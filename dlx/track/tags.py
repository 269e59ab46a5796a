"""The tags every dlx run carries: what was run, on what data, where, and with which versions."""

from __future__ import annotations

import getpass
import hashlib
import importlib
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import dlx

if TYPE_CHECKING:
    from dlx.spec import LoadedSpec

# The names of dlx's own run tags; code that writes or reads a tag names it by its constant.
SPEC_HASH = "dlx.spec_hash"
"""SHA-256 of the spec as run (`resolved_spec_text`)."""
DATA_FINGERPRINT = "dlx.data_fingerprint"
"""A digest of the training data, as the data pipeline computes it."""
DATA_FINGERPRINT_KIND = "dlx.data_fingerprint_kind"
"""How a streamed source's files were fingerprinted (`data.fingerprint`): `files` (paths, sizes
and modification times) or `content` (their bytes)."""
SKIPPED_EXAMPLES = "dlx.skipped_examples"
"""With `data.on_error: skip`: how many files could not be decoded and were left out, and the
first of them: `N (first: PATH)`."""
DATA_CACHE = "dlx.data_cache"
"""Where a streamed source's decoded examples were kept: `memory`, `none` or a disk cache's
prefix (`data.cache`, with `auto` resolved)."""
SHARD_POLICY = "dlx.shard_policy"
"""How the workers of a multi-worker job shared the training split: `file` (each read only its
own files) or `data` (each read every example and kept its part of each batch). Not set for
a run of one worker."""
FILES_PER_WORKER = "dlx.files_per_worker"
"""With `dlx.shard_policy` `file`: how many training files each worker read (`16`, or `16-17`
when they do not divide evenly)."""
SEED = "dlx.seed"
BACKEND = "dlx.backend"
"""The Keras backend the run trained on: `tensorflow` or `jax` (`runtime.backend`)."""
STRATEGY = "dlx.strategy"
"""The `tf.distribute` strategy the run trained under (e.g. `mirrored`)."""
REPLICAS = "dlx.replicas"
"""The number of replicas in sync."""
WORKERS = "dlx.workers"
"""The number of workers of the job (1 unless multi-worker)."""
INTRA_OP_THREADS = "dlx.intra_op_threads"
"""TensorFlow's threads per operation when they were limited (`TF_NUM_INTRAOP_THREADS`, as a
sweep's `--jobs` do): sums split over another number of threads round differently, so
`dlx reproduce` trains with the same number. Absent: TensorFlow's default (every core)."""
PROCESS = "dlx.process"
"""The process that runs the run, as `host:pid`: a RUNNING run whose process is gone may be
resumed."""
CHECKPOINTS = "dlx.checkpoints"
"""The absolute path of the run's checkpoint folder, for `dlx train --resume`."""
RESUMED = "dlx.resumed"
"""How many times the run was resumed."""
REPRODUCTION_OF = "dlx.reproduction_of"
"""The id of the run that a `dlx reproduce` run trained again."""
SWEEP = "dlx.sweep"
"""On a sweep's parent run: the Optuna storage of its study (a password in it hidden)."""
SWEEP_STUDY = "dlx.sweep.study"
"""On a sweep's parent run: its Optuna study's name (the parent's run id, or with `--storage`
a name made from the spec: `dlx-<name>-<digest>`)."""
SWEEP_METHOD = "dlx.sweep.method"
"""On a sweep's parent run: its sampler (`grid`, `random`, `tpe`, `cmaes`)."""
SWEEP_METRIC = "dlx.sweep.metric"
"""On a sweep's parent run: the metric it optimizes."""
SWEEP_GOAL = "dlx.sweep.goal"
"""On a sweep's parent run: `max` or `min`."""
SWEEP_TRIALS = "dlx.sweep.trials"
"""On a sweep's parent run: how many trials it runs."""
SWEEP_BEST_RUN = "dlx.sweep.best_run"
"""On a sweep's parent run: the run id of its best trial (of its first repeat)."""
SWEEP_BEST_TRIAL = "dlx.sweep.best_trial"
"""On a sweep's parent run: the number of its best trial."""
TRIAL = "dlx.sweep.trial"
"""On a trial's run (a child of the sweep's parent run): the Optuna trial's number."""
REPEAT = "dlx.sweep.repeat"
"""On a trial's run: which of the configuration's seeds (`sweep.repeats`) it trained, from 0."""
PRUNED = "dlx.pruned"
"""On a trial's run stopped early by the sweep's pruner: the epoch it stopped after (the run is
FINISHED, with its metrics up to there)."""
PARENT_RUN = "mlflow.parentRunId"
"""MLflow's own tag of a nested run: its parent's run id."""
RUN_NAME = "mlflow.runName"
"""MLflow's own tag of a run's name: the spec's name, a sweep's `<name>-sweep`, its trials'
`<name>-<trial>` (`<name>-<trial>-seed<repeat>` with several seeds)."""
USER = "mlflow.user"
"""MLflow's own tag of who ran a run: the UI's "Created by"."""
GIT_COMMIT = "mlflow.source.git.commit"
"""MLflow's own tag of the commit checked out where the spec lies."""
GIT_BRANCH = "mlflow.source.git.branch"
"""MLflow's own tag of the branch checked out there (in a CI job that checked out a detached
commit: the branch the CI names, `$GITHUB_HEAD_REF`, `$GITHUB_REF_NAME` or GitLab's
`$CI_COMMIT_REF_NAME`)."""
GIT_DIRTY = "dlx.git.dirty"
"""`true` when tracked files of the work tree differed from the commit (`git status`), else
`false`: the commit alone does not say what ran."""
MACHINE = "dlx.machine"
"""The processor that computed the run (`x86_64 AMD EPYC 7763 64-Core Processor`): a
deterministic run is bitwise equal again on the same kind of machine, not on another."""
VERSION_PREFIX = "dlx.version."
"""The prefix of the tags recording versions: `dlx.version.tensorflow`, ..."""

_GIT_TIMEOUT_S = 5

# The distribution whose version each `dlx.version.*` tag records, by module name.
_VERSIONED_MODULES = ("keras", "mlflow")
_BACKEND_MODULES = {"tensorflow": ("tensorflow",), "jax": ("jax", "jaxlib")}
"""The libraries of each backend whose versions a run records (never importing the other)."""


def resolved_spec_text(loaded: LoadedSpec) -> str:
    """The spec as run, after `--set` overrides, as YAML: what a run logs as `spec.yaml`.

    Collections of scalars are written in flow style (`dense: {units: 64}`), as specs are
    usually written; the text loads back to the same data with `dlx.spec.load_spec`.
    """
    import yaml  # here: `dlx compare` and `dlx runs` read this module's tag names, not YAML

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
    - `mlflow.source.git.commit`, `mlflow.source.git.branch` and `dlx.git.dirty` when the
      spec file lies in a git work tree with a commit (`git_state`);
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
            RUN_NAME: loaded.name,
            "mlflow.source.name": str(loaded.document.path.resolve()),
            "mlflow.source.type": "LOCAL",
            USER: user_name(),
            SPEC_HASH: hashlib.sha256(spec_text.encode()).hexdigest(),
            SEED: str(spec.seed),
            BACKEND: spec.runtime.backend,
            STRATEGY: strategy,
            REPLICAS: str(replicas),
            MACHINE: machine(),
            f"{VERSION_PREFIX}dlx": dlx.__version__,
            f"{VERSION_PREFIX}python": platform.python_version(),
        }
    )
    for module in (*_VERSIONED_MODULES, *_BACKEND_MODULES[spec.runtime.backend]):
        tags[f"{VERSION_PREFIX}{module}"] = importlib.import_module(module).__version__
    if data_fingerprint is not None:
        tags[DATA_FINGERPRINT] = data_fingerprint
    if spec.description:
        tags["mlflow.note.content"] = spec.description
    tags.update(git_state(loaded.base_dir))
    return tags


_CI_BRANCH_VARIABLES = ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME")


def git_state(folder: Path) -> dict[str, str]:
    """The git tags of a run whose spec lies in `folder`: the commit checked out, the branch
    (when one is checked out, else the one a CI job names) and whether tracked files differ
    from the commit; one `git status` call. Empty when git is not installed, `folder` is not
    in a work tree, the repository has no commit yet, or git does not answer within 5 s.
    """
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if result.returncode != 0:
        return {}
    headers = dict(
        line[2:].partition(" ")[::2] for line in result.stdout.splitlines() if line[:2] == "# "
    )
    commit = headers.get("branch.oid", "")
    if not re.fullmatch(r"[0-9a-f]{40,64}", commit):  # "(initial)": no commit yet
        return {}
    tags = {GIT_COMMIT: commit}
    branch = headers.get("branch.head", "(detached)")
    if branch == "(detached)":
        branch = next((os.environ[v] for v in _CI_BRANCH_VARIABLES if os.environ.get(v)), "")
    if branch:
        tags[GIT_BRANCH] = branch
    changed = any(line and line[0] != "#" for line in result.stdout.splitlines())
    tags[GIT_DIRTY] = "true" if changed else "false"
    return tags


def machine() -> str:
    """The processor's architecture and, where the system says it, its model name."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("model name", "Model")):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    return " ".join(f"{platform.machine()} {model}".split())


def user_name() -> str:
    """Who runs this process (its login name), as the `mlflow.user` tag records it."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No login name and no passwd entry, as in some containers.
        return "unknown"
