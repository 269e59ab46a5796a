"""Write scikit-learn's digits as a folder of PNG images, one sub-folder per class, offline.

The 1,797 digits (8x8 pixels, 17 grey levels) bundled with scikit-learn are scaled to 0..255
and enlarged to 32x32 (bicubic), then saved as `OUT/0/0000.png` ... `OUT/9/1796.png`: the
layout the `images` source reads. Usage:

    python make_digits_folder.py [OUT] [--limit N]

OUT defaults to `digits/` beside this script (where `spec.yaml` looks); `--limit` keeps the
first N digits (a quick folder for tests).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

SIZE = 32


def write_digits(out: Path, limit: int | None = None) -> int:
    """Save the digits as PNG files in class folders under `out`; return how many."""
    digits = load_digits()
    images, labels = digits.images[:limit], digits.target[:limit]
    for label in range(10):
        (out / str(label)).mkdir(parents=True, exist_ok=True)
    for number, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        image = Image.fromarray((pixels * 255 / 16).round().astype(np.uint8), mode="L")
        image.resize((SIZE, SIZE), Image.BICUBIC).save(out / str(label) / f"{number:04d}.png")
    return len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path(__file__).parent / "digits")
    parser.add_argument("--limit", type=int, help="only the first N digits")
    args = parser.parse_args()
    count = write_digits(args.out, args.limit)
    print(f"wrote {count} images into {args.out}")


if __name__ == "__main__":
    main()
