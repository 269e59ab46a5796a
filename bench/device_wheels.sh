#!/usr/bin/env bash
# The wheels `bench/device.sh` installs on an accelerator machine that has JAX but no network
# and no TensorFlow (Python 3.12, x86-64 Linux): dlx's own, and every package dlx needs to
# train on JAX that the machine lacks. Run here, where the package index is reachable, from
# the repository's root (dlx itself runs from the repository: PYTHONPATH):
#
#     bash bench/device_wheels.sh            # writes .whl/ (ignored by git)
#
# The packages an accelerator image already holds (numpy, pandas, scikit-learn, matplotlib,
# pyyaml, rich, typer, h5py, jax...) are left out: DEVICE_HAS below lists them, as the image
# of this project's H200 machines listed them on 2026-11-17.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.whl
rm -rf "$out" && mkdir -p "$out"
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
target=(--python-version 3.12 --implementation cp --only-binary=:all: "${platforms[@]}")
DEVICE_HAS="absl-py aiohttp anyio attrs certifi charset-normalizer click cloudpickle contourpy
cycler filelock flatbuffers fonttools fsspec grpcio h11 h5py httpcore httpx idna jax jaxlib
jinja2 joblib kiwisolver markdown markdown-it-py markupsafe matplotlib mdurl ml-dtypes numpy
opt-einsum packaging pandas pillow protobuf psutil pyarrow pygments pyparsing python-dateutil
pyyaml requests rich scikit-learn scipy shellingham six threadpoolctl tqdm typer
typing-extensions urllib3 werkzeug wrapt zipp"
# What dlx needs to train on JAX and record in MLflow, resolved for the target (no TensorFlow).
python3 -m pip install --quiet --dry-run --ignore-installed --report "$out/report.json" \
    "${target[@]}" --target /tmp/dlx-device-resolve \
    "keras>=3.10,<4" "mlflow>=3.0,<4" "pydantic>=2.6,<3" "typer>=0.12" "rich>=13" \
    "pyyaml>=6" "scikit-learn>=1.4" "matplotlib>=3.8"
python3 - "$out/report.json" "$DEVICE_HAS" > "$out/wanted.txt" <<'PY'
import json, re, sys
report, has = json.load(open(sys.argv[1])), set(sys.argv[2].split())
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
for item in report["install"]:
    meta = item["metadata"]
    if norm(meta["name"]) not in has:
        print(f"{meta['name']}=={meta['version']}")
PY
python3 -m pip download --quiet --no-deps "${target[@]}" -d "$out" -r "$out/wanted.txt"
rm -f "$out/report.json"
echo "$(ls "$out"/*.whl | wc -l) wheels, $(du -sh "$out" | cut -f1) in $out/ (64 MiB at most travel)"
