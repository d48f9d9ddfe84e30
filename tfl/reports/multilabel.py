"""The report of a multi-label run: scores at the run's thresholds, a precision-recall curve per label, mistakes."""

from __future__ import annotations

import json
import os

import numpy as np

from tfl.reports._shared import (
    esc,
    flatten,
    fmt,
    html_page,
    img,
    load_thumbnails,
    run_history,
)
from tfl.runs import atomic_write_json, atomic_write_text


def multilabel_report(run, out_dir, cfg, class_names, chosen, source, split, probs, labels, size,
                       max_mistakes) -> str:
    """The page of a multi-label run: scores at the run's thresholds, PR curves, mistakes, curves."""
    from tfl.reports import _plots
    from tfl.serving.evaluation import multilabel_metrics, pr_curves, run_thresholds

    metrics = multilabel_metrics(probs, labels, class_names, run_thresholds(run))
    metrics.update(split=split, data=source)
    atomic_write_json(os.path.join(out_dir, "evaluation.json"), metrics)
    curves = _plots.training_curves(run_history(run), os.path.join(out_dir, "training_curves.png"))
    atomic_write_json(os.path.join(out_dir, "training_curves.json"), curves)
    points = {n: (c["recall"], c["precision"], c["threshold"]) for n, c in metrics["per_class"].items()}
    pr = _plots.pr_curves(pr_curves(probs, labels, class_names), points, os.path.join(out_dir, "pr_curves.png"),
                          title=f"Precision-recall per label ({split}, {len(labels)} images)")
    pr.update(split=split, data=source, average_precision={n: c["average_precision"]
                                                            for n, c in metrics["per_class"].items()})
    atomic_write_json(os.path.join(out_dir, "pr_curves.json"), pr)
    mistakes = _multilabel_mistakes(probs, labels, metrics["thresholds"], class_names, chosen, size, max_mistakes)
    grid = None
    if mistakes:
        grid = _plots.thumbnail_grid([m.pop("pixels") for m in mistakes],
                                     [f"true: {', '.join(m['true']) or '-'}\n"
                                      f"predicted: {', '.join(m['predicted']) or '-'}" for m in mistakes],
                                     os.path.join(out_dir, "mistakes.png"), title="Most confident mistakes")
    for stale in ("mistakes.png",) * (not mistakes) + ("confusion_matrix.png", "confusion_matrix.json"):
        if os.path.exists(os.path.join(out_dir, stale)):
            os.remove(os.path.join(out_dir, stale))  # of an earlier report, or of a single-label one
    wrong = int((_predicted(probs, metrics["thresholds"], class_names) != labels.astype(bool)).any(1).sum())
    atomic_write_json(os.path.join(out_dir, "mistakes.json"),
                      {"split": split, "num_errors": wrong, "mistakes": mistakes,
                       "image": grid["image"] if grid else None})
    hyper = flatten(cfg.to_dict())
    atomic_write_json(os.path.join(out_dir, "hyperparameters.json"), hyper)
    page = _multilabel_page(run.path, source, split, run.read_metrics(), metrics, curves, pr, mistakes, grid,
                            hyper, wrong, run.read_thresholds())
    path = os.path.join(out_dir, "index.html")
    atomic_write_text(path, page)
    return path


def _predicted(probs, thresholds: dict, class_names) -> np.ndarray:
    return probs >= np.asarray([thresholds[c] for c in class_names])[None, :]


def _multilabel_mistakes(probs, labels, thresholds, class_names, split, size: int, limit: int) -> list:
    """Images whose predicted labels differ from their true ones, the surest wrong label first.

    An image's confidence is that of its most confidently wrong label: the
    probability of a label predicted but absent, one minus it for a label
    missed.
    """
    pred = _predicted(probs, thresholds, class_names)
    truth = labels.astype(bool)
    wrong_by = np.where(pred & ~truth, probs, 0.0).max(1, initial=0.0)
    missed_by = np.where(~pred & truth, 1 - probs, 0.0).max(1, initial=0.0)
    confidence = np.maximum(wrong_by, missed_by)
    wrong = np.flatnonzero((pred != truth).any(1))
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    if not len(order):
        return []
    pixels = load_thumbnails(split, [int(i) for i in order])
    out = []
    for i in order:
        i = int(i)
        names = np.asarray(class_names)
        entry = {"index": i, "true": names[truth[i]].tolist(), "predicted": names[pred[i]].tolist(),
                 "confidence": float(confidence[i]),
                 "probabilities": {c: float(p) for c, p in zip(class_names, probs[i])}, "pixels": pixels[i][0]}
        if split.paths:
            entry["path"] = split.paths[i]
        out.append(entry)
    return out


