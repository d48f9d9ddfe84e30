"""Reports people can look at: one offline HTML page with PNG figures.

A run's report (`RUN/report/index.html`, written at the end of every
training and by `tfl report RUN`) shows the training curves of both stages
(the kept epoch starred), the confusion matrix, per-class
precision/recall/F1, the most confident mistakes (as thumbnails with the
photos' proportions, and how many of all the mistakes they are) and the
hyperparameters. A multi-label run's report shows instead of the confusion
matrix its macro/micro F1 and mean average precision, each label's
threshold, precision, recall, F1 and average precision, and a
precision-recall curve per label with the point its threshold picks. A
tuning search gets a page with its trials and their score against each
hyperparameter. Every image has the numbers it shows in a JSON file beside
it (`confusion_matrix.json` beside
`confusion_matrix.png`, ...), and the page loads nothing from the network.
Every PNG stays under 300 KB and the page fits a 1200 px window
(tests/test_report_browser.py checks both in Chromium).
"""

from __future__ import annotations

import json
import os
import typing

import numpy as np

from tfl.errors import UsageError
from tfl.reports import MAX_MISTAKES
from tfl.reports._shared import (
    esc,
    flatten,
    fmt,
    html_page,
    img,
    load_thumbnails,
    run_history,
    shown_path,
    tbl,
)
from tfl.reports.multilabel import multilabel_report
from tfl.reports.search import find_trials, load_trials, normalise_trial, report_search  # noqa: F401 (public here too)
from tfl.runs import RunFolder, atomic_write_json, atomic_write_text, read_json


def report(run_dir: str, out_dir: typing.Optional[str] = None, *, data: typing.Optional[str] = None,
           split: str = "val", batch_size: int = 32, max_mistakes: int = MAX_MISTAKES,
           model=None, image_data=None) -> str:
    """Writes the HTML report of a run folder (or of a tuning search folder).

    Args:
        run_dir: a tfl run folder, or a search folder written by `tfl tune`.
        out_dir: where to write `index.html` and its images; default
            `RUN/report`.
        data: score on this data source instead of the run's own.
        split: `val`, `train` or `test`.
        batch_size: prediction batch size.
        max_mistakes: how many of the most confident mistakes to show.
        model: the run's model, when already in memory (the trainer passes
            its own); default: loaded from `RUN/model.keras`.
        image_data: the run's already loaded `ImageData` (idem).

    Returns:
        The path of `index.html`.

    Examples:
        >>> tfl.report("runs/ants")
        'runs/ants/report/index.html'
    """
    run = RunFolder(run_dir)
    if not run.exists():
        if find_trials(run_dir) is not None:
            # `tfl tune` keeps its settings (the objective among them) in DIR/search.json.
            settings = read_json(os.path.join(run_dir, "search.json"), default={})
            objective = settings.get("objective") if isinstance(settings, dict) else None
            best_run = os.path.join(run_dir, "best", "report", "index.html")
            return report_search(load_trials(run_dir), out_dir or os.path.join(run_dir, "report"),
                                 objective=objective or "val_accuracy", title=f"Search {run_dir}",
                                 best_report=best_run if os.path.isfile(best_run) else None)
        raise UsageError(f"{run_dir} is neither a tfl run folder (no config.json) nor a tuning search "
                         "folder (no trials.json or keras-tuner trial.json files)")
    if model is None and not run.is_trained():
        raise UsageError(f"{run_dir} has no model.keras yet: finish the run first (tfl train --resume {run_dir})")
    out_dir = out_dir or run.report_dir
    os.makedirs(out_dir, exist_ok=True)
    cfg = run.read_config()
    class_names = run.read_class_names()
    model, chosen, source = _model_and_split(run, cfg, class_names, data, split, model, image_data)

    from tfl.reports import _plots
    from tfl.serving.evaluation import classification_metrics, predict_probabilities

    size = int(model.input_shape[1])
    probs, labels = predict_probabilities(model, chosen.dataset(size, batch_size))
    if cfg.model.head.multi_label:
        return multilabel_report(run, out_dir, cfg, class_names, chosen, source, split, probs, labels, size,
                                  max_mistakes)
    metrics = classification_metrics(probs, labels, class_names)
    metrics.update(split=split, data=source)
    atomic_write_json(os.path.join(out_dir, "evaluation.json"), metrics)

    run_metrics = run.read_metrics()
    curves = _plots.training_curves(run_history(run), os.path.join(out_dir, "training_curves.png"),
                                    kept=_kept_epoch(run_metrics))
    atomic_write_json(os.path.join(out_dir, "training_curves.json"), curves)
    confusion = _plots.confusion_matrix(metrics["confusion_matrix"], class_names,
                                        os.path.join(out_dir, "confusion_matrix.png"),
                                        title=f"Confusion matrix ({split}, {len(labels)} images)")
    confusion.update(split=split, data=source, accuracy=metrics["accuracy"])
    atomic_write_json(os.path.join(out_dir, "confusion_matrix.json"), confusion)
    num_errors = int((probs.argmax(1) != labels).sum())  # the confusion matrix's off-diagonal total
    mistakes = _mistakes(probs, labels, class_names, chosen, max_mistakes)
    grid = None
    if mistakes:
        shown = (f"all {num_errors} mistakes" if len(mistakes) == num_errors else
                 f"the {len(mistakes)} most confident of {num_errors} mistakes")
        grid = _plots.thumbnail_grid(
            [m.pop("pixels") for m in mistakes],
            [f"{k}. true: {m['true']}\npredicted: {m['predicted']} ({m['confidence']:.2f})"
             for k, m in enumerate(mistakes, 1)],
            os.path.join(out_dir, "mistakes.png"),
            title=f"{shown[0].upper()}{shown[1:]} ({split}, {len(labels)} images)")
    elif os.path.exists(os.path.join(out_dir, "mistakes.png")):
        os.remove(os.path.join(out_dir, "mistakes.png"))  # a stale grid of an earlier report
    atomic_write_json(os.path.join(out_dir, "mistakes.json"),
                      {"split": split, "num_images": int(len(labels)), "num_errors": num_errors,
                       "num_shown": len(mistakes), "mistakes": mistakes, "image": grid["image"] if grid else None,
                       "box": grid["box"] if grid else None, "cells": grid["cells"] if grid else [],
                       "background": grid["background"] if grid else None})
    hyper = flatten(cfg.to_dict())
    atomic_write_json(os.path.join(out_dir, "hyperparameters.json"), hyper)

    page = _run_page(run_dir, source, split, run_metrics, metrics, num_errors, curves, confusion,
                     mistakes, grid, hyper)
    path = os.path.join(out_dir, "index.html")
    atomic_write_text(path, page)
    return path


