"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

Figures are built from `matplotlib.figure.Figure` directly instead of
`pyplot`, so drawing a report never switches the caller's backend (a user in
a notebook keeps theirs) and keeps no global figure state. Each function
saves one PNG atomically at a fixed size (no tight bounding box, so the pixel
size is known in advance) and returns the numbers it drew, which the report
writes as JSON beside the image.
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


def _save(fig, path: str) -> dict:
    from tfl.runs import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    width, height = fig.canvas.get_width_height()
    return {"file": path.replace("\\", "/").rsplit("/", 1)[-1], "width": int(width), "height": int(height)}


def training_curves(history: dict, path: str) -> dict:
    """Accuracy and loss of both stages on one epoch axis, the stage boundary marked.

    Args:
        history: `{"stage1": {"accuracy": [...], "val_accuracy": [...], ...}, "stage2": {...}}`.
        path: the PNG to write.
    """
    from matplotlib.ticker import MaxNLocator

    s1, s2 = history.get("stage1") or {}, history.get("stage2") or {}
    n1 = max((len(v) for v in s1.values()), default=0)
    n2 = max((len(v) for v in s2.values()), default=0)
    data = {"epochs": list(range(1, n1 + n2 + 1)), "stage": [1] * n1 + [2] * n2,
            "boundary": n1 + 0.5 if n1 and n2 else None, "series": {}}
    fig = _figure(11, 4.2)
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
        ax.set_title(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (stage 1, then stage 2)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(loc="best", fontsize=8)
    fig.suptitle("Training curves")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.86, wspace=0.2)
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


def image_grid(images: typing.Sequence[np.ndarray], titles: typing.Sequence[str], path: str,
               title: str = "", columns: int = 4) -> dict:
    """A grid of uint8 RGB images with a caption under each."""
    rows = max(1, math.ceil(len(images) / columns))
    height = 2.7 * rows + 0.6
    fig = _figure(2.4 * columns, height)
    for k, (image, caption) in enumerate(zip(images, titles)):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.imshow(np.asarray(image, dtype=np.uint8))
        ax.set_title(caption, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.75 / height, hspace=0.45)
    return {"image": _save(fig, path)}


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
