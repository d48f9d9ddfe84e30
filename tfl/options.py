"""Option values parsed once: learning rates, unfreeze depths, data sources, which metrics are minimised.

Each setting the user writes as text (`--fine-tune-lr 1e-5..1e-3`, `--unfreeze 2blocks`,
`--data PATH`) has one parser here, returning a value type the rest of tfl reads; a bad
value is a one-line `ValueError` naming the option. `tfl.config` validates with these and
re-exports them. No TensorFlow, no tfl imports: the command line checks options with it
before anything heavy loads.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass


def is_minimized(metric: str) -> bool:
    """Whether a smaller value of `metric` is better (losses), the one place this is decided.

    Examples:
        >>> is_minimized("val_loss"), is_minimized("val_accuracy")
        (True, False)
    """
    return metric.endswith("loss")


@dataclass(frozen=True)
class LearningRate:
    """A parsed learning-rate setting: `fixed` (one rate), `auto` (the LR finder) or `range` (LOW..HIGH).

    Examples:
        >>> LearningRate.parse("1e-5..1e-3")
        LearningRate(kind='range', low=1e-05, high=0.001)
        >>> LearningRate.parse(3e-3).high
        0.003
    """

    kind: str
    low: typing.Optional[float] = None
    high: typing.Optional[float] = None

    @classmethod
    def parse(cls, value, name: str = "lr") -> "LearningRate":
        """Reads a number, `auto` or `LOW..HIGH`; `ValueError` with one line naming `name` otherwise."""
        forms = "a number such as 1e-3, auto, or a range such as 1e-5..1e-3"
        if isinstance(value, bool):
            raise ValueError(f"{name} '{value}' is not {forms}")
        if isinstance(value, (int, float)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
            return cls("fixed", float(value), float(value))
        text = str(value).strip().lower()
        if text == "auto":
            return cls("auto")
        try:
            if ".." in text:
                low, high = (float(v) for v in text.split(".."))
            else:
                return cls.parse(float(text), name)
        except ValueError as e:
            if "must be > 0" in str(e):
                raise
            raise ValueError(f"{name} '{value}' is not {forms}") from None
        if not 0 < low < high:
            raise ValueError(f"{name} range '{value}' needs 0 < LOW < HIGH")
        return cls("range", low, high)


def parse_lr(value, name: str = "lr") -> typing.Tuple[str, typing.Optional[float], typing.Optional[float]]:
    """`LearningRate.parse` as a tuple: `("fixed", lr, lr)`, `("auto", None, None)` or `("range", low, high)`.

    Examples:
        >>> parse_lr("1e-5..1e-3")
        ('range', 1e-05, 0.001)
    """
    lr = LearningRate.parse(value, name)
    return lr.kind, lr.low, lr.high


@dataclass(frozen=True)
class Unfreeze:
    """A parsed `unfreeze` setting: how much of the backbone stage 2 trains.

    `kind` is `all`, `none`, `layers` (`count` from the top), `fraction`
    (`fraction` of the layers, from the top) or `blocks` (`count` blocks
    from the top). Which layers that is depends on the backbone: see
    `layer_indices`.

    Examples:
        >>> Unfreeze.parse("2blocks")
        Unfreeze(kind='blocks', count=2, fraction=None)
        >>> Unfreeze.parse("30%").layer_indices(10, list(range(10)))
        [7, 8, 9]
    """

    kind: str
    count: typing.Optional[int] = None
    fraction: typing.Optional[float] = None

    FORMS = "auto, all, none, N layers, a fraction (0.3, 30%) or Nblocks"

    @classmethod
    def parse(cls, spec) -> "Unfreeze":
        """Reads `all`, `none`, `20`, `0.3`, `30%` or `2blocks`; `ValueError` with one line otherwise."""
        import re

        text = str(spec).strip().lower()
        if text == "all":
            return cls("all")
        if text == "auto":
            return cls("auto")
        if text in ("none", "0", ""):
            return cls("none")
        blocks = re.fullmatch(r"(\d+)\s*(blocks?|b)", text)
        if blocks:
            return cls("blocks", count=int(blocks.group(1)))
        try:
            if text.endswith("%"):
                fraction = float(text[:-1]) / 100
            elif "." in text:
                fraction = float(text)
            else:
                count = int(text)
                if count < 0:
                    raise ValueError
                return cls("layers", count=count)
        except ValueError:
            raise ValueError(f"--unfreeze '{spec}' is not {cls.FORMS}") from None
        if not 0 <= fraction <= 1:
            raise ValueError(f"--unfreeze {spec}: a fraction must be between 0 and 1")
        return cls("fraction", fraction=fraction)

    def layer_indices(self, num_layers: int, block_ids: typing.Sequence[int]) -> typing.List[int]:
        """Indices of the backbone's layers to unfreeze (of `num_layers`, with each layer's block id).

        Raises:
            ValueError: more layers or blocks than the backbone has (one line).
        """
        n = num_layers
        if self.kind == "auto":
            raise ValueError("--unfreeze auto is decided by the run (tfl.training.depth) before it picks layers")
        if self.kind == "all":
            return list(range(n))
        if self.kind == "none":
            return []
        if self.kind == "blocks":
            top = max(block_ids)
            if self.count > top + 1:
                raise ValueError(f"--unfreeze {self.count}blocks: the backbone has only {top + 1} blocks")
            return [i for i, b in enumerate(block_ids) if b > top - self.count]
        if self.kind == "layers":
            if self.count > n:
                raise ValueError(f"--unfreeze {self.count}: the backbone has {n} layers; use 0..{n} or 'all'")
            return list(range(n - self.count, n))
        k = round(n * self.fraction)
        return list(range(n - k, n))


SOURCE_KINDS = ("folder", "csv", "tfds")


def normalize_source(source: str) -> str:
    """A data source with its kind: an existing folder given without `folder:` is taken as `folder:PATH`.

    Examples:
        >>> normalize_source("tfds:beans")
        'tfds:beans'
    """
    import os

    text = str(source)
    kind = text.partition(":")[0]
    if kind in SOURCE_KINDS:
        return text
    if os.path.isdir(os.path.expanduser(text)):
        return f"folder:{text}"
    return text
