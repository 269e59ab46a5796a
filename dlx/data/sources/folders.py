"""The `images` and `text` sources: folders with one sub-folder per class and one example per
file, streamed (docs/spec.md section 3)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dlx.data.sources import (
    PROBED_FILES,
    FileStream,
    SourceContext,
    SourceData,
    SourceError,
    _resolve,
    _shape,
    register_source,
)
from dlx.errors import relative_path

if TYPE_CHECKING:
    import tensorflow as tf

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
"""The files the `images` source reads: those `keras.utils.image_dataset_from_directory` reads."""


def _class_folders(
    context: SourceContext, directory: str, extensions: tuple[str, ...], kind: str
) -> tuple[list[str], list[Path], np.ndarray]:
    """The files of a directory with one sub-folder per class, and their int32 class ids.

    Classes are the sub-folders in sorted order, as in `keras.utils.image_dataset_from_directory`;
    hidden ones (`.ipynb_checkpoints`) are skipped. Files are found at any depth of a class folder.
    """
    root = _resolve(context, directory, "directory", directory=True)
    class_names = sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not class_names:
        raise SourceError(
            f"no class sub-folders in {directory}: expected one sub-folder per class", "directory"
        )
    files: list[Path] = []
    labels: list[int] = []
    for class_id, class_name in enumerate(class_names):
        found = sorted(
            p
            for p in (root / class_name).rglob("*")
            if p.suffix.lower() in extensions and p.is_file()
        )
        files += found
        labels += [class_id] * len(found)
    if not files:
        raise SourceError(
            f"no {kind} files ({', '.join(extensions)}) in the class sub-folders of {directory} "
            f"({', '.join(class_names)})",
            "directory",
        )
    return class_names, files, np.array(labels, dtype=np.int32)


def _check_images(
    context: SourceContext,
    directory: str,
    image_size: list[int] | tuple[int, int] = (256, 256),
    color_mode: str = "rgb",
) -> tuple[tuple[int, ...], list[str], list[Path], np.ndarray]:
    """Check the arguments, and that the folder has class sub-folders of image files; the
    image size, and the class names, files and class ids (`_class_folders`)."""
    color_modes = ("rgb", "grayscale", "rgba")
    if color_mode not in color_modes:
        raise SourceError(
            f"expected color_mode to be one of {', '.join(color_modes)}. "
            f"Received: color_mode={color_mode!r}",
            "color_mode",
        )
    size = _shape(image_size, "image_size")
    if len(size) != 2:
        raise SourceError(
            f"expected image_size to be [height, width]. Received: image_size={image_size!r}",
            "image_size",
        )
    return (size, *_class_folders(context, directory, IMAGE_EXTENSIONS, "image"))


@register_source("images", check=_check_images)
def from_images(
    context: SourceContext,
    directory: str,
    image_size: list[int] | tuple[int, int] = (256, 256),
    color_mode: str = "rgb",
) -> SourceData:
    """Image files with one sub-folder per class, streamed: read as training reads them.

    As in `keras.utils.image_dataset_from_directory`: classes are the sub-folders in sorted
    order, and pixels stay float32 in 0..255 (add a `rescaling: 1/255` layer to the model).
    Images are decoded by TensorFlow in parallel and resized with bilinear interpolation as
    Pillow does it (antialiased when shrinking, rounded to whole levels: within one level of
    `keras.utils.load_img(..., interpolation="bilinear")`). Only the list of files is held in
    memory (see `data.cache`); a cache and the shuffle buffer hold the pixels as uint8 (whole
    levels: the same values in a quarter of the memory), widened to float32 as they leave it.

    Args:
        context: the spec's directory, for a relative `directory`.
        directory: the folder of class sub-folders.
        image_size: `[height, width]` every image is resized to.
        color_mode: `rgb` (3 channels), `grayscale` (1) or `rgba` (4).

    Example: `{images: {directory: data/flowers, image_size: [96, 96]}}`.
    """
    size, class_names, files, labels = _check_images(context, directory, image_size, color_mode)
    channels = {"rgb": 3, "grayscale": 1, "rgba": 4}[color_mode]

    def decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        import tensorflow as tf

        image = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False
        )
        image = tf.cond(
            tf.reduce_all(tf.equal(tf.shape(image)[:2], size)),
            lambda: image,
            lambda: _resized(image, size),
        )
        image.set_shape((*size, channels))
        return image, label

    def finish(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        import tensorflow as tf

        return tf.cast(image, tf.float32), label

    _probe_images(files[:PROBED_FILES], color_mode, context.on_error)
    root = _resolve(context, directory, "directory", directory=True)
    return SourceData(
        stream=FileStream(
            root=root,
            files=files,
            labels=labels,
            decode=decode,
            example_bytes=size[0] * size[1] * channels,
            finish=finish,
        ),
        class_names=class_names,
        description=f"{directory}: {len(files)} images in {len(class_names)} classes",
    )


def _resized(image: tf.Tensor, size: tuple[int, ...]) -> tf.Tensor:
    """An image's uint8 pixels resized as Pillow's bilinear filter resizes them, which dlx read
    images with before they streamed: widened when shrinking (antialias) and rounded to whole
    levels; within one level of it. An image of the size asked for is not resized: the filter
    would give back its own pixels (and take as long as the decoding)."""
    import tensorflow as tf

    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def _probe_images(files: list[Path], color_mode: str, on_error: str) -> None:
    """Read a few images whole, so that a folder of broken files fails before training starts,
    naming the file (a file found broken while training fails the run). With `on_error: skip`
    only a folder whose first images are all broken fails."""
    import keras

    broken = []
    for file in files:
        # Pillow reads pixels lazily: a truncated file fails in `img_to_array`, not `load_img`.
        # A broken file is an OSError, or for some formats a SyntaxError or ValueError.
        try:
            keras.utils.img_to_array(keras.utils.load_img(file, color_mode=color_mode))
        except (OSError, ValueError, SyntaxError) as error:
            broken.append(f"could not read image {relative_path(file)}: {error}")
            if on_error == "fail":
                raise SourceError(broken[0], "directory") from None
    if files and len(broken) == len(files):
        raise SourceError(
            f"none of the first {len(files)} images could be read ({broken[0]})", "directory"
        )


def _check_text(context: SourceContext, directory: str) -> tuple[list[str], list[Path], np.ndarray]:
    """Check that the folder has class sub-folders of `.txt` files (`_class_folders`)."""
    return _class_folders(context, directory, (".txt",), "text")


@register_source("text", check=_check_text)
def from_text(context: SourceContext, directory: str) -> SourceData:
    """Text files with one sub-folder per class, one `.txt` file per example, streamed.

    As in `keras.utils.text_dataset_from_directory`: classes are the sub-folders in sorted
    order. The inputs are the files' whole texts (string tensors, read by `tf.io.read_file`
    as training reads them), ready for a `text_vectorization` layer in the model. The first
    files are read when the source is read, to check that they are UTF-8.

    Args:
        context: the spec's directory, for a relative `directory`.
        directory: the folder of class sub-folders.

    Example: `{text: {directory: data/reviews}}` or `{text: data/reviews}`.
    """
    class_names, files, labels = _check_text(context, directory)
    for file in files[:PROBED_FILES]:
        try:
            file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise SourceError(
                f"{relative_path(file)} is not UTF-8 text: {error}", "directory"
            ) from None

    def decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        import tensorflow as tf

        return tf.io.read_file(path), label

    return SourceData(
        stream=FileStream(
            root=_resolve(context, directory, "directory", directory=True),
            files=files,
            labels=labels,
            decode=decode,
        ),
        class_names=class_names,
        description=f"{directory}: {len(files)} texts in {len(class_names)} classes",
    )
