"""Reports: the page every training writes, `tfl report`, and the search page.

The run report is the one the `trained_run` fixture's training wrote (a real
hymenoptera run); its numbers are checked against `tfl.serving.evaluation.evaluate`
on the saved model and the PNGs against the JSON written beside them.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from helpers import run_tfl
from PIL import Image

IMAGES = ("training_curves", "confusion_matrix", "mistakes")
PNG_LIMIT = 300_000  # bytes: every PNG of a report stays below this


def _json(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return json.load(f)


def _luminance(png, x, y):
    r, g, b = np.asarray(Image.open(png).convert("RGB"), dtype=float)[int(round(y)), int(round(x))]
    return 0.299 * r + 0.587 * g + 0.114 * b


def _check_cells_follow_counts(folder, info):
    """Sampled beside each cell's centre (clear of its count), darker cells hold larger counts."""
    png = os.path.join(folder, info["image"]["file"])
    offset = 0.3 * info["cell_size_px"]
    cells = [(count, _luminance(png, x + offset, y + offset))
             for row, centres in zip(info["matrix"], info["cell_centres_px"])
             for count, (x, y) in zip(row, centres)]
    top = max(c for c, _ in cells)
    for ca, la in cells:
        for cb, lb in cells:
            if ca - cb > top / 20:
                assert la < lb - 3, f"cell with {ca} is not darker than cell with {cb}: {cells}"


@pytest.fixture(scope="module")
def report_dir(trained_run):
    folder = os.path.join(trained_run.run_dir, "report")
    assert os.path.isfile(os.path.join(folder, "index.html")), "training did not write its report"
    return folder


def test_training_writes_an_offline_page_with_valid_pngs(report_dir):
    with open(os.path.join(report_dir, "index.html"), encoding="utf-8") as f:
        page = f.read()
    referenced = set(re.findall(r'src="([^"]+)"', page))
    # screenshot.png is test_report_browser.py's picture of the page, not part of the report.
    pngs = {f for f in os.listdir(report_dir) if f.endswith(".png")} - {"screenshot.png"}
    assert referenced == pngs == {f"{name}.png" for name in IMAGES}
    assert "http://" not in page.replace("https://", "") and "<script" not in page  # nothing to fetch
    for name in IMAGES:
        info = _json(report_dir, f"{name}.json")["image"]
        with Image.open(os.path.join(report_dir, f"{name}.png")) as im:
            assert im.format == "PNG"
            assert im.size == (info["width"], info["height"])
            im.verify()
        with Image.open(os.path.join(report_dir, f"{name}.png")) as im:
            assert np.asarray(im.convert("L")).std() > 10, f"{name}.png is blank"
        size = os.path.getsize(os.path.join(report_dir, f"{name}.png"))
        assert size < PNG_LIMIT, f"{name}.png is {size} bytes"
    for heading in ("Training curves", "Confusion matrix", "Per-class precision", "Most confident mistakes",
                    "Hyperparameters", "model.backbone"):
        assert heading in page


def test_confusion_matrix_and_per_class_scores_match_evaluate(trained_run, report_dir):
    import tfl

    evaluated = tfl.evaluate(trained_run.run_dir)
    confusion = _json(report_dir, "confusion_matrix.json")
    assert confusion["class_names"] == evaluated["class_names"] == ["ants", "bees"]
    assert confusion["matrix"] == evaluated["confusion_matrix"]
    assert sum(map(sum, confusion["matrix"])) == 153
    assert confusion["accuracy"] == pytest.approx(evaluated["accuracy"], abs=1e-9)
    scores = _json(report_dir, "evaluation.json")["per_class"]
    for name, s in evaluated["per_class"].items():
        for key in ("precision", "recall", "f1", "support"):
            assert scores[name][key] == pytest.approx(s[key], abs=1e-9)
    _check_cells_follow_counts(report_dir, confusion)


