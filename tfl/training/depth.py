"""How deep stage 2 unfreezes (`--unfreeze auto`, the default), decided in the run from the user's data.

A backbone's top blocks turn generic features into ImageNet-specific ones. On
photos like ImageNet's they are worth keeping, and retraining them on a few
hundred images only loses what they know (hymenoptera: the top 2 blocks give
0.889, the top 8 blocks 0.856, below stage 1's 0.863). Where the domain moves
away from ImageNet (aerial photos, say), the features *below* the top blocks
classify the new data about as well as the ones higher up (rsscn7: a linear
probe on the pooled output 6 blocks down scores 0.839, 2 blocks down 0.848),
so the blocks in between add nothing for this data and retraining them pays
(rsscn7: 2 blocks 0.839, 4 blocks 0.853, 8 blocks 0.862).

The decision measures exactly that, cheaply, before stage 1: one pass of the
frozen backbone over the plain training and validation images (a class-
balanced subsample of a large training split) gives the pooled final features
and the pooled activations at each candidate cut (2 blocks, about a quarter
and about half of the blocks from the top); a linear probe on each is scored
on the validation split. Stage 2 unfreezes down to the deepest candidate cut
whose probe scores within `TOLERANCE` of the features above it (the 2-block
cut's, or the final features' when they are about as wide; see `choose`), and
never less than 2 blocks. It costs one forward pass and a few small logistic
regressions; the seconds are printed and recorded with the choice.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import numpy as np

# A cut whose features score within this of the final features' probe means the blocks above it add
# little for this data. 3 points: below it, hymenoptera's 2-block cut (-2.7) stays the shallow choice.
TOLERANCE = 0.03
# Final features wider than this times the 2-block cut are not compared with the cuts (see `choose`).
WIDTH_RATIO = 2
# The name of this decision in the run's state.json and metrics.json ("decisions").
DECISION = "stage 2 depth"
MIN_BLOCKS = 2
# Enough images per class for a stable probe; more only cost forward passes.
PROBE_IMAGES_PER_CLASS = 200


@dataclasses.dataclass
class DepthDecision:
    """What `decide_depth` chose and why.

    Args:
        unfreeze: the chosen `--unfreeze` value (`Nblocks`).
        scores: probe accuracy on val per cut (`top` for the final features,
            `Nblocks` for the pooled activations at that cut).
        why: the reason in one line.
        seconds: what the decision cost.
        num_train, num_val: images the probes were trained and scored on.
    """

    unfreeze: str
    scores: typing.Dict[str, float]
    why: str
    seconds: float
    num_train: int
    num_val: int

    def describe(self) -> dict:
        return {"chosen": f"--unfreeze {self.unfreeze}", "why": self.why, "seconds": round(self.seconds, 2),
                "probe_val_accuracy": self.scores, "probe_images": {"train": self.num_train, "val": self.num_val}}


def candidate_blocks(num_blocks: int) -> typing.List[int]:
    """Cuts to compare, in blocks from the top: 2, about a quarter and about half of the backbone.

    Examples:
        >>> candidate_blocks(14)  # MobileNet v1
        [2, 4, 7]
        >>> candidate_blocks(18)  # MobileNetV2
        [2, 4, 9]
    """
    wanted = {MIN_BLOCKS, round(num_blocks / 4), num_blocks // 2}
    return sorted(k for k in wanted if MIN_BLOCKS <= k < num_blocks)


def choose(scores: typing.Dict[str, float], candidates: typing.Sequence[int], tolerance: float = TOLERANCE,
           widths: typing.Optional[typing.Dict[str, int]] = None) -> typing.Tuple[str, str]:
    """(`--unfreeze` value, reason) from the probes' validation accuracies.

    Stage 2 always trains the top `MIN_BLOCKS` blocks, so the question is
    only whether to go deeper: a deeper cut whose features classify the data
    about as well as the features above it means the blocks in between add
    nothing for this data, and are retrained too. "Above it" is the best of
    the `MIN_BLOCKS` cut and the final features, except where the final
    features are more than `WIDTH_RATIO` times wider than that cut (e.g.
    MobileNetV2's 1280 channels against 56 at its 2-block cut): a linear
    probe favours width, so there only the cuts are compared.

    Args:
        scores: probe accuracy on val: `top` and `Nblocks` per candidate.
        candidates: the candidate cuts, in blocks from the top, ascending.
        tolerance: how far below the reference a cut may score.
        widths: feature widths with the same keys (None: all comparable).

    Examples:
        >>> choose({"top": 0.85, "2blocks": 0.82, "4blocks": 0.817, "7blocks": 0.79}, [2, 4, 7])[0]
        '2blocks'
        >>> choose({"top": 0.84, "2blocks": 0.85, "4blocks": 0.835, "7blocks": 0.83}, [2, 4, 7])[0]
        '7blocks'
    """
    shown = ", ".join(f"{k} blocks down {scores[f'{k}blocks']:.3f}" for k in candidates)
    probes = f"linear probes on val: final features {scores['top']:.3f}" + (f", {shown}" if shown else "")
    if not candidates:
        return f"{MIN_BLOCKS}blocks", f"no deeper cut to compare ({probes})"
    first = f"{candidates[0]}blocks"
    reference, against = scores[first], f"{candidates[0]} blocks down"
    fair = widths is None or widths["top"] <= WIDTH_RATIO * widths[first]
    if fair and scores["top"] > reference:
        reference, against = scores["top"], "the final features"
    close = [k for k in candidates if scores[f"{k}blocks"] >= reference - tolerance]
    deepest = max(close, default=candidates[0])
    if deepest == candidates[0]:
        why = (f"features deeper down classify this data worse than {against} ({probes}): the blocks in "
               f"between are worth keeping; fine-tune the top {candidates[0]}")
    else:
        why = (f"features {deepest} blocks down classify this data about as well as {against} ({probes}; "
               f"within {tolerance:.2f}): the blocks in between add little here; retrain the top {deepest}")
    return f"{deepest}blocks", why


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                   seed: int = 0) -> float:
    """Validation accuracy of a linear (logistic-regression) probe on standardised features.

    The L2 strength is the best of three on the validation split, the same
    way for every cut compared, so the comparison between cuts is fair.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    tx, vx = (train_x - mean) / std, (val_x - mean) / std
    best = 0.0
    for c in (0.01, 0.1, 1.0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # 300 iterations are plenty for a ranking
            clf = LogisticRegression(C=c, max_iter=300, random_state=seed).fit(tx, train_y)
        best = max(best, float(np.mean(clf.predict(vx) == val_y)))
    return best


def balanced_subsample(split, per_class: int, seed: int):
    """At most `per_class` images of each class of a path-based split (seeded); other splits as they are."""
    import random

    from tfl.data.splits import Split

    if not split.paths or max(np.bincount(np.asarray(split.labels, dtype=int))) <= per_class:
        return split
    rng = random.Random(seed)
    by_class: dict = {}
    for path, label in zip(split.paths, split.labels):
        by_class.setdefault(int(label), []).append(path)
    paths, labels = [], []
    for label in sorted(by_class):
        items = sorted(by_class[label])
        rng.shuffle(items)
        paths += items[:per_class]
        labels += [label] * len(items[:per_class])
    return Split(split.name, labels, paths)


def probe_model(model, backbone, block_ids: typing.Sequence[int], candidates: typing.Sequence[int]):
    """image -> [pooled final features, pooled activations at each candidate cut], sharing `model`'s layers."""
    import keras

    from tfl import _compat
    from tfl.options import Unfreeze

    cuts = []
    for k in candidates:
        first = min(Unfreeze.parse(f"{k}blocks").layer_indices(len(backbone.layers), block_ids))
        tensors = _compat.layer_input_tensors(backbone.layers[first])
        cuts.append(tensors[0])
    inner = keras.Model(backbone.input, [backbone.output, *cuts], name="probe_cuts")
    image = keras.Input(model.input_shape[1:], name="image")
    outs = inner(model.get_layer("preprocess")(image), training=False)
    pooled = [keras.layers.GlobalAveragePooling2D()(t) for t in outs]
    return keras.Model(image, pooled, name="probe_features")


def decide_depth(model, backbone, block_ids, data, image_size: int, batch_size: int, seed: int) -> DepthDecision:
    """Measures the probes and returns the decision (see the module docstring).

    Args:
        model: the tfl classifier (its backbone frozen, ImageNet weights).
        backbone: its backbone.
        block_ids: block index of each backbone layer.
        data: the run's `ImageData` (single-label).
        image_size, batch_size: of the run.
        seed: seed of the subsample and the probes.
    """
    import tensorflow as tf

    from tfl._progress import Progress

    key = (model.get_layer("preprocess").backbone, image_size, data.train.fingerprint(), data.val.fingerprint(),
           seed, tuple(w.path for w in backbone.weights[:1]), float(np.sum(backbone.weights[0].numpy())))
    if key in _DECIDED:  # a search's trials on the same data and backbone measure once
        return dataclasses.replace(_DECIDED[key], seconds=0.0)
    t0 = time.time()
    num_blocks = max(block_ids) + 1
    candidates = candidate_blocks(num_blocks)
    features = probe_model(model, backbone, block_ids, candidates)
    fn = tf.function(lambda x: features(x, training=False), autograph=False)
    train = balanced_subsample(data.train, PROBE_IMAGES_PER_CLASS, seed)

    def run(split, progress):
        outs, labels = [], []
        for x, y in split.dataset(image_size, batch_size):
            outs.append([np.asarray(v) for v in fn(x)])
            labels.append(np.asarray(y))
            progress.update(len(labels[-1]))
        return [np.concatenate(parts) for parts in zip(*outs)], np.concatenate(labels)

    with Progress("depth probes (frozen backbone at candidate cuts)", len(train) + len(data.val)) as progress:
        tr, ytr = run(train, progress)
        va, yva = run(data.val, progress)
    names = ["top"] + [f"{k}blocks" for k in candidates]
    scores = {name: round(probe_accuracy(a, ytr, b, yva, seed), 4) for name, a, b in zip(names, tr, va)}
    widths = {name: int(a.shape[1]) for name, a in zip(names, tr)}
    unfreeze, why = choose(scores, candidates, widths=widths)
    _DECIDED[key] = DepthDecision(unfreeze, scores, why, time.time() - t0, len(ytr), len(yva))
    return _DECIDED[key]


_DECIDED: typing.Dict[tuple, DepthDecision] = {}


def resolve(run, cfg, model, backbone, block_ids, data, image_size: int):
    """`--unfreeze auto` for a run: (its config with the depth decided, the decision's record).

    The record is kept in the run's state.json, so a resumed run goes on with
    the same depth without measuring again (and in metrics.json by the
    trainer); config.json keeps `auto`, what the user asked for. Runs without
    a stage 2, and multi-label data (the probes score single-label data),
    get `MIN_BLOCKS` without measuring.
    """
    from tfl._logging import log
    from tfl.config import TrainConfig

    state = run.read_state()
    decided = (state.get("decisions") or {}).get(DECISION)
    if decided is None:
        if cfg.model.weights is None or not cfg.stage2.epochs:
            decided = {"chosen": f"--unfreeze {MIN_BLOCKS}blocks", "why": "no stage 2 to decide for", "seconds": 0.0}
        elif data.multi_label:
            decided = {"chosen": f"--unfreeze {MIN_BLOCKS}blocks", "seconds": 0.0,
                       "why": "multi-label data: the depth probes score single-label data only"}
        else:
            decision = decide_depth(model, backbone, block_ids, data, image_size, cfg.data.batch_size, cfg.seed)
            decided = decision.describe()
            log.info(f"stage 2 depth (--unfreeze auto): {decision.unfreeze}, decided in {decision.seconds:.1f}s: "
                     f"{decision.why}")
        state.setdefault("decisions", {})[DECISION] = decided
        run.write_state(state)
    resolved = TrainConfig.from_dict(cfg.to_dict())
    resolved.stage2.unfreeze = decided["chosen"].split()[-1]
    return resolved, decided
