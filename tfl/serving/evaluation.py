"""Scoring a trained model: accuracy, loss, per-class precision/recall/F1, confusion matrix."""

from __future__ import annotations

import typing

import numpy as np

from tfl.serving.prediction import load_model, predict_probabilities  # noqa: F401 (evaluation's public name too)


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


def format_metrics(m: dict) -> str:
    """A plain-text report of `classification_metrics` output."""
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


def evaluate(run_dir: str, data: typing.Optional[str] = None, split: str = "val", batch_size: int = 32) -> dict:
    """Evaluates the model of a run folder.

    Args:
        run_dir: a tfl run folder.
        data: a data source (`folder:PATH`, `tfds:NAME`); default: the run's own.
        split: `val`, `train` or `test`.
        batch_size: evaluation batch size.

    Returns:
        A dict with `accuracy`, `loss`, `per_class`, `confusion_matrix`.

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
    loaded = data_lib.load_data(cfg.data, seed=cfg.seed)
    if list(loaded.class_names) != list(class_names):
        raise UsageError(f"{cfg.data.source} has classes {loaded.class_names}, the model {class_names}")
    chosen = {"val": loaded.val, "train": loaded.train, "test": loaded.test}.get(split)
    if chosen is None:
        raise UsageError(f"split '{split}' not found in {cfg.data.source} (use val, train or test)")
    size = model.input_shape[1]
    probs, labels = predict_probabilities(model, chosen.dataset(size, batch_size))
    out = classification_metrics(probs, labels, class_names)
    out.update(split=split, data=cfg.data.source, skipped=len(loaded.skipped))
    return out
