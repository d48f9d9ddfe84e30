"""Block boundaries of each backbone family: which block every layer of a backbone belongs to.

`--unfreeze Nblocks`, gradual unfreezing, layer groups and the depth probes all
cut a backbone between blocks; the rules here find them from the layer names
Keras gives each family (or, for Inception, from the layers that close a block).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras


# Start rules map a layer name to a sortable key (or None: "same block as the
# layer before"). End rules match the layer that closes a block, for families
# (Inception) whose inner layers carry only auto-generated names.

def _rx(pattern: str):
    regex = re.compile(pattern)

    def key(name: str):
        m = regex.search(name)
        # A missing optional index (V2/V3 "expanded_conv") sorts first.
        return m and tuple(-1 if g is None else int(g) for g in m.groups())
    return key


def _convnext_key(name: str):
    m = re.search(r"stage_(\d+)_block_(\d+)_", name)
    if m:
        return (int(m[1]), int(m[2]))
    # Downsampling layer k opens stage k + 1, before its block 0.
    m = re.search(r"downsampling_block_(\d+)$", name)
    return m and (int(m[1]) + 1, -1)


def _nasnet_key(name: str):
    # Cells: stem_1, stem_2, normal 0..N-1, reduce_N, normal N+1..2N,
    # reduce_2N, ...; reduce_k follows normal k, hence k + 0.5. adjust_*
    # layers prepare the next cell's input but sit inside the previous one.
    m = not name.startswith("adjust_") and re.match(
        r"^(?:separable_conv_\d_(?:bn_|pad_)?)?"
        r"(?:normal|reduction)_\w*?_(stem_|reduce_)?(\d+)$", name)
    if not m:
        return None
    k = int(m.group(2))
    return ((k - 3.0) if m.group(1) == "stem_" else
            (k + 0.5) if m.group(1) else float(k),)


_START_RULES = {
    "mobilenet": _rx(r"^conv_(?:dw|pw|pad)_(\d+)"),
    "mobilenet_v2": _rx(r"^(?:expanded_conv|block)_(?:(\d+)_)?"),
    "mobilenet_v3": _rx(r"^expanded_conv_(?:(\d+)_)?"),
    # EfficientNet "block<stage><letter>_": one block per stage.
    **dict.fromkeys(("efficientnet", "efficientnet_v2"),
                    _rx(r"^block(\d+)(?!\d)")),
    **dict.fromkeys(("resnet", "resnet_v2", "densenet"),
                    _rx(r"^conv(\d+)_block(\d+)_")),
    # Downsampling layer k opens stage k + 1, before its block 0.
    "convnext": _convnext_key,
    # Xception's block1 is the stem.
    "xception": _rx(r"^block([2-9]|\d\d+)_"),
    "vgg": _rx(r"^block(\d+)_"),
    "nasnet": _nasnet_key,
}

_END_RULES = {
    "inception_v3": re.compile(r"^mixed\d+$"),
    "inception_resnet_v2": re.compile(r"^(?:mixed_\w+|block\d+_\d+_ac)$"),
}


def block_ids_of(family: str, backbone: "keras.Model") -> list[int]:
    """Assigns a block index to every layer of ``backbone.layers``.

    Index 0 is the input/stem; indices never decrease along the layer list and
    are contiguous, so "the top N blocks" are those with
    ``id >= num_blocks - N``. Layers whose name matches no rule belong to the
    block of the layer before (tail layers join the last block).
    """
    layers = backbone.layers
    names = [layer.name for layer in layers]
    if family in _END_RULES:
        ends = [bool(_END_RULES[family].match(n)) for n in names]
        first = ends.index(True) if any(ends) else len(names)
        # The stem ends at its last max-pooling, right before the first module.
        pools = [i for i in range(first)
                 if type(layers[i]).__name__ == "MaxPooling2D"]
        if pools:
            ends[pools[-1]] = True
        ids, current = [], 0
        for is_end in ends:
            ids.append(current)
            current += is_end
        return _dense(ids)
    rule = _START_RULES[family]
    keys, running = [], (-math.inf,)
    for n in names:
        k = rule(n)
        if k is not None and k > running:
            running = k
        keys.append(running)
    return _dense(keys)


def _dense(keys: list) -> list[int]:
    rank = {k: i for i, k in enumerate(sorted(set(keys)))}
    return [rank[k] for k in keys]
