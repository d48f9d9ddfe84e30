"""The page of a backbone pick (`tfl pick`, `--backbone auto`): the ranking, the rule and the plot.

`OUT/pick.json` holds every number; `OUT/pick.png` is probe accuracy against
batch-1 latency with the Pareto front; `OUT/index.html` shows both with the
recommendation and the command that trains it.
"""

from __future__ import annotations

import dataclasses
import os

from tfl.reports._shared import esc, fmt, html_page, img, tbl
from tfl.runs import atomic_write_json, atomic_write_text


def write_pick(result, out_dir: str) -> str:
    """Writes `pick.json`, `pick.png` and `index.html` of a `PickResult` into `out_dir`; returns the page's path.

    Examples:
        >>> write_pick(tfl.pick("folder:photos"), "pick")
        'pick/index.html'
    """
    from tfl.reports import _plots

    os.makedirs(out_dir, exist_ok=True)
    scored = [dataclasses.asdict(c) for c in result.scored]
    plot = _plots.pick_scatter(scored, os.path.join(out_dir, "pick.png"), result.chosen,
                               result.constraints.get("max_latency_ms"))
    data = result.to_dict()
    data["plot"] = {"image": plot["image"], "front": plot["front"]}
    atomic_write_json(os.path.join(out_dir, "pick.json"), data)
    path = os.path.join(out_dir, "index.html")
    atomic_write_text(path, _page(result, plot))
    return path


def _engines(result) -> str:
    names = {"litert": "LiteRT (XNNPACK), as tfl predict runs it", "keras": "TensorFlow"}
    ran = sorted({names.get(c.engine, c.engine) for c in result.candidates if c.engine})
    return f" Feature passes and latency timed through {' and '.join(ran)}." if ran else ""


def _page(result, plot) -> str:
    parts = ["<h2>Recommendation</h2>"]
    if result.chosen:
        parts.append(f"<p><b>{esc(result.why)}</b></p><p>Train it: <code>{esc(result.command)}</code></p>")
    parts.append(f'<p class="muted">Rule: {esc(result.rule)}.</p>')
    subsample = " (a class-balanced subsample)" if result.subsampled else ""
    parts.append(f'<p class="muted">Scored on {esc(result.source)}: {result.num_train} training and '
                 f"{result.num_val} validation images{subsample}. Probe: a ridge classifier on the frozen pooled "
                 "features of the plain images, its L2 penalty chosen by leave-one-out accuracy on the training "
                 f"features; accuracy on the validation split.{_engines(result)} {result.seconds:.0f}s in all.</p>")
    parts += ["<h2>Accuracy against latency</h2>", img(plot["image"], "accuracy against latency")]
    head = ("<tr><th>rank</th><th class=l>backbone</th><th>size</th><th>probe accuracy</th><th>± s.e.</th>"
            "<th>leave-one-out (train) + val</th>"
            "<th>ms/image, batch 1</th><th>ms/image, batch</th><th>parameters</th>"
            "<th>weights MB</th><th>seconds</th><th class=l>Pareto</th></tr>")
    rows = [head]
    for c in result.scored:
        cls = ' class="best"' if c.name == result.chosen else ""
        rows.append(f"<tr{cls}><td>{c.rank}</td><td class=l>{esc(c.name)}</td><td>{c.image_size}</td>"
                    f"<td>{fmt(c.accuracy)}</td><td>{fmt(c.stderr, 3)}</td><td>{fmt(c.pooled)}</td>"
                    f"<td>{fmt(c.batch1_ms, 1)}</td><td>{fmt(c.batch_ms, 2)}</td><td>{c.params:,}</td>"
                    f"<td>{fmt(c.weights_mb, 1)}</td><td>{c.seconds:.0f}</td>"
                    f"<td class=l>{'yes' if c.pareto else ''}</td></tr>")
    parts += ["<h2>Ranking</h2>", tbl(rows)]
    others = [c for c in result.candidates if c.status != "scored"]
    if others:
        parts.append("<h2>Not scored</h2><ul>" + "".join(f"<li><b>{esc(c.name)}</b>: {esc(c.reason)}</li>"
                                                         for c in others) + "</ul>")
    return html_page("Backbone pick", "\n".join(parts))
