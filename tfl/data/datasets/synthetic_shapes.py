"""`tfl_shapes`: a tiny, offline, procedurally generated image dataset.

The builder draws RGB "photo-like" images of simple shapes (circle, square,
triangle, star) with random position, size, colour and rotation on top of a
noisy, textured background. Nothing is downloaded: every example is generated
from a fixed seed, so two preparations give byte-identical records.

Usage::

    import tensorflow_datasets as tfds
    import tfl.data.datasets  # registers the builder

    builder = tfds.builder("tfl_shapes", data_dir=data_dir)
    builder.download_and_prepare()  # a few seconds, no network
    ds = tfds.load("tfl_shapes", split="train", data_dir=data_dir,
                   download=False, as_supervised=True)

Importing this module registers the builder with tfds under ``tfl_shapes``
(registration happens on class definition). Import it through
``tfl.data.datasets`` only: importing the same file under a second module name
(e.g. running it as ``__main__``) would try to register the name twice.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw, ImageFilter

CLASS_NAMES = ("circle", "square", "triangle", "star")

# Base seed of the whole dataset; each split has its own stream and each
# example its own generator derived from (seed, split, index).
_BASE_SEED = 20240601
_SPLIT_SEEDS = {"train": 0, "validation": 1}


@dataclasses.dataclass
class TflShapesConfig(tfds.core.BuilderConfig):
    """Config: image side length and number of examples per split."""

    image_size: int = 96
    train_size: int = 320
    validation_size: int = 96


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured float32 background in [0, 255], shape (size, size, 3)."""
    # Two random base colours blended along a random direction (gradient).
    c0 = rng.uniform(20, 235, size=3)
    c1 = np.clip(c0 + rng.normal(0, 60, size=3), 0, 255)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    angle = rng.uniform(0, 2 * math.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]

    # Low-frequency colour blotches: a coarse random grid upsampled smoothly.
    coarse_n = int(rng.integers(3, 7))
    coarse = rng.normal(0, rng.uniform(10, 35), size=(coarse_n, coarse_n, 3))
    coarse_img = Image.fromarray(
        np.clip(coarse + 128, 0, 255).astype(np.uint8)
    ).resize((size, size), Image.BICUBIC)
    img = img + (np.asarray(coarse_img, np.float32) - 128)

    # Distractor strokes: a few random thin lines and arcs (not class shapes).
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 6))):
        p = rng.uniform(-0.1 * size, 1.1 * size, size=4).tolist()
        col = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.line(p, fill=col, width=int(rng.integers(1, 3)))
        else:
            box = [min(p[0], p[2]), min(p[1], p[3]), max(p[0], p[2]) + 1,
                   max(p[1], p[3]) + 1]
            start = float(rng.uniform(0, 360))
            draw.arc(box, start, start + float(rng.uniform(30, 120)), fill=col,
                     width=1)
    return np.asarray(canvas, np.float32)


