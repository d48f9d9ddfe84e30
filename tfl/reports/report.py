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

import datetime
import glob
import html
import json
import os
import typing

import numpy as np

from tfl.errors import UsageError
from tfl.reports import MAX_MISTAKES
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
        return _multilabel_report(run, out_dir, cfg, class_names, chosen, source, split, probs, labels, size,
                                  max_mistakes)
    metrics = classification_metrics(probs, labels, class_names)
    metrics.update(split=split, data=source)
    atomic_write_json(os.path.join(out_dir, "evaluation.json"), metrics)

    run_metrics = run.read_metrics()
    curves = _plots.training_curves(_history(run), os.path.join(out_dir, "training_curves.png"),
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
    hyper = _flatten(cfg.to_dict())
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


def _multilabel_report(run, out_dir, cfg, class_names, chosen, source, split, probs, labels, size,
                       max_mistakes) -> str:
    """The page of a multi-label run: scores at the run's thresholds, PR curves, mistakes, curves."""
    from tfl.reports import _plots
    from tfl.serving.evaluation import multilabel_metrics, pr_curves, run_thresholds

    metrics = multilabel_metrics(probs, labels, class_names, run_thresholds(run))
    metrics.update(split=split, data=source)
    atomic_write_json(os.path.join(out_dir, "evaluation.json"), metrics)
    curves = _plots.training_curves(_history(run), os.path.join(out_dir, "training_curves.png"))
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
    hyper = _flatten(cfg.to_dict())
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
    pixels = _load_images(split, [int(i) for i in order])
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


def _history(run: RunFolder) -> dict:
    history = run.read_history()
    if history:
        return history
    # A report of a run whose history.json is missing: the per-epoch state has the same numbers.
    state = run.read_state()
    return {k: (state.get(k) or {}).get("history", {}) for k in ("stage1", "stage2")}


def _mistakes(probs, labels, class_names, split, limit: int) -> list:
    """The `limit` wrong predictions with the highest confidence, with a thumbnail of each photo."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:limit]
    if not len(order):
        return []
    photos = _load_images(split, [int(i) for i in order])
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


def _load_images(split, indices: typing.List[int]) -> dict:
    """index -> (uint8 RGB thumbnail with the photo's proportions, the photo's (height, width)).

    The photo is decoded as training decodes it (first GIF frame, grey and alpha to RGB), not resized to
    the model's square input: the thumbnail shows it as it was taken.
    """
    import tensorflow as tf

    from tfl.data.loading import decode_image
    from tfl.reports import _plots

    def prepared(image):
        image = np.asarray(image)
        return _plots.fit_within(image, _plots.THUMBNAIL), tuple(int(d) for d in image.shape[:2])

    if split.paths:
        return {i: prepared(decode_image(tf.io.read_file(os.fsencode(split.paths[i])))) for i in indices}
    wanted, last, out = set(indices), max(indices), {}
    # tfds splits have no paths: walk the split in order, stopping after the last wanted image.
    for i, (image, _) in enumerate(split.raw()):
        if i in wanted:
            out[i] = prepared(image.numpy())
        if i >= last:
            break
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# -- tuning searches ----------------------------------------------------------------------
def find_trials(folder: str) -> typing.Optional[str]:
    """The trials file (`trials.json`) or keras-tuner project folder of a search, if any."""
    if os.path.isfile(os.path.join(folder, "trials.json")):
        return os.path.join(folder, "trials.json")
    if glob.glob(os.path.join(folder, "**", "trial.json"), recursive=True):
        return folder
    return None


def load_trials(folder: str) -> typing.List[dict]:
    """Trials of a search folder as `{trial_id, hyperparameters, score, status}` dicts.

    Reads `DIR/trials.json` (a list of trials, or `{"trials": [...]}`) or,
    failing that, keras-tuner's own `trial.json` files under `DIR`.
    """
    found = find_trials(folder)
    if found is None:
        raise UsageError(f"{folder} has no trials.json and no keras-tuner trial.json files")
    if found.endswith(".json"):
        raw = read_json(found)
        raw = raw.get("trials", []) if isinstance(raw, dict) else raw
    else:
        raw = [read_json(p) for p in sorted(glob.glob(os.path.join(folder, "**", "trial.json"), recursive=True))]
    return [normalise_trial(t) for t in raw]


def normalise_trial(t: dict) -> dict:
    """Accepts our trial dicts and keras-tuner's `trial.json` (hyperparameters under `values`)."""
    if not isinstance(t, dict) or "trial_id" not in t:
        raise UsageError(f"a trial must be a dict with trial_id, hyperparameters and score; got {str(t)[:80]}")
    hps = t.get("hyperparameters") or {}
    if isinstance(hps.get("values"), dict):
        hps = hps["values"]
    score = t.get("score")
    return {"trial_id": str(t["trial_id"]), "hyperparameters": dict(hps),
            "score": None if score is None or (isinstance(score, float) and np.isnan(score)) else float(score),
            "status": t.get("status") or ("COMPLETED" if score is not None else "UNKNOWN")}


def report_search(trials: typing.Sequence[dict], out_dir: str, *, objective: str = "val_accuracy",
                  title: str = "Tuning search", best_report: typing.Optional[str] = None) -> str:
    """Writes a search page: the trials table (best first) and score against each hyperparameter.

    Args:
        trials: dicts with `trial_id`, `hyperparameters` (name -> value) and
            `score` (`None` for trials without one); keras-tuner's
            `trial.json` layout is accepted too.
        out_dir: folder for `index.html`, `search.png` and `search.json`.
        objective: name of the score; a name ending in `loss` means lower is
            better.
        title: the page title.
        best_report: the best run's report page, linked from this one.

    Returns:
        The path of `index.html`.

    Examples:
        >>> report_search([{"trial_id": "0", "hyperparameters": {"lr": 1e-3}, "score": 0.9}], "search/report")
        'search/report/index.html'
    """
    from tfl.reports import _plots

    trials = [normalise_trial(t) for t in trials]
    if not trials:
        raise UsageError("no trials to report: the search has not finished a trial yet")
    lower = objective.endswith("loss")
    scored = sorted((t for t in trials if t["score"] is not None), key=lambda t: t["score"], reverse=not lower)
    ranked = scored + [t for t in trials if t["score"] is None]
    best = scored[0] if scored else None
    names = sorted({n for t in trials for n in t["hyperparameters"]})
    os.makedirs(out_dir, exist_ok=True)
    plot = _plots.search_scatter(trials, names, os.path.join(out_dir, "search.png"), objective,
                                 best["trial_id"] if best else None) if names else None
    summary = {"objective": objective, "direction": "min" if lower else "max", "best": best,
               "trials": ranked, "plot": plot}
    atomic_write_json(os.path.join(out_dir, "search.json"), summary)
    path = os.path.join(out_dir, "index.html")
    link = os.path.relpath(best_report, out_dir) if best_report else None
    atomic_write_text(path, _search_page(title, objective, ranked, names, best, plot, link))
    return path


# -- HTML -----------------------------------------------------------------------------------
# The page never scrolls sideways: boxes include their padding, images shrink to the column (keeping their
# proportions: height follows width), long words (paths, JSON values) break anywhere, and a table still too
# wide (a search with many hyperparameters) scrolls inside its own box.
_CSS = """*,*::before,*::after{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;
color:#222;padding:1em 1.5em}h1{font-size:1.6em;overflow-wrap:anywhere}h2{margin-top:2em;border-bottom:1px solid #ddd}
.scroll{max-width:100%;overflow-x:auto}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ddd;padding:4px 10px;text-align:right;overflow-wrap:anywhere}th{background:#f4f4f4}
td.l,th.l{text-align:left}img{display:block;max-width:100%;height:auto;outline:1px solid #eee}
.muted{color:#777;font-size:.9em}tr.best td{background:#fff6d6}code{background:#f4f4f4;padding:1px 4px}
.kept{color:#dc143c}"""


def _e(x) -> str:
    return html.escape(str(x))


def _num(x, digits=4) -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _img(info, alt: str) -> str:
    return f'<img src="{_e(info["file"])}" width="{info["width"]}" height="{info["height"]}" alt="{_e(alt)}">'


def _table(rows: typing.Iterable[str]) -> str:
    return '<div class="scroll"><table>' + "".join(rows) + "</table></div>"


def _page(title: str, body: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n<h1>{_e(title)}</h1>\n"
            f'<p class="muted">written by tfl on {stamp}; the numbers behind each image are in the JSON '
            f"file of the same name</p>\n{body}\n</body></html>\n")


def _shown_path(path: str, source: str) -> str:
    """A mistake's file as the page shows it: relative to a folder: source's root (the full path in JSON)."""
    if source.startswith("folder:"):
        rel = os.path.relpath(path, source[len("folder:"):])
        if not rel.startswith(".."):
            return rel
    return path


def _run_page(run_dir, source, split, run_metrics, metrics, num_errors, curves, confusion, mistakes, grid,
              hyper) -> str:
    s1, s2 = run_metrics.get("stage1") or {}, run_metrics.get("stage2") or {}
    kept = curves.get("kept")
    kept_text = (f"{_e(run_metrics.get('best_stage', '—'))}" if not kept else
                 f"{kept['stage']} (its epoch {kept['epoch']} of "
                 f"{(s1 if kept['stage'] == 1 else s2).get('epochs', '?')}, epoch {kept['index']} on the curves)")
    n = metrics["num_images"]
    parts = ["<h2>Summary</h2>", _table([
        "<tr><th class=l>data</th><td class=l>" + _e(source) + "</td></tr>",
        f"<tr><th class=l>stage 1 (head) best val_accuracy</th><td>{_num(s1.get('val_accuracy'))}</td></tr>",
        f"<tr><th class=l>stage 2 (fine-tuning) best val_accuracy</th><td>{_num(s2.get('val_accuracy'))}</td></tr>",
        f"<tr><th class=l>stage kept</th><td>{kept_text}</td></tr>",
        f"<tr><th class=l>{_e(split)} accuracy of the kept model</th><td>{_num(metrics['accuracy'])} "
        f"({n} images)</td></tr>",
        f"<tr><th class=l>{_e(split)} mistakes</th><td>{num_errors} of {n}</td></tr>",
        f"<tr><th class=l>{_e(split)} loss</th><td>{_num(metrics['loss'])}</td></tr>"])]
    parts += ["<h2>Training curves</h2>", _img(curves["image"], "training curves"),
              '<p class="muted">epochs of stage 1 (head on the frozen backbone) then stage 2 (fine-tuning); '
              "the dotted line marks the start of stage 2"
              + (f'; <span class="kept">&#9733;</span> marks the kept model: stage {kept["stage"]}, epoch '
                 f'{kept["epoch"]} (validation values of the weights the run keeps)' if kept else "")
              + ".</p>",
              "<h2>Confusion matrix</h2>", _img(confusion["image"], "confusion matrix"),
              "<h2>Per-class precision, recall and F1</h2>"]
    rows = ["<tr><th class=l>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"]
    for name in metrics["class_names"]:
        c = metrics["per_class"][name]
        rows.append(f"<tr><td class=l>{_e(name)}</td><td>{_num(c['precision'])}</td><td>{_num(c['recall'])}</td>"
                    f"<td>{_num(c['f1'])}</td><td>{c['support']}</td></tr>")
    parts += [_table(rows), "<h2>Most confident mistakes</h2>"]
    if grid:
        count = (f"All {num_errors} mistakes on the {_e(split)} split ({n} images), most confident first"
                 if len(mistakes) == num_errors else
                 f"{len(mistakes)} of {num_errors} mistakes on the {_e(split)} split ({n} images): the most "
                 f"confident (tfl report --mistakes N shows more)")
        parts += [f'<p id="mistakes-count">{count}. Thumbnails keep the photos\' proportions.</p>',
                  _img(grid["image"], "most confident mistakes")]
        rows = ["<tr><th>#</th><th class=l>image</th><th class=l>true</th><th class=l>predicted</th>"
                "<th>confidence</th><th>p(true)</th></tr>"]
        for k, m in enumerate(mistakes, 1):
            where = _shown_path(m["path"], source) if m.get("path") else f"#{m['index']}"
            rows.append(f"<tr><td>{k}</td><td class=l>{_e(where)}</td><td class=l>{_e(m['true'])}</td>"
                        f"<td class=l>{_e(m['predicted'])}</td><td>{_num(m['confidence'], 3)}</td>"
                        f"<td>{_num(m['true_probability'], 3)}</td></tr>")
        parts.append(_table(rows))
    else:
        parts.append(f'<p id="mistakes-count">No mistakes on the {_e(split)} split ({n} images).</p>'
                     if not num_errors else
                     f'<p id="mistakes-count">{num_errors} mistakes on the {_e(split)} split ({n} images); '
                     "none drawn (--mistakes 0).</p>")
    parts.append("<h2>Hyperparameters</h2>")
    parts.append(_table(f"<tr><th class=l>{_e(k)}</th><td class=l><code>{_e(json.dumps(v))}</code></td></tr>"
                        for k, v in hyper.items()))
    return _page(f"tfl report: {run_dir}", "\n".join(parts))


def _multilabel_page(run_dir, source, split, run_metrics, metrics, curves, pr, mistakes, grid, hyper, wrong,
                     thresholds) -> str:
    s1, s2 = run_metrics.get("stage1") or {}, run_metrics.get("stage2") or {}
    chosen = thresholds.get("split")
    how = (f"chosen on the {_e(chosen)} split ({thresholds.get('num_images')} images) when training ended: "
           f"{_e(thresholds.get('rule', ''))}" if thresholds
           else "0.5 for every label (the run has no thresholds.json)")
    rows = [("data", _e(source)), ("labels", str(len(metrics["class_names"]))),
            ("stage 1 (head) val_macro_f1 at 0.5, at its kept epoch", _num(s1.get("val_macro_f1"))),
            ("stage 2 (fine-tuning) val_macro_f1 at 0.5, at its kept epoch", _num(s2.get("val_macro_f1"))),
            ("stage kept", _e(run_metrics.get("best_stage", "—"))),
            (f"{_e(split)} macro F1", _num(metrics["macro_f1"])), (f"{_e(split)} micro F1", _num(metrics["micro_f1"])),
            (f"{_e(split)} mean average precision", _num(metrics["map"])),
            (f"{_e(split)} exact match (every label right)", f"{_num(metrics['accuracy'])} ({metrics['num_images']} "
                                                               "images)"),
            (f"{_e(split)} loss (binary cross-entropy)", _num(metrics["loss"]))]
    parts = ["<h2>Summary</h2><table>"]
    parts += [f"<tr><th class=l>{k}</th><td class=l>{v}</td></tr>" for k, v in rows]
    parts += ["</table>", f'<p class="muted">A label is predicted when its probability reaches its threshold; '
              f"thresholds {how}. Macro scores and mAP average over the labels present in the split.</p>",
              "<h2>Training curves</h2>", _img(curves["image"], "training curves"),
              '<p class="muted">epochs of stage 1 (head on the frozen backbone) then stage 2 (fine-tuning); '
              "accuracy is per label and image, at 0.5; the dotted line marks the start of stage 2.</p>",
              "<h2>Per-label precision, recall and F1</h2><table><tr><th class=l>label</th><th>threshold</th>"
              "<th>precision</th><th>recall</th><th>F1</th><th>average precision</th><th>support</th>"
              "<th>false positives</th><th>false negatives</th></tr>"]
    for name in metrics["class_names"]:
        c = metrics["per_class"][name]
        parts.append(f"<tr><td class=l>{_e(name)}</td><td>{c['threshold']:.2f}</td><td>{_num(c['precision'])}</td>"
                     f"<td>{_num(c['recall'])}</td><td>{_num(c['f1'])}</td><td>{_num(c['average_precision'])}</td>"
                     f"<td>{c['support']}</td><td>{c['false_positives']}</td><td>{c['false_negatives']}</td></tr>")
    parts += ["</table>", "<h2>Precision-recall curves</h2>", _img(pr["image"], "precision-recall curves"),
              '<p class="muted">one panel per label present in the split; the dot is the point its threshold '
              "picks.</p>", "<h2>Most confident mistakes</h2>"]
    if grid:
        parts.append(_img(grid["image"], "most confident mistakes"))
        parts.append("<table><tr><th class=l>image</th><th class=l>true</th><th class=l>predicted</th>"
                     "<th>confidence</th></tr>")
        for m in mistakes:
            parts.append(f"<tr><td class=l>{_e(m.get('path', '#' + str(m['index'])))}</td>"
                         f"<td class=l>{_e(', '.join(m['true']))}</td><td class=l>{_e(', '.join(m['predicted']))}"
                         f"</td><td>{_num(m['confidence'], 3)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append(f"<p>No mistakes on the {_e(split)} split.</p>" if not wrong else
                     f"<p>{wrong} images with wrong labels on the {_e(split)} split (none drawn: --mistakes 0).</p>")
    parts.append("<h2>Hyperparameters</h2><table>")
    for k, v in hyper.items():
        parts.append(f"<tr><th class=l>{_e(k)}</th><td class=l><code>{_e(json.dumps(v))}</code></td></tr>")
    parts.append("</table>")
    return _page(f"tfl report: {run_dir}", "\n".join(parts))


def _search_page(title, objective, ranked, names, best, plot, best_link) -> str:
    parts = ["<h2>Best trial</h2>"]
    if best:
        hp = ", ".join(f"{k}={v}" for k, v in sorted(best["hyperparameters"].items()))
        parts.append(f"<p>trial <b>{_e(best['trial_id'])}</b>: {_e(objective)} {_num(best['score'])} ({_e(hp)})</p>")
        if best_link:
            parts.append(f'<p><a href="{_e(best_link)}">report of the best run</a></p>')
    else:
        parts.append("<p>No trial has a score yet.</p>")
    if plot:
        parts += [f"<h2>{_e(objective)} against each hyperparameter</h2>", _img(plot["image"], "search")]
    parts.append('<h2>Trials (best first)</h2><div class="scroll"><table><tr><th>rank</th><th class=l>trial</th>'
                 f"<th>{_e(objective)}</th>" + "".join(f"<th class=l>{_e(n)}</th>" for n in names)
                 + "<th class=l>status</th></tr>")
    for rank, t in enumerate(ranked, 1):
        cls = ' class="best"' if best and t["trial_id"] == best["trial_id"] else ""
        cells = "".join(f"<td class=l>{_e(t['hyperparameters'].get(n, '—'))}</td>" for n in names)
        parts.append(f"<tr{cls}><td>{rank if t['score'] is not None else '—'}</td><td class=l>{_e(t['trial_id'])}"
                     f"</td><td>{_num(t['score'])}</td>{cells}<td class=l>{_e(t['status'])}</td></tr>")
    parts.append("</table></div>")
    return _page(title, "\n".join(parts))
