"""Scoring a trained model.

Single-label models: accuracy, loss, per-class precision/recall/F1, confusion
matrix. Multi-label models: per-label precision/recall/F1 at each label's
decision threshold, micro and macro F1, mean average precision, exact-match
accuracy, and the per-label precision-recall curves; the thresholds are
chosen on the validation split when training ends (`choose_thresholds`) and
kept in the run folder (`thresholds.json`) and in exports.
"""

from __future__ import annotations

import typing

import numpy as np

from tfl.serving.prediction import load_model, predict_probabilities, run_thresholds  # noqa: F401 (public here too)

# Decision thresholds tried per label (0.05 steps): a coarse grid, so that a validation split of a few
# hundred images does not pick a threshold fitted to a handful of borderline images.
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
# Most points kept of a precision-recall curve in the JSON beside the report's figure.
PR_POINTS = 200


def classification_metrics(probs: np.ndarray, labels: np.ndarray, class_names: typing.Sequence[str]) -> dict:
    """Accuracy, cross-entropy, confusion matrix and per-class scores."""
    n = len(class_names)
    pred = probs.argmax(axis=1)
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (labels, pred), 1)
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], eps, 1.0))))
    per_class = {}
    for i, name in enumerate(class_names):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i].sum() if confusion[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(confusion[i].sum())}
    return {
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "loss": loss,
        "num_images": int(len(labels)),
        "class_names": list(class_names),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Average precision of one label: the mean of the precision at each positive, ranked by score.

    The step-wise sum over the distinct scores (sum of recall increments times
    precision), as scikit-learn's `average_precision_score`; NaN when no image
    has the label.

    Examples:
        >>> average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]))
        0.8333...
    """
    curve = pr_curve(scores, truth, max_points=None)
    if curve is None:
        return float("nan")
    recall, precision = np.asarray(curve["recall"]), np.asarray(curve["precision"])
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def pr_curve(scores: np.ndarray, truth: np.ndarray, max_points: typing.Optional[int] = PR_POINTS):
    """Precision and recall as the threshold falls past each image that has the label; None without positives.

    The points are those where recall rises (one per distinct score of a
    positive image), then the lowest threshold: the corners of the step curve
    that average precision sums, so drawing them loses nothing.

    Returns:
        `{"threshold": [...], "precision": [...], "recall": [...]}`, highest
        threshold first; thinned to about `max_points` points (the first and
        last kept) when there are more.
    """
    scores, truth = np.asarray(scores, np.float64), np.asarray(truth).astype(bool)
    if not truth.any():
        return None
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last image of each run of equal scores
    tp = np.cumsum(t)[last]
    precision, recall = tp / (last + 1), tp / tp[-1]
    keep = np.unique(np.r_[np.flatnonzero(np.diff(np.r_[0, tp])), len(last) - 1])
    if max_points and len(keep) > max_points:
        keep = keep[np.unique(np.linspace(0, len(keep) - 1, max_points).round().astype(int))]
    return {"threshold": s[last][keep].tolist(), "precision": precision[keep].tolist(),
            "recall": recall[keep].tolist()}


def _counts(pred: np.ndarray, truth: np.ndarray):
    """Per label (last axis of `pred`'s leading [N, C]): true positives, false positives, false negatives."""
    truth = truth.astype(bool)
    if pred.ndim == 3:
        truth = truth[..., None]
    tp = (pred & truth).sum(0)
    return tp, (pred & ~truth).sum(0), (~pred & truth).sum(0)


def _f1(tp, fp, fn):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)