def _model_and_split(run, cfg, class_names, data, split, model, image_data):
    from tfl.data import loading as data_lib
    from tfl.serving.prediction import load_model

    if model is None:
        model = load_model(run.path)
    if data:
        cfg.data.source = data
    if image_data is None or data:
        image_data = data_lib.load_data(cfg.data, seed=cfg.seed, multi_label=cfg.model.head.multi_label)
    if list(image_data.class_names) != list(class_names):
        raise UsageError(f"{cfg.data.source} has classes {image_data.class_names}, the model {class_names}")
    chosen = {"val": image_data.val, "train": image_data.train, "test": image_data.test}.get(split)
    if chosen is None:
        raise UsageError(f"split '{split}' not found in {cfg.data.source} (use val, train or test)")
    return model, chosen, cfg.data.source


def _kept_epoch(run_metrics: dict) -> typing.Optional[typing.Tuple[int, int]]:
    """(stage, epoch within it) of the weights the run kept, from metrics.json; None when unknown."""
    stage = run_metrics.get("best_stage")
    epoch = (run_metrics.get(f"stage{stage}") or {}).get("best_epoch") if stage in (1, 2) else None
    return (int(stage), int(epoch)) if epoch else None


def _mistakes(probs, labels, class_names, split, limit: int) -> list:
    """The `limit` wrong predictions with the highest confidence, with a thumbnail of each photo."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:limit]
    if not len(order):
        return []
    photos = load_thumbnails(split, [int(i) for i in order])
    out = []
    for i in order:
        i = int(i)
        thumbnail, (height, width) = photos[i]
        entry = {"index": i, "true": class_names[labels[i]], "predicted": class_names[pred[i]],
                 "confidence": float(probs[i, pred[i]]), "true_probability": float(probs[i, labels[i]]),
                 "image_width": width, "image_height": height, "pixels": thumbnail}
        if split.paths:
            entry["path"] = split.paths[i]
        out.append(entry)
    return out


def _test_rows(test: typing.Optional[dict]) -> list:
    """The kept model's score on the test split, which nothing was chosen on (the honest figure)."""
    if not test:
        return []
    scores = ", ".join(f"{k} {fmt(test[k])}" for k in ("accuracy", "macro_f1", "micro_f1", "map") if k in test)
    return [f"<tr><th class=l>test score of the kept model (never used to choose)</th><td class=l>{esc(scores)} "
            f"({test.get('num_images', '?')} images; {esc(test.get('split', 'test split'))})</td></tr>"]


def _decision_rows(decisions: typing.Optional[dict]) -> list:
    """What the run decided from its own data (stage 2's depth and rate), and why."""
    if not decisions:
        return []
    return [f"<tr><th class=l>decided in the run: {esc(name)}</th><td class=l>{esc(d.get('chosen', ''))}: "
            f"{esc(d.get('why', ''))} ({fmt(d.get('seconds'), 1)} s)</td></tr>" for name, d in decisions.items()]


