"""Does `dlx train` on an image folder hold the folder in memory? Prints one JSON line, last.

Writes two folders of 64x64 PNG images in 10 class folders (`image_folder.py`: about 11.7 KB
a file, like the issue's 470 MB for 40,000 images), 4,000 and 40,000 images by default, and
trains the same small CNN spec on each (`images` source, `image_size: [64, 64]`, a
`rescaling` layer, conv/pool/dense, `cache: auto`, 10% validation) with
`python -m dlx train` in a subprocess, against a fresh sqlite MLflow store. Each
subprocess's peak resident memory is its `ru_maxrss` as `os.wait4` reports it for that child
alone (the kernel's high-water mark of its resident pages, sampled by nothing).

The target (issue 12): the 40,000-image run peaks at most 300 MB above the 4,000-image one.
`cache: auto` keeps the 4,000 decoded images in memory (under 256 MB decoded) and streams the
40,000 (`cache: none`), so the difference may even be negative. Usage:

    python bench/data_memory.py [--counts 4000 40000] [--epochs 1] [--dir FOLDER]

`--dir` keeps the image folders (and reuses them on the next run); by default they are
written into a temporary folder and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from image_folder import SIZE, folder_bytes, write_image_folder

LIMIT_MB = 300.0

SPEC = """\
version: 1
name: bench-images
seed: 7
data:
  source: {{images: {{directory: {directory}, image_size: [{size}, {size}]}}}}
  validation_split: 0.1
  cache: {cache}
model:
  layers:
    - input: {{shape: [{size}, {size}, 3]}}
    - rescaling: 0.00392156862745098
{layers}
train:
  epochs: {epochs}
  batch_size: {batch_size}
  optimizer: adam
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
tracking:
  log_model: false
"""


MODELS = {
    # conv/pool twice, dense: each step waits on its compute more than on the images.
    "heavy": """\
    - conv2d: {filters: 16, kernel_size: 3, activation: relu}
    - max_pooling2d: 2
    - conv2d: {filters: 32, kernel_size: 3, activation: relu}
    - max_pooling2d: 2
    - flatten
    - dense: {units: 64, activation: relu}
    - dense: {units: 10, activation: softmax}""",
    # a strided convolution, pooling, a second convolution, global average pooling, dense:
    # a step takes less than decoding its batch on 2 cores (as any model on a GPU).
    "light": """\
    - conv2d: {filters: 16, kernel_size: 3, strides: 2, activation: relu}
    - max_pooling2d: 2
    - conv2d: {filters: 32, kernel_size: 3, activation: relu}
    - global_average_pooling2d
    - dense: {units: 10, activation: softmax}""",
}
"""The layers after the input and its rescaling, by name (`--model`)."""


def write_spec(
    path: Path, directory: Path, epochs: int, batch_size: int, cache: str, model: str = "heavy"
) -> Path:
    """The benchmark's spec, training `model` (a name of `MODELS`) on `directory`."""
    path.write_text(
        SPEC.format(
            directory=directory,
            size=SIZE,
            epochs=epochs,
            batch_size=batch_size,
            cache=cache,
            layers=MODELS[model],
        )
    )
    return path


def peak_train(spec: Path, store: Path) -> dict:
    """Run `python -m dlx train SPEC`; its peak resident memory (MB), wall time, and cache."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{store}", COLUMNS="200")
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "dlx", "train", str(spec)],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read()
    if process.returncode != 0:
        sys.exit(f"dlx train {spec} exited {process.returncode}:\n{text[-3000:]}")
    cache = re.search(r"cache: (\w+)", text)
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: kilobytes
        "wall_s": round(time.perf_counter() - started, 1),
        "cache": cache.group(1) if cache else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs=2, default=[4000, 40000])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache", default="auto", help="data.cache of the spec (auto)")
    parser.add_argument("--dir", type=Path, help="keep the image folders here (and reuse them)")
    args = parser.parse_args()

    folder = args.dir or Path(tempfile.mkdtemp(prefix="dlx-memory-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        results = {}
        for count in args.counts:
            started = time.perf_counter()
            images = write_image_folder(folder / f"images-{count}", count)
            megabytes = folder_bytes(images) / 2**20
            print(
                f"{count} images: {megabytes:.0f} MB on disk "
                f"(ready in {time.perf_counter() - started:.0f}s)",
                flush=True,
            )
            with tempfile.TemporaryDirectory() as run_folder:
                spec = write_spec(
                    Path(run_folder) / "bench.yaml",
                    images,
                    args.epochs,
                    args.batch_size,
                    args.cache,
                )
                result = peak_train(spec, Path(run_folder) / "mlflow.db")
            result["disk_mb"] = round(megabytes, 1)
            results[count] = result
            print(
                f"{count} images: peak {result['peak_rss_mb']:.0f} MB resident, "
                f"cache: {result['cache']}, {result['wall_s']:.0f}s",
                flush=True,
            )
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    small, large = (results[count] for count in args.counts)
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    print(
        json.dumps(
            {
                "counts": args.counts,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "runs": {str(count): result for count, result in results.items()},
                "growth_mb": round(growth, 1),
                "limit_mb": LIMIT_MB,
                "within_limit": growth <= LIMIT_MB,
            }
        )
    )


if __name__ == "__main__":
    main()
