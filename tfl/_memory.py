"""The one memory budget for what tfl keeps of a dataset between passes.

Three things grow with the number of images: the decoded images (`Split.dataset`'s
cache), the pooled features of stage 1 and the activations at stage 2's cut
(`ActivationStore`). Each is kept in memory only while it fits this budget;
beyond it, decoded images are decoded again each pass (from the files, in
parallel) and features and activations are written to the run folder and
streamed from there. So a dataset 16 times larger costs 16 times the time, not
16 times the memory (`benchmarks/scale.py` measures both).

The budget is `BUDGET_BYTES` (512 MiB: a process training a small backbone
holds about 1 GB without it), or `TFL_MEMORY_MB` megabytes when set;
`TFL_FEATURE_MEMORY_MB`, its older name, is still read. Half of it is for
decoded images (a quarter per split), half for features and activations.
Decoded images matter least: the feature pass decodes each image once for
all its copies, so the cache only saves decoding in later passes.
"""

from __future__ import annotations

import os

BUDGET_BYTES = 512 * 1024**2
# Arrays kept in memory for training cost about three times their size: the NumPy arrays, tf.data's copy
# of them (`from_tensor_slices`), and a shuffle buffer as large as the split (measured: 189 MB of
# activations raised the peak by about 560 MB).
IN_MEMORY_COPIES = 3
_VARIABLES = ("TFL_MEMORY_MB", "TFL_FEATURE_MEMORY_MB")


def images_bytes() -> int:
    """Bytes of decoded images one split may keep in memory (a quarter of the budget)."""
    return budget_bytes() // 4


def arrays_bytes() -> int:
    """Bytes of features and activations an `ActivationStore` may keep in memory (half of the budget)."""
    return budget_bytes() // 2


def budget_bytes() -> int:
    """Bytes of data-sized arrays tfl may keep in memory, all kinds together.

    Raises:
        UsageError: the variable is set to something that is not a number.

    Examples:
        >>> os.environ["TFL_MEMORY_MB"] = "64"
        >>> budget_bytes(), arrays_bytes()
        (67108864, 33554432)
    """
    for name in _VARIABLES:
        text = os.environ.get(name, "").strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if value < 0 or value != value:
            from tfl.errors import UsageError

            raise UsageError(f"{name}='{text}' is not a number of megabytes: set it to e.g. 512, or unset it")
        return int(value * 1024**2)
    return BUDGET_BYTES