def _shape_points(label: int, cx: float, cy: float, r: float,
                  rot: float) -> list[tuple[float, float]] | None:
    """Polygon vertices for the class (None for the circle)."""
    name = CLASS_NAMES[label]
    if name == "circle":
        return None
    if name == "square":
        angles = [rot + math.pi / 4 + k * math.pi / 2 for k in range(4)]
        radii = [r] * 4
    elif name == "triangle":
        angles = [rot - math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
        radii = [r * 1.1] * 3
    elif name == "star":
        angles = [rot - math.pi / 2 + k * math.pi / 5 for k in range(10)]
        radii = [r * 1.1 if k % 2 == 0 else r * 0.45 for k in range(10)]
    else:  # pragma: no cover
        raise ValueError(name)
    return [(cx + rr * math.cos(a), cy + rr * math.sin(a))
            for a, rr in zip(angles, radii)]


def make_image(label: int, rng: np.random.Generator,
               size: int = 96) -> np.ndarray:
    """Draws one uint8 (size, size, 3) image of class `label`."""
    bg = _background(rng, size)

    # Shape geometry (drawn at 4x and downsampled for anti-aliasing).
    ss = 4
    r = rng.uniform(0.16, 0.34) * size
    margin = r * 1.1 + 1
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    rot = rng.uniform(0, 2 * math.pi)

    # Shape colour: random, but pushed away from the local background colour.
    local = bg[int(cy), int(cx)]
    col = rng.uniform(0, 255, size=3)
    if np.linalg.norm(col - local) < 110:
        col = np.where(local > 127, local - rng.uniform(90, 140, size=3),
                       local + rng.uniform(90, 140, size=3))
    col = np.clip(col, 0, 255)

    mask = Image.new("L", (size * ss, size * ss), 0)
    mdraw = ImageDraw.Draw(mask)
    pts = _shape_points(label, cx * ss, cy * ss, r * ss, rot)
    if pts is None:
        mdraw.ellipse([(cx - r) * ss, (cy - r) * ss, (cx + r) * ss,
                       (cy + r) * ss], fill=255)
    else:
        mdraw.polygon(pts, fill=255)
    mask = mask.resize((size, size), Image.LANCZOS)
    alpha = np.asarray(mask, np.float32)[..., None] / 255.0

    # Shading across the shape so it is not a flat colour.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shade_dir = rng.uniform(0, 2 * math.pi)
    shade = ((xx - cx) * math.cos(shade_dir) + (yy - cy) * math.sin(shade_dir))
    shade = 1.0 + rng.uniform(0.1, 0.35) * shade / max(r, 1.0)
    fg = np.clip(col * shade[..., None], 0, 255)

    img = bg * (1 - alpha) + fg * alpha

    # Slight blur plus sensor-like noise.
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    blur = float(rng.uniform(0.0, 0.8))
    if blur > 0.2:
        pil = pil.filter(ImageFilter.GaussianBlur(blur))
    img = np.asarray(pil, np.float32)
    img = img + rng.normal(0, rng.uniform(3, 12), size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def generate_split(split: str, num: int, size: int):
    """Yields (key, label, image) deterministically for `split`."""
    split_seed = _SPLIT_SEEDS[split]
    label_rng = np.random.default_rng([_BASE_SEED, split_seed])
    # Balanced labels, deterministic order.
    labels = np.arange(num) % len(CLASS_NAMES)
    label_rng.shuffle(labels)
    for i in range(num):
        rng = np.random.default_rng([_BASE_SEED, split_seed, i])
        label = int(labels[i])
        yield f"{split}_{i:06d}", label, make_image(label, rng, size)


class TflShapes(tfds.core.GeneratorBasedBuilder):
    """Synthetic shapes (circle/square/triangle/star) on textured backgrounds."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        TflShapesConfig(
            name="default",
            description="96x96 RGB, 320 train / 96 validation images.",
            image_size=96, train_size=320, validation_size=96,
        ),
        TflShapesConfig(
            name="small",
            description="64x64 RGB, 160 train / 48 validation images.",
            image_size=64, train_size=160, validation_size=48,
        ),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "default"

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        return self.dataset_info_from_configs(
            description=(
                "Procedurally generated RGB images of simple shapes "
                f"({', '.join(CLASS_NAMES)}) with random position, size, "
                "colour and rotation on noisy textured backgrounds. "
                "Generated offline from a fixed seed (no download)."
            ),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(
                    shape=(size, size, 3), dtype=np.uint8,
                    encoding_format="jpeg"),
                "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
            }),
            supervised_keys=("image", "label"),
            homepage=None,
            citation=None,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        cfg = self.builder_config
        return {
            "train": self._generate_examples("train", cfg.train_size),
            "validation": self._generate_examples(
                "validation", cfg.validation_size),
        }

    def _generate_examples(self, split: str, num: int):
        size = self.builder_config.image_size
        for key, label, image in generate_split(split, num, size):
            yield key, {"image": image, "label": label}
