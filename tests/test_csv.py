"""The `csv:` source and tables of labels, on real photos from ../shared, through the real command line.

Bad tables get one line each naming the row (a refusal, exit 2, or a skipped row that `tfl check` reports);
a single-label CSV of the hymenoptera files trains exactly as `folder:` does on the same split.
"""

import csv
import json
import os
import shutil

import numpy as np
import pytest
from helpers import run_tfl

PER_CLASS = 6


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, hymenoptera):
    """A folder with a few real ants and bees photos, and the rows of a good CSV of them (paths relative)."""
    root = tmp_path_factory.mktemp("csvdata")
    rows = []
    for cls in ("ants", "bees"):
        names = sorted(os.listdir(os.path.join(hymenoptera, "train", cls)))[:PER_CLASS + 2]
        os.makedirs(root / "img" / cls)
        for i, name in enumerate(names):
            shutil.copy(os.path.join(hymenoptera, "train", cls, name), root / "img" / cls / name)
            rows.append([f"img/{cls}/{name}", cls, "train" if i < PER_CLASS else "val"])
    return root, rows


def _check(path, *args, check=False):
    proc = run_tfl("check", "--data", f"csv:{path}", *args, check=check)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def _refused(proc):
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfl: error: "), proc.stderr
    return lines[0]


def test_a_good_csv_is_checked_like_a_folder(photos):
    root, rows = photos
    proc = _check(_write(root / "good.csv", ["path", "label", "split"], rows), check=True)
    out = proc.stdout.splitlines()
    assert out[0].endswith("2 classes; images per split: train 12, val 4")
    assert out[1] == "splits: good.csv (columns path, label, split); validation from its val rows"
    assert "  ants: train 6, val 2" in out and out[-1] == "no problems found"


def test_a_missing_column_is_one_line_naming_the_header(photos):
    root, rows = photos
    line = _refused(_check(_write(root / "nolabel.csv", ["path", "split"], [[p, s] for p, _, s in rows])))
    assert "nolabel.csv row 1 (header): no label column" in line and "--label-column" in line
    line = _refused(_check(root / "nolabel.csv", "--label-column", "kind"))
    assert "no column 'kind' (columns: path, split)" in line


def test_a_path_that_does_not_exist_is_one_line_naming_the_row(photos):
    root, rows = photos
    bad = rows[:4] + [["img/ants/gone.jpg", "ants", "train"]] + rows[4:]  # row 6 (the header is row 1)
    path = _write(root / "gone.csv", ["path", "label", "split"], bad)
    proc = _check(path, check=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("skipped", "warning"))]
    assert lines == [f"skipped gone.csv row 6: img/ants/gone.jpg ({root / 'img' / 'ants' / 'gone.jpg'}) does not "
                     "exist: fix the path or delete the row"]
    assert proc.stdout.splitlines()[-1] == "1 problem(s): 1 file(s) skipped, 0 warning(s)"
    line = _refused(_check(path, "--strict"))
    assert "gone.csv row 6" in line and "does not exist" in line and "drop --strict" in line


def test_an_empty_label_cell_is_one_line_naming_the_row(photos):
    root, rows = photos
    bad = [list(r) for r in rows]
    bad[2][1] = ""  # row 4
    proc = _check(_write(root / "empty.csv", ["path", "label", "split"], bad), check=True)
    problems = [line for line in proc.stdout.splitlines() if line.startswith(("skipped", "warning"))]
    assert problems == [f"skipped empty.csv row 4 ({bad[2][0]}): empty label cell: give it a label or delete the row"]


def test_a_class_only_in_val_is_one_line_naming_the_row(photos):
    root, rows = photos
    other = sorted(os.listdir(root / "img" / "bees"))[0]
    shutil.copy(root / "img" / "bees" / other, root / "img" / "wasp.jpg")
    line = _refused(_check(_write(root / "valonly.csv", ["path", "label", "split"],
                                  rows + [["img/wasp.jpg", "wasps", "val"]])))
    assert line == ("tfl: error: valonly.csv row 18: class 'wasps' is only in val (no training row has it): add "
                    "training images of it or remove the row")


def test_several_labels_without_multi_label_are_refused_by_row(photos):
    root, rows = photos
    tagged = [[p, f"{c} landscape" if i == 3 else c, s] for i, (p, c, s) in enumerate(rows)]
    path = _write(root / "tags.csv", ["path", "tags", "split"], tagged)
    line = _refused(_check(path, "--label-delimiter", " "))
    assert line == (f"tfl: error: tags.csv row 5: {os.path.basename(rows[3][0])} has 2 labels (ants, landscape): "
                    "train with --multi-label, or give each image one label")
    out = _check(path, "--label-delimiter", " ", "--multi-label", check=True).stdout.splitlines()
    assert "3 labels (multi-label: images with each label)" in out[0] and "  landscape: train 1, val 0" in out


