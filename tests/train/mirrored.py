"""Training under MirroredStrategy on two logical CPUs, as Keras's own distribution tests do.

It runs `dlx train` in a subprocess: logical devices can only be made before TensorFlow
initializes, which the test process has long done.
"""

import os
import subprocess
import sys
from pathlib import Path


def train_on_two_cpus(
    spec: Path, cwd: Path, *overrides: str, expect: str | None = None, env: dict | None = None
):
    """`dlx train SPEC --set runtime.strategy=mirrored ...` in `cwd`, with the variables `env`
    set; checks it succeeded."""
    command = [sys.executable, "-m", "dlx", "train", str(spec)]
    for override in (*overrides, "runtime.strategy=mirrored", "runtime.devices=[CPU:0, CPU:1]"):
        command += ["--set", override]
    if expect:
        command += ["--expect", expect]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    assert "(mirrored, 2 replicas)" in done.stdout
    return done
