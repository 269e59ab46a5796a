"""The images and text sources, read from real folders the tests write."""

from pathlib import Path

import numpy as np
from PIL import Image

from dlx.data import call_source
from tests.data.sources.helpers import decoded, source_error


def write_images(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> None:
    rng = np.random.default_rng(0)
    for class_name, class_sizes in sizes.items():
        (root / class_name).mkdir(parents=True)
        for number, (width, height) in enumerate(class_sizes):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / class_name / f"{number}.png")


def test_images(context):
    write_images(context.base_dir / "pets", {"dog": [(10, 12), (7, 7)], "cat": [(5, 9)]})
    (context.base_dir / "pets" / "cat" / "notes.txt").write_text("not an image")
    component = {"images": {"directory": "pets", "image_size": [6, 4]}}
    data = call_source(component, context)
    x, y = decoded(data)
    assert x.shape == (3, 6, 4, 3) and x.dtype == np.float32
    assert x.max() > 1.0 and x.max() <= 255.0
    assert data.class_names == ["cat", "dog"]
    assert list(y) == [0, 1, 1]


def test_images_in_grayscale(context):
    write_images(context.base_dir / "pets", {"dog": [(4, 4)], "cat": [(4, 4)]})
    component = {"images": {"directory": "pets", "image_size": [4, 4], "color_mode": "grayscale"}}
    assert decoded(call_source(component, context))[0].shape == (2, 4, 4, 1)


def test_images_bad_color_mode(context):
    error = source_error({"images": {"directory": "pets", "color_mode": "RGB"}}, context)
    assert error.message == (
        "expected color_mode to be one of rgb, grayscale, rgba. Received: color_mode='RGB'"
    )
    assert error.path == ("images", "color_mode")


def test_images_without_class_folders(context):
    (context.base_dir / "pets").mkdir()
    error = source_error({"images": "pets"}, context)
    assert error.message == "no class sub-folders in pets: expected one sub-folder per class"


def test_text(context):
    for class_name, texts in {"pos": ["good", "great"], "neg": ["bad"]}.items():
        (context.base_dir / "reviews" / class_name).mkdir(parents=True)
        for number, text in enumerate(texts):
            (context.base_dir / "reviews" / class_name / f"{number}.txt").write_text(text)
    data = call_source({"text": "reviews"}, context)
    x, y = decoded(data)
    assert list(x) == [b"bad", b"good", b"great"]
    assert list(y) == [0, 1, 1]
    assert data.class_names == ["neg", "pos"]


def test_text_missing_directory(context):
    error = source_error({"text": {"directory": "reviews"}}, context)
    assert error.message == f"no such directory: reviews (relative to {context.base_dir})"
    assert error.path == ("text", "directory")


def test_truncated_image_is_named(context, monkeypatch):
    monkeypatch.chdir(context.base_dir)
    write_images(context.base_dir / "pets", {"dog": [(16, 16)], "cat": [(16, 16)]})
    image = context.base_dir / "pets" / "dog" / "0.png"
    image.write_bytes(image.read_bytes()[:-40])
    error = source_error({"images": {"directory": "pets", "image_size": [8, 8]}}, context)
    assert error.message.startswith(f"could not read image {Path('pets', 'dog', '0.png')}: ")
    assert "truncated" in error.message
    assert error.path == ("images", "directory")
