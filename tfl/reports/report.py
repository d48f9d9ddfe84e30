"""Reports people can look at: one offline HTML page with PNG figures.

A run's report (`RUN/report/index.html`, written at the end of every
training and by `tfl report RUN`) shows the training curves of both stages,
the confusion matrix, per-class precision/recall/F1, the most confident
mistakes and the hyperparameters. A tuning search gets a page with its
trials and their score against each hyperparameter. Every image has the
numbers it shows in a JSON file beside it (`confusion_matrix.json` beside
`confusion_matrix.png`, ...), and the page loads nothing from the network.
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
from tfl.runs import RunFolder, atomic_write_json, atomic_write_text, read_json

MAX_MISTAKES = 16


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
    metrics = classification_metrics(probs, labels, class_names)
    metrics.update(split=split, data=source)
    atomic_write_json(os.path.join(out_dir, "evaluation.json"), metrics)

    curves = _plots.training_curves(_history(run), os.path.join(out_dir, "training_curves.png"))
    atomic_write_json(os.path.join(out_dir, "training_curves.json"), curves)
    confusion = _plots.confusion_matrix(metrics["confusion_matrix"], class_names,
                                        os.path.join(out_dir, "confusion_matrix.png"),
                                        title=f"Confusion matrix ({split}, {len(labels)} images)")
    confusion.update(split=split, data=source, accuracy=metrics["accuracy"])
    atomic_write_json(os.path.join(out_dir, "confusion_matrix.json"), confusion)
    mistakes = _mistakes(probs, labels, class_names, chosen, size, max_mistakes)
    grid = None
    if mistakes:
        grid = _plots.image_grid([m.pop("pixels") for m in mistakes],
                                 [f"true: {m['true']}\npredicted: {m['predicted']} ({m['confidence']:.2f})"
                                  for m in mistakes],
                                 os.path.join(out_dir, "mistakes.png"), title="Most confident mistakes")
    elif os.path.exists(os.path.join(out_dir, "mistakes.png")):
        os.remove(os.path.join(out_dir, "mistakes.png"))  # a stale grid of an earlier report
    atomic_write_json(os.path.join(out_dir, "mistakes.json"),
                      {"split": split, "num_errors": int((probs.argmax(1) != labels).sum()),
                       "mistakes": mistakes, "image": grid["image"] if grid else None})
    hyper = _flatten(cfg.to_dict())
    atomic_write_json(os.path.join(out_dir, "hyperparameters.json"), hyper)

    page = _run_page(run_dir, source, split, run.read_metrics(), metrics, curves, confusion,
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
        image_data = data_lib.load_data(cfg.data, seed=cfg.seed)
    if list(image_data.class_names) != list(class_names):
        raise UsageError(f"{cfg.data.source} has classes {image_data.class_names}, the model {class_names}")
    chosen = {"val": image_data.val, "train": image_data.train, "test": image_data.test}.get(split)
    if chosen is None:
        raise UsageError(f"split '{split}' not found in {cfg.data.source} (use val, train or test)")
    return model, chosen, cfg.data.source


def _history(run: RunFolder) -> dict:
    history = run.read_history()
    if history:
        return history
    # A report of a run whose history.json is missing: the per-epoch state has the same numbers.
    state = run.read_state()
    return {k: (state.get(k) or {}).get("history", {}) for k in ("stage1", "stage2")}


def _mistakes(probs, labels, class_names, split, size: int, limit: int) -> list:
    """The `limit` wrong predictions with the highest confidence, with their pixels."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:limit]
    if not len(order):
        return []
    pixels = _load_images(split, [int(i) for i in order], size)
    out = []
    for i in order:
        i = int(i)
        entry = {"index": i, "true": class_names[labels[i]], "predicted": class_names[pred[i]],
                 "confidence": float(probs[i, pred[i]]), "true_probability": float(probs[i, labels[i]]),
                 "pixels": pixels[i]}
        if split.paths:
            entry["path"] = split.paths[i]
        out.append(entry)
    return out