def _run_page(run_dir, source, split, run_metrics, metrics, num_errors, curves, confusion, mistakes, grid,
              hyper) -> str:
    s1, s2 = run_metrics.get("stage1") or {}, run_metrics.get("stage2") or {}
    kept = curves.get("kept")
    kept_text = (f"{esc(run_metrics.get('best_stage', '—'))}" if not kept else
                 f"{kept['stage']} (its epoch {kept['epoch']} of "
                 f"{(s1 if kept['stage'] == 1 else s2).get('epochs', '?')}, epoch {kept['index']} on the curves)")
    n = metrics["num_images"]
    parts = ["<h2>Summary</h2>", tbl([
        "<tr><th class=l>data</th><td class=l>" + esc(source) + "</td></tr>",
        f"<tr><th class=l>stage 1 (head) best val_accuracy</th><td>{fmt(s1.get('val_accuracy'))}</td></tr>",
        f"<tr><th class=l>stage 2 (fine-tuning) best val_accuracy</th><td>{fmt(s2.get('val_accuracy'))}</td></tr>",
        f"<tr><th class=l>stage kept (chosen on val)</th><td>{kept_text}</td></tr>",
        *_test_rows(run_metrics.get("test")),
        *_decision_rows(run_metrics.get("decisions")),
        f"<tr><th class=l>{esc(split)} accuracy of the kept model</th><td>{fmt(metrics['accuracy'])} "
        f"({n} images)</td></tr>",
        f"<tr><th class=l>{esc(split)} mistakes</th><td>{num_errors} of {n}</td></tr>",
        f"<tr><th class=l>{esc(split)} loss</th><td>{fmt(metrics['loss'])}</td></tr>"])]
    parts += ["<h2>Training curves</h2>", img(curves["image"], "training curves"),
              '<p class="muted">epochs of stage 1 (head on the frozen backbone) then stage 2 (fine-tuning); '
              "the dotted line marks the start of stage 2"
              + (f'; <span class="kept">&#9733;</span> marks the kept model: stage {kept["stage"]}, epoch '
                 f'{kept["epoch"]} (validation values of the weights the run keeps)' if kept else "")
              + ".</p>",
              "<h2>Confusion matrix</h2>", img(confusion["image"], "confusion matrix"),
              "<h2>Per-class precision, recall and F1</h2>"]
    rows = ["<tr><th class=l>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"]
    for name in metrics["class_names"]:
        c = metrics["per_class"][name]
        rows.append(f"<tr><td class=l>{esc(name)}</td><td>{fmt(c['precision'])}</td><td>{fmt(c['recall'])}</td>"
                    f"<td>{fmt(c['f1'])}</td><td>{c['support']}</td></tr>")
    parts += [tbl(rows), "<h2>Most confident mistakes</h2>"]
    if grid:
        count = (f"All {num_errors} mistakes on the {esc(split)} split ({n} images), most confident first"
                 if len(mistakes) == num_errors else
                 f"{len(mistakes)} of {num_errors} mistakes on the {esc(split)} split ({n} images): the most "
                 f"confident (tfl report --mistakes N shows more)")
        parts += [f'<p id="mistakes-count">{count}. Thumbnails keep the photos\' proportions.</p>',
                  img(grid["image"], "most confident mistakes")]
        rows = ["<tr><th>#</th><th class=l>image</th><th class=l>true</th><th class=l>predicted</th>"
                "<th>confidence</th><th>p(true)</th></tr>"]
        for k, m in enumerate(mistakes, 1):
            where = shown_path(m["path"], source) if m.get("path") else f"#{m['index']}"
            rows.append(f"<tr><td>{k}</td><td class=l>{esc(where)}</td><td class=l>{esc(m['true'])}</td>"
                        f"<td class=l>{esc(m['predicted'])}</td><td>{fmt(m['confidence'], 3)}</td>"
                        f"<td>{fmt(m['true_probability'], 3)}</td></tr>")
        parts.append(tbl(rows))
    else:
        parts.append(f'<p id="mistakes-count">No mistakes on the {esc(split)} split ({n} images).</p>'
                     if not num_errors else
                     f'<p id="mistakes-count">{num_errors} mistakes on the {esc(split)} split ({n} images); '
                     "none drawn (--mistakes 0).</p>")
    parts.append("<h2>Hyperparameters</h2>")
    parts.append(tbl(f"<tr><th class=l>{esc(k)}</th><td class=l><code>{esc(json.dumps(v))}</code></td></tr>"
                        for k, v in hyper.items()))
    return html_page(f"tfl report: {run_dir}", "\n".join(parts))
