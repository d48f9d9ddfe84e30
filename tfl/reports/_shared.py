"""What the run page, the multi-label page and the search page share: the run's history, thumbnails, HTML."""

from __future__ import annotations

import datetime
import html
import os
import typing

import numpy as np

from tfl.runs import RunFolder


def run_history(run: RunFolder) -> dict:
    history = run.read_history()
    if history:
        return history
    # A report of a run whose history.json is missing: the per-epoch state has the same numbers.
    state = run.read_state()
    return {k: (state.get(k) or {}).get("history", {}) for k in ("stage1", "stage2")}


def load_thumbnails(split, indices: typing.List[int]) -> dict:
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


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# -- HTML -----------------------------------------------------------------------------------
# The page never scrolls sideways: boxes include their padding, images shrink to the column (keeping their
# proportions: height follows width), long words (paths, JSON values) break anywhere, and a table still too
# wide (a search with many hyperparameters) scrolls inside its own box.
CSS = """*,*::before,*::after{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;
color:#222;padding:1em 1.5em}h1{font-size:1.6em;overflow-wrap:anywhere}h2{margin-top:2em;border-bottom:1px solid #ddd}
.scroll{max-width:100%;overflow-x:auto}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ddd;padding:4px 10px;text-align:right;overflow-wrap:anywhere}th{background:#f4f4f4}
td.l,th.l{text-align:left}img{display:block;max-width:100%;height:auto;outline:1px solid #eee}
.muted{color:#777;font-size:.9em}tr.best td{background:#fff6d6}code{background:#f4f4f4;padding:1px 4px}
.kept{color:#dc143c}"""


def esc(x) -> str:
    return html.escape(str(x))


def fmt(x, digits=4) -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def img(info, alt: str) -> str:
    return f'<img src="{esc(info["file"])}" width="{info["width"]}" height="{info["height"]}" alt="{esc(alt)}">'


def tbl(rows: typing.Iterable[str]) -> str:
    return '<div class="scroll"><table>' + "".join(rows) + "</table></div>"


def html_page(title: str, body: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body>\n<h1>{esc(title)}</h1>\n"
            f'<p class="muted">written by tfl on {stamp}; the numbers behind each image are in the JSON '
            f"file of the same name</p>\n{body}\n</body></html>\n")


def shown_path(path: str, source: str) -> str:
    """A mistake's file as the page shows it: relative to a folder: source's root (the full path in JSON)."""
    if source.startswith("folder:"):
        rel = os.path.relpath(path, source[len("folder:"):])
        if not rel.startswith(".."):
            return rel
    return path
