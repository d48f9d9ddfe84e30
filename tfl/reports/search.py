"""The report of a tuning search (`tfl tune`, or a Keras Tuner folder): its trials, score per hyperparameter."""

from __future__ import annotations

import glob
import os
import typing

import numpy as np

from tfl.config import is_minimized
from tfl.errors import UsageError
from tfl.reports._shared import esc, fmt, html_page, img
from tfl.runs import atomic_write_json, atomic_write_text, read_json


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
    lower = is_minimized(objective)
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


def _search_page(title, objective, ranked, names, best, plot, best_link) -> str:
    parts = ["<h2>Best trial</h2>"]
    if best:
        hp = ", ".join(f"{k}={v}" for k, v in sorted(best["hyperparameters"].items()))
        parts.append(f"<p>trial <b>{esc(best['trial_id'])}</b>: {esc(objective)} {fmt(best['score'])} ({esc(hp)})</p>")
        if best_link:
            parts.append(f'<p><a href="{esc(best_link)}">report of the best run</a></p>')
    else:
        parts.append("<p>No trial has a score yet.</p>")
    if plot:
        parts += [f"<h2>{esc(objective)} against each hyperparameter</h2>", img(plot["image"], "search")]
    parts.append('<h2>Trials (best first)</h2><div class="scroll"><table><tr><th>rank</th><th class=l>trial</th>'
                 f"<th>{esc(objective)}</th>" + "".join(f"<th class=l>{esc(n)}</th>" for n in names)
                 + "<th class=l>status</th></tr>")
    for rank, t in enumerate(ranked, 1):
        cls = ' class="best"' if best and t["trial_id"] == best["trial_id"] else ""
        cells = "".join(f"<td class=l>{esc(t['hyperparameters'].get(n, '—'))}</td>" for n in names)
        parts.append(f"<tr{cls}><td>{rank if t['score'] is not None else '—'}</td><td class=l>{esc(t['trial_id'])}"
                     f"</td><td>{fmt(t['score'])}</td>{cells}<td class=l>{esc(t['status'])}</td></tr>")
    parts.append("</table></div>")
    return html_page(title, "\n".join(parts))