def _multilabel_page(run_dir, source, split, run_metrics, metrics, curves, pr, mistakes, grid, hyper, wrong,
                     thresholds) -> str:
    s1, s2 = run_metrics.get("stage1") or {}, run_metrics.get("stage2") or {}
    chosen = thresholds.get("split")
    how = (f"chosen on the {esc(chosen)} split ({thresholds.get('num_images')} images) when training ended: "
           f"{esc(thresholds.get('rule', ''))}" if thresholds
           else "0.5 for every label (the run has no thresholds.json)")
    rows = [("data", esc(source)), ("labels", str(len(metrics["class_names"]))),
            ("stage 1 (head) val_macro_f1 at 0.5, at its kept epoch", fmt(s1.get("val_macro_f1"))),
            ("stage 2 (fine-tuning) val_macro_f1 at 0.5, at its kept epoch", fmt(s2.get("val_macro_f1"))),
            ("stage kept", esc(run_metrics.get("best_stage", "—"))),
            (f"{esc(split)} macro F1", fmt(metrics["macro_f1"])), (f"{esc(split)} micro F1", fmt(metrics["micro_f1"])),
            (f"{esc(split)} mean average precision", fmt(metrics["map"])),
            (f"{esc(split)} exact match (every label right)", f"{fmt(metrics['accuracy'])} ({metrics['num_images']} "
                                                               "images)"),
            (f"{esc(split)} loss (binary cross-entropy)", fmt(metrics["loss"]))]
    parts = ["<h2>Summary</h2><table>"]
    parts += [f"<tr><th class=l>{k}</th><td class=l>{v}</td></tr>" for k, v in rows]
    parts += ["</table>", f'<p class="muted">A label is predicted when its probability reaches its threshold; '
              f"thresholds {how}. Macro scores and mAP average over the labels present in the split.</p>",
              "<h2>Training curves</h2>", img(curves["image"], "training curves"),
              '<p class="muted">epochs of stage 1 (head on the frozen backbone) then stage 2 (fine-tuning); '
              "accuracy is per label and image, at 0.5; the dotted line marks the start of stage 2.</p>",
              "<h2>Per-label precision, recall and F1</h2><table><tr><th class=l>label</th><th>threshold</th>"
              "<th>precision</th><th>recall</th><th>F1</th><th>average precision</th><th>support</th>"
              "<th>false positives</th><th>false negatives</th></tr>"]
    for name in metrics["class_names"]:
        c = metrics["per_class"][name]
        parts.append(f"<tr><td class=l>{esc(name)}</td><td>{c['threshold']:.2f}</td><td>{fmt(c['precision'])}</td>"
                     f"<td>{fmt(c['recall'])}</td><td>{fmt(c['f1'])}</td><td>{fmt(c['average_precision'])}</td>"
                     f"<td>{c['support']}</td><td>{c['false_positives']}</td><td>{c['false_negatives']}</td></tr>")
    parts += ["</table>", "<h2>Precision-recall curves</h2>", img(pr["image"], "precision-recall curves"),
              '<p class="muted">one panel per label present in the split; the dot is the point its threshold '
              "picks.</p>", "<h2>Most confident mistakes</h2>"]
    if grid:
        parts.append(img(grid["image"], "most confident mistakes"))
        parts.append("<table><tr><th class=l>image</th><th class=l>true</th><th class=l>predicted</th>"
                     "<th>confidence</th></tr>")
        for m in mistakes:
            parts.append(f"<tr><td class=l>{esc(m.get('path', '#' + str(m['index'])))}</td>"
                         f"<td class=l>{esc(', '.join(m['true']))}</td><td class=l>{esc(', '.join(m['predicted']))}"
                         f"</td><td>{fmt(m['confidence'], 3)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append(f"<p>No mistakes on the {esc(split)} split.</p>" if not wrong else
                     f"<p>{wrong} images with wrong labels on the {esc(split)} split (none drawn: --mistakes 0).</p>")
    parts.append("<h2>Hyperparameters</h2><table>")
    for k, v in hyper.items():
        parts.append(f"<tr><th class=l>{esc(k)}</th><td class=l><code>{esc(json.dumps(v))}</code></td></tr>")
    parts.append("</table>")
    return html_page(f"tfl report: {run_dir}", "\n".join(parts))
