"""A folder of 64x64 PNG images in 10 class folders, for the streaming benchmarks.

Each image is a smooth random field (4x4 colours, upsampled bicubically) tinted towards its
class's colour, plus pixel noise: it compresses like a small photo, about 11.7 KB a file (the
issue's folder: 470 MB for 40,000), and a CNN can learn the classes. The same `count` and
`seed` write the same files. A folder already holding `count` images is reused as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = 10
SIZE = 64
NOISE = 32.0  # pixel noise (standard deviation, levels): sets how well the PNGs compress


def write_image_folder(root: Path, count: int, seed: int = 0) -> Path:
    """Write `count` images into `root/class_0 .. root/class_9` (unless already there)."""
    from PIL import Image

    files = list(root.glob("class_*/*.png"))
    if len(files) == count:
        return root
    if files:
        raise SystemExit(f"{root} holds {len(files)} images, not {count}: give an empty --dir")
    rng = np.random.default_rng(seed)
    tints = rng.integers(0, 256, (CLASSES, 3))
    for label in range(CLASSES):
        (root / f"class_{label}").mkdir(parents=True, exist_ok=True)
    for number in range(count):
        label = number % CLASSES
        base = (rng.integers(0, 256, (4, 4, 3)) + tints[label]) // 2
        smooth = Image.fromarray(base.astype(np.uint8)).resize((SIZE, SIZE), Image.BICUBIC)
        pixels = np.asarray(smooth, np.float32) + rng.normal(0.0, NOISE, (SIZE, SIZE, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image.save(root / f"class_{label}" / f"{number:06d}.png")
    return root


def folder_bytes(root: Path) -> int:
    """The size of the folder's images on disk."""
    return sum(file.stat().st_size for file in root.glob("class_*/*.png"))
