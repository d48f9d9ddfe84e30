"""The end of a run's scoring: per-label thresholds chosen on val (multi-label), and the test split's score.

The kept model is chosen on the validation split, so its validation score
flatters it; `score_test` scores it once on the test split (a `test/` folder,
test rows of a table, or `--holdout`), which nothing was chosen on.
"""

from __future__ import annotations

import typing

from tfl._logging import log


def test_summary(test: dict) -> str:
    """The test scores in a few words, e.g. `accuracy 0.8412 on 63 images (15% of train held out ...)`.

    Examples:
        >>> test_summary({"accuracy": 0.5, "num_images": 4, "split": "the data's test split"})
        "accuracy 0.5000 on 4 images (the data's test split, never used to choose anything)"
    """
    scores = "  ".join(f"{k} {test[k]:.4f}" for k in ("macro_f1", "micro_f1", "map") if k in test)
    main = scores or f"accuracy {test.get('accuracy', float('nan')):.4f}"
    return f"{main} on {test.get('num_images', 0)} images ({test.get('split', 'test')}, never used to choose anything)"


def score_test(model, data, image_size: int, batch_size: int, multi_label: bool,
               thresholds: typing.Optional[dict] = None) -> dict:
    """The kept model's scores on `data.test` (empty without one).

    Args:
        model: the kept classifier.
        data: the run's `ImageData`.
        image_size, batch_size: of the run.
        multi_label: score per-label F1/mAP at `thresholds` (name -> threshold, chosen on val).
        thresholds: multi-label thresholds; 0.5 for a label without one.

    Returns:
        `accuracy` (multi-label: also `macro_f1`, `micro_f1`, `map`), `num_images`, `split`.
    """
    test = data.test
    if test is None or not len(test):
        return {}
    import numpy as np

    from tfl.data.loading import label_matrix
    from tfl.serving import evaluation

    probs, labels = evaluation.predict_probabilities(model, test.dataset(image_size, batch_size))
    where = next((part.split(": ", 1)[1] for part in data.layout.split("; ") if part.startswith("test: ")),
                 "the data's test split")
    out = {"num_images": int(len(labels)), "split": where}
    if multi_label:
        truth = label_matrix(test.labels, data.num_classes)
        chosen = thresholds or {}
        per_label = [float(chosen.get(name, 0.5)) for name in data.class_names]
        m = evaluation.multilabel_metrics(probs, truth, data.class_names, per_label)
        out.update({k: float(m[k]) for k in ("macro_f1", "micro_f1", "map", "accuracy")})
    else:
        out["accuracy"] = float(np.mean(np.argmax(probs, axis=1) == np.asarray(labels)))
    return out


def choose_val_thresholds(model, data, image_size: int, batch_size: int, run) -> dict:
    """Multi-label: chooses each label's threshold on the validation split; returns the scores there.

    The threshold with the best F1 per label (`choose_thresholds`) goes to
    `RUN/thresholds.json`, which evaluation, prediction and export read.
    """
    from tfl.data.loading import label_matrix
    from tfl.serving import evaluation

    probs, _ = evaluation.predict_probabilities(model, data.val.dataset(image_size, batch_size))
    truth = label_matrix(data.val.labels, data.num_classes)
    thresholds = evaluation.choose_thresholds(probs, truth)
    m = evaluation.multilabel_metrics(probs, truth, data.class_names, thresholds)
    run.write_thresholds({"thresholds": m["thresholds"], "split": "val", "num_images": m["num_images"],
                          "rule": "best F1 per label on the validation split, thresholds "
                                  f"{evaluation.THRESHOLD_GRID[0]:g}..{evaluation.THRESHOLD_GRID[-1]:g} "
                                  "in 0.05 steps (ties: nearest 0.5)"})
    log.info(f"multi-label: per-label thresholds chosen on {m['num_images']} validation images: macro F1 "
             f"{m['macro_f1']:.4f}, micro F1 {m['micro_f1']:.4f}, mAP {m['map']:.4f}, exact match "
             f"{m['accuracy']:.4f}")
    return {k: m[k] for k in ("macro_f1", "micro_f1", "map", "accuracy", "num_images", "thresholds")}