def _load_images(split, indices: typing.List[int], size: int) -> dict:
    """index -> uint8 RGB image as the model saw it (same decode and resize)."""
    import tensorflow as tf

    from tfl.data.loading import decode_image, resize_image

    def prepared(image):
        return resize_image(image, size).numpy().round().astype(np.uint8)

    if split.paths:
        return {i: prepared(decode_image(tf.io.read_file(os.fsencode(split.paths[i])))) for i in indices}
    wanted, last, out = set(indices), max(indices), {}
    # tfds splits have no paths: walk the split in order, stopping after the last wanted image.
    for i, (image, _) in enumerate(split.raw()):
        if i in wanted:
            out[i] = prepared(image)
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
_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;color:#222;padding:0 1em}h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;padding:4px 10px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eee}
.muted{color:#777;font-size:.9em}tr.best td{background:#fff6d6}code{background:#f4f4f4;padding:1px 4px}"""


def _e(x) -> str:
    return html.escape(str(x))


def _num(x, digits=4) -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _img(info, alt: str) -> str:
    return f'<img src="{_e(info["file"])}" width="{info["width"]}" height="{info["height"]}" alt="{_e(alt)}">'


def _page(title: str, body: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n<h1>{_e(title)}</h1>\n"
            f'<p class="muted">written by tfl on {stamp}; the numbers behind each image are in the JSON '
            f"file of the same name</p>\n{body}\n</body></html>\n")


def _run_page(run_dir, source, split, run_metrics, metrics, curves, confusion, mistakes, grid, hyper) -> str:
    s1, s2 = run_metrics.get("stage1") or {}, run_metrics.get("stage2") or {}
    parts = ["<h2>Summary</h2><table>",
             "<tr><th class=l>data</th><td class=l>" + _e(source) + "</td></tr>",
             f"<tr><th class=l>stage 1 (head) best val_accuracy</th><td>{_num(s1.get('val_accuracy'))}</td></tr>",
             "<tr><th class=l>stage 2 (fine-tuning) best val_accuracy</th>"
             f"<td>{_num(s2.get('val_accuracy'))}</td></tr>",
             f"<tr><th class=l>stage kept</th><td>{_e(run_metrics.get('best_stage', '—'))}</td></tr>",
             f"<tr><th class=l>{_e(split)} accuracy of the kept model</th><td>{_num(metrics['accuracy'])} "
             f"({metrics['num_images']} images)</td></tr>",
             f"<tr><th class=l>{_e(split)} loss</th><td>{_num(metrics['loss'])}</td></tr></table>",
             "<h2>Training curves</h2>", _img(curves["image"], "training curves"),
             '<p class="muted">epochs of stage 1 (head on the frozen backbone) then stage 2 (fine-tuning); '
             "the dotted line marks the start of stage 2.</p>",
             "<h2>Confusion matrix</h2>", _img(confusion["image"], "confusion matrix"),
             "<h2>Per-class precision, recall and F1</h2><table><tr><th class=l>class</th><th>precision</th>"
             "<th>recall</th><th>F1</th><th>support</th></tr>"]
    for name in metrics["class_names"]:
        c = metrics["per_class"][name]
        parts.append(f"<tr><td class=l>{_e(name)}</td><td>{_num(c['precision'])}</td><td>{_num(c['recall'])}</td>"
                     f"<td>{_num(c['f1'])}</td><td>{c['support']}</td></tr>")
    parts.append("</table><h2>Most confident mistakes</h2>")
    if grid:
        parts.append(_img(grid["image"], "most confident mistakes"))
        parts.append("<table><tr><th class=l>image</th><th class=l>true</th><th class=l>predicted</th>"
                     "<th>confidence</th><th>p(true)</th></tr>")
        for m in mistakes:
            parts.append(f"<tr><td class=l>{_e(m.get('path', '#' + str(m['index'])))}</td><td class=l>{_e(m['true'])}"
                         f"</td><td class=l>{_e(m['predicted'])}</td><td>{_num(m['confidence'], 3)}</td>"
                         f"<td>{_num(m['true_probability'], 3)}</td></tr>")
        parts.append("</table>")
    else:
        errors = metrics["num_images"] - round(metrics["accuracy"] * metrics["num_images"])
        parts.append(f"<p>No mistakes on the {_e(split)} split.</p>" if not errors else
                     f"<p>{errors} mistakes on the {_e(split)} split (none drawn: --mistakes 0).</p>")
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
    parts.append("<h2>Trials (best first)</h2><table><tr><th>rank</th><th class=l>trial</th>"
                 f"<th>{_e(objective)}</th>" + "".join(f"<th class=l>{_e(n)}</th>" for n in names)
                 + "<th class=l>status</th></tr>")
    for rank, t in enumerate(ranked, 1):
        cls = ' class="best"' if best and t["trial_id"] == best["trial_id"] else ""
        cells = "".join(f"<td class=l>{_e(t['hyperparameters'].get(n, '—'))}</td>" for n in names)
        parts.append(f"<tr{cls}><td>{rank if t['score'] is not None else '—'}</td><td class=l>{_e(t['trial_id'])}"
                     f"</td><td>{_num(t['score'])}</td>{cells}<td class=l>{_e(t['status'])}</td></tr>")
    parts.append("</table>")
    return _page(title, "\n".join(parts))