def test_unreadable_files_and_no_split_column(photos):
    root, rows = photos
    (root / "img" / "broken.jpg").write_bytes(b"")
    no_split = [[p, c] for p, c, _ in rows] + [["img/broken.jpg", "ants"]]
    proc = _check(_write(root / "nosplit.csv", ["filename", "class"], no_split), check=True)
    out = proc.stdout.splitlines()
    assert f"skipped {root / 'img' / 'broken.jpg'}: empty file" in out
    assert out[1] == ("splits: nosplit.csv (columns filename, class); no split column: 20% of train held out "
                      "for validation")
    assert out[0].endswith("images per split: train 12, val 4")


def test_load_data_takes_a_dataframe_and_a_list(photos):
    import pandas as pd

    import tfl

    root, rows = photos
    df = pd.DataFrame(rows, columns=["path", "label", "split"])
    data = tfl.load_data(df, root=str(root))
    assert data.class_names == ["ants", "bees"] and not data.multi_label
    assert (len(data.train), len(data.val)) == (12, 4) and data.train.labels[:2] == [0, 0]
    assert data.source == "table" and data.files  # every file was checked
    listed = tfl.load_data([(os.path.join(root, p), [c, "outdoor"] if c == "bees" else c) for p, c, _ in rows],
                           multi_label=True, val_fraction=0.25)
    assert listed.multi_label and listed.class_names == ["ants", "bees", "outdoor"]
    x, y = next(iter(listed.train.dataset(64, 32)))
    assert x.shape[1:] == (64, 64, 3) and y.shape[1:] == (3,)
    assert sorted(map(tuple, y.numpy().tolist())) == sorted(listed.train.labels)
    assert (1, 0, 0) in listed.train.labels and (0, 1, 1) in listed.train.labels


@pytest.mark.slow
def test_single_label_csv_trains_as_the_folder_does_on_the_same_split(hymenoptera, tmp_path):
    rows = [[os.path.join(split, cls, name), cls, split] for split in ("train", "val") for cls in ("ants", "bees")
            for name in sorted(os.listdir(os.path.join(hymenoptera, split, cls)))]
    # The CSV beside the photos' root would be in ../shared (read-only): absolute paths instead.
    path = _write(tmp_path / "hymenoptera.csv", ["file", "label", "split"],
                  [[os.path.join(hymenoptera, p), c, s] for p, c, s in rows])
    # One cached copy of the images (no augmentation): the same code path, an eighth of the feature pass.
    common = ["--image-size", "128", "--epochs", "10", "--fine-tune-epochs", "3", "--no-augment"]
    scores = {}
    for name, source in (("folder", f"folder:{hymenoptera}"), ("csv", f"csv:{path}")):
        run_tfl("train", "--data", source, *common, "--out", str(tmp_path / name))
        scores[name] = json.loads(run_tfl("evaluate", str(tmp_path / name), "--json").stdout)
    print(f"\nhymenoptera val accuracy at 128 px, 10 + 3 epochs, no augmentation: "
          f"folder {scores['folder']['accuracy']:.4f}, csv {scores['csv']['accuracy']:.4f}")
    assert scores["csv"]["num_images"] == scores["folder"]["num_images"] == 153
    assert scores["csv"]["class_names"] == scores["folder"]["class_names"] == ["ants", "bees"]
    # Same images in the same order with the same seed: the same training (one image of slack for threads).
    assert abs(scores["csv"]["accuracy"] - scores["folder"]["accuracy"]) <= 1 / 153 + 1e-9
    assert scores["csv"]["accuracy"] > 0.75
    assert np.abs(np.array(scores["csv"]["confusion_matrix"]) - scores["folder"]["confusion_matrix"]).sum() <= 2


def test_a_run_trained_on_a_dataframe_keeps_its_rows_as_its_data_source(photos, tmp_path):
    import pandas as pd

    import tfl
    from tfl.config import TrainConfig, apply_overrides
    from tfl.runs import RunFolder

    root, rows = photos
    data = tfl.load_data(pd.DataFrame(rows, columns=["path", "label", "split"]), root=str(root))
    cfg = apply_overrides(TrainConfig(), image_size=64, epochs=2, fine_tune_epochs=0)
    result = tfl.Trainer(cfg, str(tmp_path / "run"), data=data, verbose=0, report=False).fit()
    run = RunFolder(str(tmp_path / "run"))
    assert run.read_config().data.source == f"csv:{tmp_path / 'run' / 'data.csv'}"
    # tfl evaluate needs no --data: the run reads its own rows, in the same splits.
    evaluated = tfl.evaluate(run.path)
    assert evaluated["num_images"] == len(data.val) == 4
    assert evaluated["accuracy"] == pytest.approx(result.val_accuracy, abs=1e-6)
    reloaded = tfl.load_data(run.read_config().data)
    assert reloaded.train.paths == [os.path.abspath(p) for p in data.train.paths]
    assert reloaded.val.labels == data.val.labels
