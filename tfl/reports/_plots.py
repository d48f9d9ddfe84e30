"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

Figures are built from `matplotlib.figure.Figure` directly instead of
`pyplot`, so drawing a report never switches the caller's backend (a user in
a notebook keeps theirs) and keeps no global figure state. Each function
saves one PNG atomically at a fixed size (no tight bounding box, so the pixel
size is known in advance) and returns the numbers it drew, which the report
writes as JSON beside the image. The grid of photos is composed with PIL
instead, pixel by pixel: thumbnails keep their proportions (letterboxed in
square cells) and the PNG is stored with a 256-colour palette, which keeps
it a few hundred kilobytes at most.
"""

from __future__ import annotations

import math
import typing

import numpy as np

DPI = 100


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _image_info(path: str, width: int, height: int) -> dict:
    return {"file": path.replace("\\", "/").rsplit("/", 1)[-1], "width": int(width), "height": int(height)}


def _save(fig, path: str) -> dict:
    from tfl.runs import atomic_path

    with atomic_path(path) as tmp:
        # Through PIL with optimize=True: the smallest zlib stream for the same pixels (lossless).
        fig.savefig(tmp, format="png", dpi=DPI, pil_kwargs={"optimize": True})
    width, height = fig.canvas.get_width_height()
    return _image_info(path, width, height)


KEPT_COLOR = "#dc143c"  # crimson: the kept model's star on the curves, unlike any line colour there


def training_curves(history: dict, path: str, kept: typing.Optional[typing.Tuple[int, int]] = None) -> dict:
    """Accuracy and loss of both stages on one epoch axis, the stage boundary and the kept epoch marked.

    Args:
        history: `{"stage1": {"accuracy": [...], "val_accuracy": [...], ...}, "stage2": {...}}`.
        path: the PNG to write.
        kept: `(stage, epoch)` of the weights the run kept (epoch counted from 1 within its stage),
            starred on the validation curves; `None` draws no star.

    Returns:
        The numbers drawn; `kept` (when given and within the history) holds the kept epoch's position on
        the shared axis, its validation values and the star's centre in PNG pixels (origin top left).
    """
    from matplotlib.ticker import MaxNLocator

    s1, s2 = history.get("stage1") or {}, history.get("stage2") or {}
    n1 = max((len(v) for v in s1.values()), default=0)
    n2 = max((len(v) for v in s2.values()), default=0)
    data = {"epochs": list(range(1, n1 + n2 + 1)), "stage": [1] * n1 + [2] * n2,
            "boundary": n1 + 0.5 if n1 and n2 else None, "series": {}, "kept": None}
    if kept and 1 <= kept[1] <= (n1 if kept[0] == 1 else n2):
        data["kept"] = {"stage": int(kept[0]), "epoch": int(kept[1]),
                        "index": int(kept[1] + (n1 if kept[0] == 2 else 0)), "values": {}, "marker_px": {}}
    fig = _figure(11, 4.2)
    axes = {}
    for col, metric in enumerate(("accuracy", "loss")):
        ax = fig.add_subplot(1, 2, col + 1)
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            # A stage that did not log a metric contributes gaps, not zeros.
            values = _pad(s1.get(key), n1) + _pad(s2.get(key), n2)
            data["series"][key] = values
            if any(v is not None for v in values):
                ys = [np.nan if v is None else v for v in values]
                ax.plot(data["epochs"], ys, style, marker="o", markersize=3,
                        label="train" if key == metric else "validation")
        if data["boundary"]:
            ax.axvline(data["boundary"], color="grey", linestyle=":", linewidth=1.5)
            ax.text(data["boundary"], 1.0, " stage 2 (fine-tuning) ", transform=ax.get_xaxis_transform(),
                    ha="left", va="top", fontsize=8, color="dimgrey")
        k = data["kept"]
        value = data["series"][f"val_{metric}"][k["index"] - 1] if k else None
        if value is not None:
            k["values"][f"val_{metric}"] = value
            ax.plot([k["index"]], [value], linestyle="none", marker="*", markersize=16, color=KEPT_COLOR,
                    markeredgecolor="white", markeredgewidth=0.8, zorder=5,
                    label=f"kept: stage {k['stage']}, epoch {k['epoch']}")
            axes[metric] = ax
        ax.set_title(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (stage 1, then stage 2)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(loc="best", fontsize=8)
    fig.suptitle("Training curves")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.86, wspace=0.2)
    if axes:
        fig.canvas.draw()
        height = fig.canvas.get_width_height()[1]
        for metric, ax in axes.items():
            x, y = ax.transData.transform((data["kept"]["index"], data["kept"]["values"][f"val_{metric}"]))
            data["kept"]["marker_px"][metric] = [float(x), float(height - y)]
    data["image"] = _save(fig, path)
    return data


def _pad(values, n: int) -> list:
    values = [None if v is None else float(v) for v in (values or [])]
    return values + [None] * (n - len(values))


def confusion_matrix(matrix, class_names: typing.Sequence[str], path: str, title: str = "") -> dict:
    """The confusion matrix (rows: true, columns: predicted) with counts in the cells.

    The returned dict also gives each cell's centre in PNG pixel coordinates
    (origin top left) and the cell size, so that a test can check the colours
    of the drawn cells against the counts.
    """
    m = np.asarray(matrix, dtype=int)
    n = len(class_names)
    side = min(24.0, max(5.0, 0.45 * n + 2.5))
    fig = _figure(side + 1.2, side)
    ax = fig.add_axes([0.22, 0.2, 0.66, 0.7])
    image = ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1, int(m.max(initial=0))), interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    labels = [c if len(c) <= 18 else c[:17] + "…" for c in class_names]
    font = 9 if n <= 12 else max(4, int(180 / n))
    ax.set_xticks(range(n), labels, rotation=60 if n > 4 else 0, ha="right" if n > 4 else "center", fontsize=font)
    ax.set_yticks(range(n), labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "Confusion matrix")
    if n <= 30:
        threshold = m.max(initial=0) / 2
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=font,
                        color="white" if m[i, j] > threshold else "black")
    fig.canvas.draw()
    height = fig.canvas.get_width_height()[1]
    to_px = ax.transData.transform
    centres = [[[float(to_px((j, i))[0]), float(height - to_px((j, i))[1])] for j in range(n)] for i in range(n)]
    cell = abs(to_px((1, 0))[0] - to_px((0, 0))[0]) if n > 1 else ax.bbox.width
    return {"class_names": list(class_names), "matrix": m.tolist(), "cell_centres_px": centres,
            "cell_size_px": float(cell), "image": _save(fig, path)}


THUMBNAIL = 160  # px: the side of a thumbnail's square cell in the grid of mistakes
GRID_BACKGROUND = (236, 236, 236)  # the letterbox bars around a thumbnail that is not square (a grey)
PNG_BUDGET = 290_000  # bytes: a grid that comes out larger is drawn again with smaller thumbnails


def fit_within(image, box: int) -> np.ndarray:
    """A uint8 RGB copy of `image` (H x W x 1/3/4 array) scaled to fit in `box` x `box`, proportions kept."""
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(np.round(array), 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    pil = Image.fromarray(array).convert("RGB")
    scale = min(box / pil.width, box / pil.height)
    size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
    if size != pil.size:
        pil = pil.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(pil)


def _font(size: int):
    import os

    import matplotlib
    from PIL import ImageFont

    try:  # matplotlib ships DejaVu Sans: the same face as the other figures, on every machine
        return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), size)
    except OSError:
        return ImageFont.load_default(size)


def _fit_text(draw, text: str, font, width: float) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "\u2026", font=font) > width:
        text = text[:-1]
    return text + "\u2026"


def _palette_png(page, photos, dither: bool) -> bytes:
    """The grid as an 8-bit palette PNG: the grey `page` (text, bars) mapped exactly onto 16 greys and the
    letterbox grey; the `photos` (`(RGB image, (x, y))`) over 239 colours chosen for them.

    Each photo is quantized on its own (dithered or not) and pasted by palette index, so the white page,
    the captions and the bars carry no dithering noise and keep their exact colours.
    """
    import io

    from PIL import Image

    strip = Image.new("RGB", (sum(p.width for p, _ in photos), max(p.height for p, _ in photos)))
    x = 0
    for p, _ in photos:
        strip.paste(p, (x, 0))
        x += p.width
    colours = strip.quantize(colors=239, method=Image.Quantize.MEDIANCUT).getpalette()[: 3 * 239]
    colours += [0] * (3 * 239 - len(colours))
    greys = list(range(0, 256, 17)) + [GRID_BACKGROUND[0]]
    colours += [v for grey in greys for v in (grey, grey, grey)]
    palette = Image.new("P", (1, 1))
    palette.putpalette(colours)
    # Each grey level of the page -> the palette index of the nearest of `greys`.
    nearest = np.abs(np.arange(256)[:, None] - np.array(greys)[None, :]).argmin(axis=1)
    indexed = Image.fromarray((239 + nearest).astype(np.uint8)[np.asarray(page)])
    indexed.putpalette(colours)  # mode L -> P: the page's pixels are already palette indices
    for photo, position in photos:
        indexed.paste(photo.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG if dither
                                     else Image.Dither.NONE), position)
    out = io.BytesIO()
    indexed.save(out, format="PNG", optimize=True)
    return out.getvalue()


def thumbnail_grid(images: typing.Sequence[np.ndarray], captions: typing.Sequence[str], path: str,
                   title: str = "", box: int = THUMBNAIL, columns: typing.Optional[int] = None,
                   budget: int = PNG_BUDGET) -> dict:
    """A grid of photos, each letterboxed into a `box`-pixel square cell, with a caption (lines split on \\n).

    The PNG has a 256-colour palette (a third of the RGB file's size, no visible difference at thumbnail
    size). If it still comes out over `budget` bytes (many or very detailed photos), it is drawn again
    without dithering, then with cells made smaller in proportion, down to 48 px.

    Returns:
        `image` (file, width, height), `box` (the cell side used), `background` (the letterbox colour) and
        `cells`: where each photo's pixels are in the PNG (`x`, `y`, `width`, `height`; origin top left),
        so that a test can check the proportions and the bars.
    """
    from tfl.runs import atomic_path

    while True:
        page, cells, photos = _draw_grid(images, captions, title, box, columns)
        png = _palette_png(page, photos, dither=True)
        if budget < len(png) < 1.3 * budget:  # without dithering: 10-20% smaller on photos
            png = _palette_png(page, photos, dither=False)
        if len(png) <= budget or box <= 48:
            break
        # The PNG grows with the photos' area, so with the square of the cell side.
        box = max(48, min(int(box * 0.9), int(box * math.sqrt(budget / len(png)) * 0.95)))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(png)
    return {"image": _image_info(path, *page.size), "box": box, "background": list(GRID_BACKGROUND),
            "cells": cells}


def _draw_grid(images, captions, title, box, columns):
    from PIL import Image, ImageDraw

    n = len(images)
    columns = columns or min(n, max(4, math.ceil(math.sqrt(n))), 8) or 1
    rows = max(1, math.ceil(n / columns))
    pad, gap, line = 12, 14, 15
    caption_lines = max((c.count("\n") + 1 for c in captions), default=1)
    title_h = 30 if title else 0
    cell_w, cell_h = max(box, 130), box + 4 + caption_lines * line  # captions need ~130 px
    width = 2 * pad + columns * cell_w + (columns - 1) * gap
    height = 2 * pad + title_h + rows * cell_h + (rows - 1) * gap
    page = Image.new("L", (width, height), 255)  # white; the photos are pasted over it in _palette_png
    draw = ImageDraw.Draw(page)
    font, title_font = _font(11), _font(14)
    if title:
        draw.text((width / 2, pad), _fit_text(draw, title, title_font, width - 2 * pad), fill=0,
                  font=title_font, anchor="mt")
    cells, photos = [], []
    for k, (image, caption) in enumerate(zip(images, captions)):
        x0 = pad + (k % columns) * (cell_w + gap) + (cell_w - box) // 2
        y0 = pad + title_h + (k // columns) * (cell_h + gap)
        thumb = Image.fromarray(fit_within(image, box))
        draw.rectangle((x0, y0, x0 + box - 1, y0 + box - 1), fill=GRID_BACKGROUND[0])
        x, y = x0 + (box - thumb.width) // 2, y0 + (box - thumb.height) // 2
        cells.append({"x": x, "y": y, "width": thumb.width, "height": thumb.height})
        photos.append((thumb, (x, y)))
        for j, text in enumerate(caption.split("\n")):
            draw.text((x0 + box / 2, y0 + box + 4 + j * line), _fit_text(draw, text, font, cell_w + gap - 2),
                      fill=0, font=font, anchor="mt")
    return page, cells, photos


def is_numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def search_scatter(trials: typing.Sequence[dict], names: typing.Sequence[str], path: str,
                   objective: str = "score", best_id=None) -> dict:
    """One panel per hyperparameter: each scored trial's score against its value.

    Numeric hyperparameters get a log axis when positive and spread over
    more than a decade; others are categorical, one position per value.
    """
    columns = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    fig = _figure(4.3 * columns, 3.4 * rows + 0.4)
    panels = {}
    scored = [t for t in trials if t.get("score") is not None]
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, columns, k + 1)
        points = [(t["hyperparameters"][name], float(t["score"]), t["trial_id"]) for t in scored
                  if name in t["hyperparameters"]]
        values = [p[0] for p in points]
        if values and is_numeric(values):
            positive = min(values) > 0
            scale = "log" if positive and max(values) / min(values) >= 10 else "linear"
            xs = [float(v) for v in values]
            ax.set_xscale(scale)
        else:
            scale = "categorical"
            categories = sorted({str(v) for v in values})
            xs = [categories.index(str(v)) for v in values]
            ax.set_xticks(range(len(categories)), categories, fontsize=8,
                          rotation=30 if len(categories) > 4 else 0)
            ax.set_xlim(-0.5, len(categories) - 0.5)
        ys = [p[1] for p in points]
        ax.scatter(xs, ys, s=30, alpha=0.8)
        for x, y, (_, _, tid) in zip(xs, ys, points):
            if tid == best_id:
                ax.scatter([x], [y], s=160, marker="*", color="crimson", zorder=3, label="best")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(objective, fontsize=8)
        ax.grid(alpha=0.3)
        panels[name] = {"scale": scale, "values": values, "scores": ys, "trial_ids": [p[2] for p in points]}
    fig.suptitle(f"{objective} against each hyperparameter ({len(scored)} scored trials; star: best)")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=1 - 0.7 / (3.4 * rows + 0.4),
                        hspace=0.5, wspace=0.3)
    return {"objective": objective, "panels": panels, "image": _save(fig, path)}


def pr_curves(curves: typing.Dict[str, dict], points: typing.Dict[str, typing.Tuple[float, float, float]],
              path: str, title: str = "", columns: int = 4) -> dict:
    """One panel per label: its precision-recall curve and the point its decision threshold picks.

    Args:
        curves: label -> `{"recall": [...], "precision": [...], "threshold": [...]}`
            (`tfl.serving.evaluation.pr_curves`; labels absent from the split have none).
        points: label -> (recall, precision, threshold) at the label's threshold.
        path: the PNG to write.
    """
    names = list(curves)
    columns = max(1, min(columns, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    fig = _figure(3.2 * columns, 2.9 * rows + 0.6)
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, columns, k + 1)
        c = curves[name]
        # A step from (0, first precision): the curve as average precision sums it.
        ax.step([0.0] + list(c["recall"]), [c["precision"][0]] + list(c["precision"]), where="pre", linewidth=1.5)
        if name in points:
            r, p, t = points[name]
            ax.plot([r], [p], "o", color="crimson", markersize=6)
            ax.annotate(f"t={t:.2f}", (r, p), textcoords="offset points", xytext=(-30, -12), fontsize=8,
                        color="crimson")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_title(name if len(name) <= 24 else name[:23] + "…", fontsize=9)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=1 - 0.7 / (2.9 * rows + 0.6), hspace=0.6,
                        wspace=0.35)
    return {"curves": curves, "points": {n: list(v) for n, v in points.items()}, "image": _save(fig, path)}


def pick_scatter(points: typing.Sequence[dict], path: str, chosen: typing.Optional[str] = None,
                 max_latency_ms: typing.Optional[float] = None) -> dict:
    """Probe accuracy against batch-1 latency, one point per scored backbone, the Pareto front joined.

    Args:
        points: dicts with `name`, `batch1_ms`, `accuracy`, `stderr` and `pareto`.
        path: the PNG to write.
        chosen: the recommended backbone, starred.
        max_latency_ms: the latency limit, drawn as a vertical line.

    Returns:
        The numbers drawn (`points`, `front`: names along the front by latency) and the image.
    """
    fig = _figure(8, 5)
    ax = fig.add_subplot(1, 1, 1)
    xs = [float(p["batch1_ms"]) for p in points]
    ys = [float(p["accuracy"]) for p in points]
    err = [float(p.get("stderr") or 0.0) for p in points]
    ax.errorbar(xs, ys, yerr=err, fmt="o", color="#1f77b4", ecolor="#9ecae1", capsize=3, label="scored (± 1 s.e.)")
    front = sorted((p for p in points if p.get("pareto")), key=lambda p: p["batch1_ms"])
    if front:
        ax.step([p["batch1_ms"] for p in front], [p["accuracy"] for p in front], where="post", color="#2ca02c",
                linewidth=1.5, label="Pareto front")
    for p, x, y in zip(points, xs, ys):
        ax.annotate(p["name"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if p["name"] == chosen:
            ax.scatter([x], [y], s=220, marker="*", color=KEPT_COLOR, zorder=3, label=f"recommended: {chosen}")
    if max_latency_ms is not None:
        ax.axvline(max_latency_ms, color="#999999", linestyle="--", linewidth=1, label="--max-latency-ms")
    if xs and max(xs) / max(min(xs), 1e-9) >= 10:
        ax.set_xscale("log")
    ax.margins(x=0.15, y=0.1)  # room for the names beside the rightmost points
    ax.set_xlabel("latency on this machine, ms per image at batch 1")
    ax.set_ylabel("linear-probe accuracy (validation)")
    ax.set_title("Backbones on this data: accuracy against latency")
    ax.grid(alpha=0.3)
    if points:
        ax.legend(fontsize=8, loc="lower right")
    fig.subplots_adjust(left=0.1, right=0.96, bottom=0.11, top=0.92)
    return {"points": [dict(p) for p in points], "front": [p["name"] for p in front], "chosen": chosen,
            "image": _save(fig, path)}