def test_curves_mistakes_and_hyperparameters_hold_the_run_numbers(trained_run, report_dir):
    with open(os.path.join(trained_run.run_dir, "history.json"), encoding="utf-8") as f:
        history = json.load(f)
    curves = _json(report_dir, "training_curves.json")
    n1, n2 = len(history["stage1"]["val_accuracy"]), len(history["stage2"]["val_accuracy"])
    assert curves["stage"] == [1] * n1 + [2] * n2 and curves["boundary"] == n1 + 0.5
    for key in ("accuracy", "val_accuracy", "loss", "val_loss"):
        assert curves["series"][key] == pytest.approx(history["stage1"][key] + history["stage2"][key])

    mistakes = _json(report_dir, "mistakes.json")
    matrix = np.array(_json(report_dir, "confusion_matrix.json")["matrix"])
    assert mistakes["num_errors"] == matrix.sum() - np.trace(matrix)
    shown = mistakes["mistakes"]
    assert len(shown) == min(16, mistakes["num_errors"]) > 0
    assert all(m["true"] != m["predicted"] and m["confidence"] > m["true_probability"] for m in shown)
    assert [m["confidence"] for m in shown] == sorted((m["confidence"] for m in shown), reverse=True)
    assert all(f"/val/{m['true']}/" in m["path"] for m in shown)  # the true label is the file's folder

    hyper = _json(report_dir, "hyperparameters.json")
    assert hyper["model.backbone"] == "mobilenet_025" and hyper["model.image_size"] == 224


def test_the_page_counts_every_mistake_it_does_not_show(report_dir):
    """The confusion matrix's off-diagonal total is the count on the page, next to how many are drawn."""
    mistakes = _json(report_dir, "mistakes.json")
    matrix = np.array(_json(report_dir, "confusion_matrix.json")["matrix"])
    errors, shown = int(matrix.sum() - np.trace(matrix)), len(mistakes["mistakes"])
    assert mistakes["num_errors"] == errors and mistakes["num_shown"] == shown
    with open(os.path.join(report_dir, "index.html"), encoding="utf-8") as f:
        page = f.read()
    count = re.search(r'<p id="mistakes-count">([^<]*)</p>', page).group(1)
    if shown < errors:
        assert count.startswith(f"{shown} of {errors} mistakes on the val split ({matrix.sum()} images)"), count
    else:
        assert count.startswith(f"All {errors} mistakes on the val split"), count
    assert f"<td>{errors} of {matrix.sum()}</td>" in page  # the summary row
    table = re.findall(r"<tr><td>(\d+)</td><td class=l>", page)
    assert table == [str(k) for k in range(1, shown + 1)]