def choose_thresholds(probs: np.ndarray, truth: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Per label, the threshold of `grid` with the best F1 on these images (ties: the one nearest 0.5).

    A label that no image has (nothing to fit) keeps 0.5.

    Examples:
        >>> choose_thresholds(np.array([[0.3], [0.2], [0.1]]), np.array([[1], [1], [0]])).tolist()
        [0.15]
    """
    probs, truth = np.asarray(probs, np.float64), np.asarray(truth).astype(bool)
    tp, fp, fn = _counts(probs[:, :, None] >= grid[None, None, :], truth)
    f1 = _f1(tp, fp, fn)  # [C, G]
    out = np.full(probs.shape[1], 0.5)
    for c in range(probs.shape[1]):
        if truth[:, c].any():
            best = np.flatnonzero(np.isclose(f1[c], f1[c].max()))
            out[c] = grid[best[np.argmin(np.abs(grid[best] - 0.5))]]
    return out


def multilabel_metrics(probs: np.ndarray, truth: np.ndarray, class_names: typing.Sequence[str],
                       thresholds: typing.Union[float, typing.Sequence[float]] = 0.5) -> dict:
    """What multi-label users read, at each label's decision threshold.

    Args:
        probs: sigmoid outputs [N, C].
        truth: multi-hot true labels [N, C].
        class_names: the C label names.
        thresholds: one threshold, or one per label: a label is predicted
            when its probability is at least its threshold.

    Returns:
        `accuracy` (exact match: every label of the image right),
        `binary_accuracy` (per label and image), `loss` (binary
        cross-entropy), micro and macro precision/recall/F1, `map` (mean
        average precision), `thresholds` and `per_class` (precision, recall,
        F1, support, average precision, threshold, true/false positives,
        false negatives). Macro scores and mAP average over the labels that
        some image of the split has.
    """
    probs = np.asarray(probs, np.float64)
    truth = np.asarray(truth).astype(bool)
    n, c = probs.shape
    t = np.broadcast_to(np.asarray(thresholds, np.float64), (c,))
    pred = probs >= t[None, :]
    tp, fp, fn = _counts(pred, truth)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
    f1 = _f1(tp, fp, fn)
    support = truth.sum(0)
    ap = np.array([average_precision(probs[:, i], truth[:, i]) for i in range(c)])
    present = support > 0
    eps = 1e-7
    clipped = np.clip(probs, eps, 1 - eps)
    loss = float(-np.mean(np.where(truth, np.log(clipped), np.log(1 - clipped)))) if n else float("nan")
    micro_p = tp.sum() / max(tp.sum() + fp.sum(), 1)
    micro_r = tp.sum() / max(tp.sum() + fn.sum(), 1)

    def mean(v):
        return float(np.mean(v[present])) if present.any() else float("nan")

    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i]), "average_precision": float(ap[i]), "threshold": float(t[i]),
                        "true_positives": int(tp[i]), "false_positives": int(fp[i]),
                        "false_negatives": int(fn[i])}
                 for i, name in enumerate(class_names)}
    return {
        "multi_label": True,
        "accuracy": float((pred == truth).all(1).mean()) if n else float("nan"),
        "binary_accuracy": float((pred == truth).mean()) if n else float("nan"),
        "loss": loss,
        "micro_precision": float(micro_p),
        "micro_recall": float(micro_r),
        "micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())),
        "macro_precision": mean(precision),
        "macro_recall": mean(recall),
        "macro_f1": mean(f1),
        "map": mean(ap),
        "num_images": int(n),
        "class_names": list(class_names),
        "thresholds": {name: float(t[i]) for i, name in enumerate(class_names)},
        "per_class": per_class,
    }


def pr_curves(probs: np.ndarray, truth: np.ndarray, class_names: typing.Sequence[str]) -> dict:
    """`pr_curve` of every label that some image has, by name."""
    truth = np.asarray(truth)
    curves = {name: pr_curve(probs[:, i], truth[:, i]) for i, name in enumerate(class_names)}
    return {name: curve for name, curve in curves.items() if curve is not None}


def format_metrics(m: dict) -> str:
    """A plain-text report of `classification_metrics` or `multilabel_metrics` output."""
    if m.get("multi_label"):
        return _format_multilabel(m)
    names = m["class_names"]
    width = max(8, *(len(c) for c in names))
    lines = [f"accuracy {m['accuracy']:.4f}   loss {m['loss']:.4f}   images {m['num_images']}", "",
             f"{'class':<{width}}  precision  recall     f1  support"]
    for c in names:
        s = m["per_class"][c]
        lines.append(f"{c:<{width}}  {s['precision']:9.4f}  {s['recall']:6.4f}  {s['f1']:.4f}  {s['support']:7d}")
    lines += ["", "confusion matrix (rows: true, columns: predicted)",
              " " * width + "  " + " ".join(f"{c[:7]:>7}" for c in names)]
    for c, row in zip(names, m["confusion_matrix"]):
        lines.append(f"{c:<{width}}  " + " ".join(f"{v:7d}" for v in row))
    return "\n".join(lines)


def _format_multilabel(m: dict) -> str:
    names = m["class_names"]
    width = max(8, *(len(c) for c in names))
    lines = [f"macro F1 {m['macro_f1']:.4f}   micro F1 {m['micro_f1']:.4f}   mAP {m['map']:.4f}   "
             f"exact match {m['accuracy']:.4f}   loss {m['loss']:.4f}   images {m['num_images']}", "",
             f"{'label':<{width}}  threshold  precision  recall      f1      AP  support"]
    for c in names:
        s = m["per_class"][c]
        lines.append(f"{c:<{width}}  {s['threshold']:9.2f}  {s['precision']:9.4f}  {s['recall']:6.4f}  "
                     f"{s['f1']:.4f}  {s['average_precision']:.4f}  {s['support']:7d}")
    lines += ["", "a label is predicted when its probability reaches its threshold (chosen on the validation "
              "split when training ended)"]
    return "\n".join(lines)


def evaluate(run_dir: str, data: typing.Optional[str] = None, split: str = "val", batch_size: int = 32) -> dict:
    """Evaluates the model of a run folder.

    Args:
        run_dir: a tfl run folder.
        data: a data source (`folder:PATH`, `tfds:NAME`); default: the run's own.
        split: `val`, `train` or `test`.
        batch_size: evaluation batch size.

    Returns:
        A dict with `accuracy`, `loss`, `per_class`, `confusion_matrix`;
        for multi-label models `multilabel_metrics`' keys instead (`macro_f1`,
        `micro_f1`, `map`, `thresholds`, ...), at the run's thresholds.

    Examples:
        >>> tfl.evaluate("runs/ants")["accuracy"]
        0.9...
    """
    from tfl.data import loading as data_lib
    from tfl.errors import UsageError
    from tfl.runs import RunFolder

    run = RunFolder(run_dir)
    cfg = run.read_config()
    if data:
        cfg.data.source = data
    model = load_model(run_dir)
    class_names = run.read_class_names()
    multi = cfg.model.head.multi_label
    loaded = data_lib.load_data(cfg.data, seed=cfg.seed, multi_label=multi)
    if list(loaded.class_names) != list(class_names):
        raise UsageError(f"{cfg.data.source} has classes {loaded.class_names}, the model {class_names}")
    chosen = {"val": loaded.val, "train": loaded.train, "test": loaded.test}.get(split)
    if chosen is None:
        raise UsageError(f"split '{split}' not found in {cfg.data.source} (use val, train or test)")
    size = model.input_shape[1]
    probs, labels = predict_probabilities(model, chosen.dataset(size, batch_size))
    if multi:
        out = multilabel_metrics(probs, labels, class_names, run_thresholds(run))
    else:
        out = classification_metrics(probs, labels, class_names)
    out.update(split=split, data=cfg.data.source, skipped=len(loaded.skipped))
    return out

