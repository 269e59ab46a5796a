#!/usr/bin/env bash
# dlx on an accelerator machine with JAX and no TensorFlow: install the wheels of
# `bench/device_wheels.sh` from .whl/ (no network), then run `bench/device.py`, which prints one
# JSON line last. From the repository's root, with .whl/ beside it:
#
#     bash bench/device.sh [--quick]
#
# It runs in well under 10 minutes on an H200, the install included.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/dlx-site .whl/*.whl
export PYTHONPATH="$PWD:/tmp/dlx-site${PYTHONPATH:+:$PYTHONPATH}"
echo "installed in $(( $(date +%s) - started )) s" >&2
python3 bench/device.py "$@"