def _blurred(image):
    return np.asarray(image.resize((max(1, image.width // 4), max(1, image.height // 4)), Image.Resampling.BOX),
                      dtype=float)


def _check_letterboxed(folder, info, originals):
    """Each thumbnail has its photo's proportions, sits centred in its square cell on the bar colour, and
    looks like its photo scaled down (not stretched, not another photo)."""
    with Image.open(os.path.join(folder, info["image"]["file"])) as im:
        grid = np.asarray(im.convert("RGB"), dtype=float)
    background = np.array(info["background"], dtype=float)
    box = info["box"]
    for cell, original in zip(info["cells"], originals):
        x, y, w, h = cell["x"], cell["y"], cell["width"], cell["height"]
        width, height = original.size
        scale = box / max(width, height)  # the photo scaled to fit the cell, each side rounded
        assert abs(w - width * scale) <= 0.5 + 1e-9 and abs(h - height * scale) <= 0.5 + 1e-9, (cell, original.size)
        # 256 colours with dithering: pixels stray, 4x4 averages do not. On the real run's photos this is
        # 1-5 grey levels against 10-37 for the photo stretched to the square and cropped to the same box.
        photo = _blurred(Image.fromarray(grid[y:y + h, x:x + w].astype(np.uint8)))
        expected = _blurred(original.convert("RGB").resize((w, h), Image.Resampling.LANCZOS))
        assert np.abs(photo - expected).mean() < 7, (cell, np.abs(photo - expected).mean())
        cell_x, cell_y = x - (box - w) // 2, y - (box - h) // 2
        bars = np.concatenate([grid[cell_y:y, cell_x:cell_x + box].reshape(-1, 3),
                               grid[y + h:cell_y + box, cell_x:cell_x + box].reshape(-1, 3),
                               grid[cell_y:cell_y + box, cell_x:x].reshape(-1, 3),
                               grid[cell_y:cell_y + box, x + w:cell_x + box].reshape(-1, 3)])
        assert len(bars) == box * box - w * h
        assert (bars == background).all(), f"the bars around {cell} are not {background}"


def test_mistake_thumbnails_keep_the_photos_proportions(report_dir):
    mistakes = _json(report_dir, "mistakes.json")
    assert mistakes["image"]["file"] == "mistakes.png" and len(mistakes["cells"]) == len(mistakes["mistakes"])
    originals = [Image.open(m["path"]) for m in mistakes["mistakes"]]
    assert [(m["image_width"], m["image_height"]) for m in mistakes["mistakes"]] == [o.size for o in originals]
    assert any(o.width != o.height for o in originals)  # there are bars to check
    _check_letterboxed(report_dir, mistakes, originals)


def test_the_kept_epoch_is_starred_on_the_curves(trained_run, report_dir):
    with open(os.path.join(trained_run.run_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    curves = _json(report_dir, "training_curves.json")
    stage, epoch = metrics["best_stage"], metrics[f"stage{metrics['best_stage']}"]["best_epoch"]
    kept = curves["kept"]
    n1 = curves["stage"].count(1)
    assert (kept["stage"], kept["epoch"], kept["index"]) == (stage, epoch, epoch + (n1 if stage == 2 else 0))
    for metric in ("val_accuracy", "val_loss"):
        assert kept["values"][metric] == pytest.approx(curves["series"][metric][kept["index"] - 1])
    assert kept["values"]["val_accuracy"] == pytest.approx(metrics[f"stage{stage}"]["val_accuracy"])
    with Image.open(os.path.join(report_dir, "training_curves.png")) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=int)
    star = np.array([220, 20, 60])  # crimson, a colour no curve has
    for metric, (x, y) in kept["marker_px"].items():
        around = pixels[int(y) - 4:int(y) + 5, int(x) - 4:int(x) + 5].reshape(-1, 3)
        assert (np.abs(around - star).sum(axis=1) < 40).sum() >= 20, f"no star at the kept {metric}"
    elsewhere = pixels.copy()
    for x, y in kept["marker_px"].values():
        elsewhere[int(y) - 12:int(y) + 13, int(x) - 12:int(x) + 13] = 255
    legend = (np.abs(elsewhere - star).sum(axis=2) < 40).sum()
    assert legend < 400, "crimson away from the stars (beyond the two legend entries)"
    with open(os.path.join(report_dir, "index.html"), encoding="utf-8") as f:
        assert f"marks the kept model: stage {stage}, epoch {epoch}" in f.read()


def test_report_regenerates_from_the_saved_run(trained_run, report_dir, tmp_path):
    import tfl

    out = tmp_path / "again"  # from model.keras and the data on disk, not the trainer's memory
    assert tfl.report(trained_run.run_dir, str(out), max_mistakes=4) == str(out / "index.html")
    assert _json(out, "confusion_matrix.json")["matrix"] == _json(report_dir, "confusion_matrix.json")["matrix"]
    assert len(_json(out, "mistakes.json")["mistakes"]) == 4


def test_cli_refuses_a_folder_that_is_neither_run_nor_search(tmp_path):
    proc = run_tfl("report", str(tmp_path), check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"tfl: error: {tmp_path} is neither a tfl run folder (no config.json) nor a tuning search folder "
        "(no trials.json or keras-tuner trial.json files)"]


def test_thumbnails_are_letterboxed_and_the_grid_stays_under_the_limit(tmp_path):
    """Wide, tall and square photos keep their proportions; photos of noise still fit in the budget."""
    from tfl.reports import _plots

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:300]
    smooth = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    originals = [Image.fromarray(smooth[:90, :300]), Image.fromarray(smooth[:300, :75]),
                 Image.fromarray(smooth[:200, :200]), Image.fromarray(smooth[:7, :300, 0])]  # the last one grey
    info = _plots.thumbnail_grid([np.asarray(o) for o in originals], ["wide", "tall", "square", "grey\nstrip"],
                                 str(tmp_path / "grid.png"), title="four")
    assert info["box"] == _plots.THUMBNAIL
    _check_letterboxed(str(tmp_path), info, originals)

    assert _plots.PNG_BUDGET < PNG_LIMIT
    # Noise does not compress: 4 photos of it take ~100 KB at full size, so a 50 KB budget needs smaller cells.
    noise = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(4)]
    info = _plots.thumbnail_grid(noise, [f"noise {k}" for k in range(4)], str(tmp_path / "noise.png"), budget=50_000)
    assert os.path.getsize(tmp_path / "noise.png") <= 50_000
    assert info["box"] < _plots.THUMBNAIL and len(info["cells"]) == 4  # smaller cells, every photo


def test_confusion_png_cells_follow_a_known_matrix(tmp_path):
    from tfl.reports import _plots

    matrix = [[50, 3, 0], [10, 35, 5], [1, 20, 40]]
    info = _plots.confusion_matrix(matrix, ["cat", "dog", "a very long class name indeed"],
                                   str(tmp_path / "confusion_matrix.png"))
    assert info["matrix"] == matrix
    _check_cells_follow_counts(str(tmp_path), info)


TRIALS = [
    {"trial_id": "00", "hyperparameters": {"lr": 1e-4, "unfreeze": "2blocks", "dropout": 0.2}, "score": 0.81},
    {"trial_id": "01", "hyperparameters": {"lr": 1e-3, "unfreeze": "all", "dropout": 0.2}, "score": 0.90},
    {"trial_id": "02", "hyperparameters": {"lr": 1e-2, "unfreeze": "2blocks", "dropout": 0.5}, "score": 0.62},
    {"trial_id": "03", "hyperparameters": {"lr": 3e-4, "unfreeze": "none", "dropout": 0.3}, "score": 0.86},
    {"trial_id": "04", "hyperparameters": {"lr": 3e-3, "unfreeze": "all", "dropout": 0.5}, "score": None,
     "status": "FAILED"},
]


def test_search_page_ranks_trials_and_plots_score_per_hyperparameter(tmp_path):
    from tfl.reports.report import report_search

    path = report_search(TRIALS, str(tmp_path / "report"))
    folder = os.path.dirname(path)
    summary = _json(folder, "search.json")
    assert [t["trial_id"] for t in summary["trials"]] == ["01", "03", "00", "02", "04"]
    assert summary["best"]["trial_id"] == "01" and summary["direction"] == "max"
    panels = summary["plot"]["panels"]
    assert set(panels) == {"lr", "unfreeze", "dropout"}
    assert panels["lr"]["scale"] == "log" and panels["dropout"]["scale"] == "linear"
    assert panels["unfreeze"]["scale"] == "categorical"
    scored = [t for t in TRIALS if t["score"] is not None]
    assert panels["lr"]["values"] == [t["hyperparameters"]["lr"] for t in scored]
    assert panels["lr"]["scores"] == [t["score"] for t in scored]  # the failed trial is not plotted
    with Image.open(os.path.join(folder, "search.png")) as im:
        assert im.format == "PNG" and im.size == (summary["plot"]["image"]["width"], summary["plot"]["image"]["height"])
    assert os.path.getsize(os.path.join(folder, "search.png")) < PNG_LIMIT
    with open(path, encoding="utf-8") as f:
        page = f.read()
    assert 'src="search.png"' in page and "FAILED" in page
    rows = re.findall(r"<tr[^>]*><td>[^<]*</td><td class=l>(\d+)</td>", page)
    assert rows == ["01", "03", "00", "02", "04"]

    lower = report_search([{**t, "score": None if t["score"] is None else 1 - t["score"]} for t in TRIALS],
                          str(tmp_path / "loss"), objective="val_loss")
    assert _json(os.path.dirname(lower), "search.json")["best"]["trial_id"] == "01"


def test_tfl_report_on_a_keras_tuner_search_folder(tmp_path):
    """keras-tuner writes DIR/<project>/trial_<id>/trial.json with hyperparameters under `values`."""
    for t in TRIALS:
        folder = tmp_path / "search" / "tfl" / f"trial_{t['trial_id']}"
        folder.mkdir(parents=True)
        kt = {"trial_id": t["trial_id"], "status": t.get("status", "COMPLETED"), "score": t["score"],
              "hyperparameters": {"space": [], "values": t["hyperparameters"]}, "metrics": {"metrics": {}}}
        (folder / "trial.json").write_text(json.dumps(kt))
    proc = run_tfl("report", str(tmp_path / "search"), timeout=120)
    page = proc.stdout.strip()
    assert page == str(tmp_path / "search" / "report" / "index.html") and os.path.isfile(page)
    assert _json(os.path.dirname(page), "search.json")["best"]["hyperparameters"]["unfreeze"] == "all"


def test_search_folder_written_by_tfl_tune_layout(tmp_path):
    """DIR/trials.json (rows as `tfl tune` writes them), its objective in DIR/search.json, DIR/best's report."""
    from tfl.reports.report import report

    search = tmp_path / "search"
    (search / "best" / "report").mkdir(parents=True)
    (search / "best" / "report" / "index.html").write_text("<html></html>")
    rows = [{**t, "score": None if t["score"] is None else 1 - t["score"], "status": t.get("status", "COMPLETED"),
             "metrics": {}, "run_dir": str(search / "trials" / t["trial_id"])} for t in TRIALS]
    (search / "trials.json").write_text(json.dumps(rows))
    (search / "search.json").write_text(json.dumps({"objective": "val_loss", "tuner": "random"}))
    page = report(str(search))
    summary = _json(os.path.dirname(page), "search.json")
    assert summary["objective"] == "val_loss" and summary["direction"] == "min"
    assert summary["best"]["trial_id"] == "01"
    with open(page, encoding="utf-8") as f:
        assert 'href="../best/report/index.html"' in f.read()
