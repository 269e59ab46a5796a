"""A sweep's `--jobs` on one machine: worker processes (`dlx sweep-worker`), each handed its
`SweepConfig` through `$DLX_SWEEP_WORKER`, its share of the CPU's threads and, with GPUs, one
of its own; each dies with the sweep that started it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from dlx.errors import DlxError, UsageError
from dlx.proc import dlx_command
from dlx.sweep.options import SweepConfig, TrialRow

if TYPE_CHECKING:
    from dlx.train.progress import ProgressListener

WORKER_SEED_STRIDE = 1_000_003
"""How far apart the samplers' seeds of a sweep's `--jobs` processes are."""

WORKER_CONFIG = "DLX_SWEEP_WORKER"
"""The environment variable holding a `--jobs` worker's `SweepConfig`, as JSON."""


def work_in_processes(config: SweepConfig, jobs: int) -> None:
    """`jobs` worker processes (`dlx sweep-worker`), each its share of the CPU's threads and,
    with GPUs, one GPU of its own."""
    gpus = visible_gpus()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    workers = []
    for index in range(jobs):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
            if jobs > len(gpus):  # jobs share a GPU: each takes the memory it needs, not all
                env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        # Seeds far apart: each process adds the trials already there when it starts (`work`),
        # and `seed + index + trials` alone would collide (42 + 1 + 0 == 42 + 0 + 1).
        mine = SweepConfig(
            **{
                **asdict(config),
                "seed": config.seed + WORKER_SEED_STRIDE * index,
                "threads": threads,
                "coordinator": os.getpid(),
            }
        )
        # In the environment, not the command line that every user sees (a storage password).
        env[WORKER_CONFIG] = mine.to_json()
        # In a session of their own: Ctrl-C on a terminal reaches the sweep alone, which passes
        # it on once (a second signal ends a process at once).
        workers.append(
            subprocess.Popen(dlx_command("sweep-worker"), env=env, start_new_session=True)
        )
    try:
        codes = [_waited(worker) for worker in workers]
    except KeyboardInterrupt:
        import signal

        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGINT)
        for worker in workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
        raise
    if any(code not in (0,) for code in codes):
        raise DlxError(f"a sweep worker exited with status {max(codes)}; see its output above")


def _waited(worker: subprocess.Popen) -> int:
    """The worker's exit status, once it exits; a stop asked for meanwhile is raised."""
    from dlx.proc import signals

    while True:
        signals.check()
        try:
            return worker.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            continue


def die_with_coordinator(config: SweepConfig) -> None:
    """Have this `--jobs` worker interrupted (SIGINT: its trial recorded KILLED, rerun on
    `--resume`) when the sweep that started it dies, even by `kill -9`."""
    import signal

    from dlx.proc import die_with_parent

    if config.coordinator:
        die_with_parent(signal.SIGINT, parent=config.coordinator)


def work_as_worker(
    on_trial: Callable[[TrialRow], None] | None, progress: ProgressListener | None
) -> None:
    """Be one `--jobs` worker of a sweep: work its study until it has its trials.

    Its `SweepConfig` is the JSON in `$DLX_SWEEP_WORKER`, set by the sweep that started it.

    Raises:
        UsageError: not started by a sweep (no `$DLX_SWEEP_WORKER`).
    """
    from dlx.sweep.trials import work

    config = os.environ.get(WORKER_CONFIG)
    if not config:
        raise UsageError(f"dlx sweep-worker is started by dlx sweep --jobs (${WORKER_CONFIG})")
    worker = SweepConfig.from_json(config)
    die_with_coordinator(worker)
    work(worker, progress=progress, on_trial=on_trial)


def visible_gpus() -> list[str]:
    """The GPUs' indices, from `nvidia-smi` (no TensorFlow in this process); none without."""
    import shutil

    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip().isdigit()]
