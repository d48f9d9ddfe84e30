"""Data checks on a bad-input corpus that the tests build themselves.

Every case has its expected outcome: accepted (trains, decodes through the
real tf.data pipeline), skipped with a report line naming the file, or a
one-line refusal (exit 2). No case may show a Python traceback.
"""

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib

import pytest
from helpers import REPO, run_tfl
from PIL import Image

from tfl.data import checks
from tfl.errors import UsageError

GOOD_PER_CLASS = 8

# name -> (class folder, expected outcome, text the report line must contain)
CASES = {
    "corrupt.jpg": ("ants", "skipped", "cannot decode JPEG"),
    "badheader.jpg": ("ants", "skipped", "corrupt JPEG"),
    "truncated.jpg": ("ants", "skipped", "truncated"),
    "zero.jpg": ("ants", "skipped", "empty file"),
    "notes.jpg": ("ants", "skipped", "text file"),
    "scan.tiff": ("ants", "skipped", "unsupported format TIFF"),
    "phone.heic": ("bees", "skipped", "unsupported format HEIC"),
    "huge.png": ("bees", "skipped", "too large"),
    "gray.jpg": ("ants", "accepted", None),
    "cmyk.jpg": ("ants", "accepted", None),
    "nested/deeper/ant.jpg": ("ants", "accepted", None),
    "fourmi_été_蚂蚁.jpg": ("ants", "accepted", None),
    "tiny.jpg": ("ants", "warning", "smaller than"),
    "alpha.png": ("bees", "accepted", None),
    "deep16.png": ("bees", "accepted", None),
    "anim.gif": ("bees", "accepted", None),
}


def write_png_bomb(path, side=20000):
    """A real side x side grey PNG (400 megapixels) written row by row: ~2 MB on disk."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(1)
    rows = (b"\x00" + b"\x80" * side) * 100  # filter byte + grey pixels, 100 rows at a time
    body = b"".join(comp.compress(rows) for _ in range(side // 100)) + comp.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _make_case(name, path, photo, photo_bytes):
    garbage = random.Random(0).randbytes(4000)
    if name == "corrupt.jpg":  # intact headers, garbage image data
        data = photo_bytes[: photo_bytes.index(b"\xff\xda") + 20] + garbage + b"\xff\xd9"
    elif name == "badheader.jpg":
        data = photo_bytes[:2] + garbage
    elif name == "truncated.jpg":
        data = photo_bytes[: len(photo_bytes) * 6 // 10]
    elif name == "zero.jpg":
        data = b""
    elif name == "notes.jpg":
        data = "these are my notes, not a photo\n".encode()
    elif name == "phone.heic":  # the ISO-BMFF header an iPhone HEIC starts with
        data = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(2000)
    else:
        data = None
    if data is not None:
        with open(path, "wb") as f:
            f.write(data)
        return
    if name == "huge.png":
        write_png_bomb(path)
    elif name == "scan.tiff":
        photo.save(path, format="TIFF")
    elif name == "gray.jpg":
        photo.convert("L").save(path)
    elif name == "cmyk.jpg":
        photo.convert("CMYK").save(path)
    elif name == "tiny.jpg":
        photo.resize((10, 10)).save(path)
    elif name == "alpha.png":
        rgba = photo.convert("RGBA")
        rgba.putalpha(128)
        rgba.save(path)
    elif name == "deep16.png":
        photo.convert("L").point(lambda v: v * 257, "I").convert("I;16").save(path)
    elif name == "anim.gif":
        frames = [photo.convert("P"), photo.rotate(90).convert("P"), photo.rotate(180).convert("P")]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    else:
        shutil.copy(photo.filename, path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, hymenoptera):
    """mixed/: good hymenoptera images plus every bad case; single/: one class; emptyval/."""
    root = tmp_path_factory.mktemp("corpus")
    mixed = root / "mixed"
    good = {}
    for cls in ("ants", "bees"):
        src = sorted(os.listdir(os.path.join(hymenoptera, "train", cls)))[:GOOD_PER_CLASS + 4]
        for split, names in (("train", src[:GOOD_PER_CLASS]), ("val", src[GOOD_PER_CLASS:])):
            os.makedirs(mixed / split / cls, exist_ok=True)
            for n in names:
                shutil.copy(os.path.join(hymenoptera, "train", cls, n), mixed / split / cls / n)
        good[cls] = [str(mixed / "train" / cls / n) for n in src[:GOOD_PER_CLASS]]
    photo_path = good["ants"][0]
    photo = Image.open(photo_path)
    photo_bytes = open(photo_path, "rb").read()
    for name, (cls, _, _) in CASES.items():
        path = mixed / "train" / cls / name
        os.makedirs(path.parent, exist_ok=True)
        _make_case(name, str(path), photo, photo_bytes)
    os.makedirs(mixed / "train" / "empty_class")
    (mixed / "train" / "README.txt").write_text("class folders are below\n")
    shutil.copy(good["ants"][1], mixed / "val" / "ants" / "copy_of_train.jpg")  # a leak across splits

    single = root / "single"
    for split in ("train", "val"):
        os.makedirs(single / split / "ants")
        shutil.copy(photo_path, single / split / "ants" / "a.jpg")
    emptyval = root / "emptyval"
    for cls in ("ants", "bees"):
        os.makedirs(emptyval / "train" / cls)
        shutil.copy(good[cls][0], emptyval / "train" / cls / "a.jpg")
        os.makedirs(emptyval / "val" / cls)
        (emptyval / "val" / cls / "broken.jpg").write_bytes(b"")
    return {"mixed": str(mixed), "single": str(single), "emptyval": str(emptyval), "good": good}


def _path(corpus, name):
    return os.path.join(corpus["mixed"], "train", CASES[name][0], name)


def test_report_gives_each_case_its_expected_outcome(corpus):
    report = checks.check_data(f"folder:{corpus['mixed']}", backbone="mobilenet_025", image_size=96)
    assert report.class_names == ["ants", "bees"]  # the empty class folder is not a class
    skipped = dict(report.skipped)
    problems = report.problems()
    for name, (_, outcome, text) in CASES.items():
        path = _path(corpus, name)
        lines = [line for line in problems if path in line]
        if outcome == "skipped":
            assert text in skipped.get(path, ""), (name, skipped.get(path))
            assert len(lines) == 1 and text in lines[0], (name, lines)
        elif outcome == "warning":
            assert path not in skipped and len(lines) == 1 and text in lines[0], (name, lines)
        else:
            assert not lines, (name, lines)
    n_skipped = sum(1 for _, outcome, _ in CASES.values() if outcome == "skipped")
    n_used = sum(1 for _, outcome, _ in CASES.values() if outcome != "skipped")
    assert len(report.skipped) == n_skipped
    assert sum(report.counts["train"]) == 2 * GOOD_PER_CLASS + n_used
    assert report.counts["val"] == [5, 4]
    # The rest: empty class folder, stray file, the copy across splits, no label conflict.
    assert any("empty_class: empty class folder" in line for line in problems)
    assert any("README.txt" in line and "outside class folders" in line for line in problems)
    assert report.duplicates == [(corpus["good"]["ants"][1],
                                  os.path.join(corpus["mixed"], "val", "ants", "copy_of_train.jpg"))]
    assert report.conflicts == []
    assert len(problems) == n_skipped + 4  # 3 warnings above + the tiny image


def test_accepted_files_decode_through_the_training_pipeline(corpus):
    """What the check accepts, TensorFlow decodes: no surprise failure mid-epoch."""
    from tfl.data.loading import load_data

    data = load_data(f"folder:{corpus['mixed']}")
    accepted = {_path(corpus, n) for n, (_, outcome, _) in CASES.items() if outcome != "skipped"}
    assert accepted <= set(data.train.paths)
    assert not {_path(corpus, n) for n, c in CASES.items() if c[1] == "skipped"} & set(data.train.paths)
    nested = _path(corpus, "nested/deeper/ant.jpg")
    assert data.train.labels[data.train.paths.index(nested)] == 0  # nested folders keep their class
    batches = list(data.train.dataset(64, 64).as_numpy_iterator())
    images = batches[0][0]
    assert images.shape == (len(data.train), 64, 64, 3)
    assert images.min() >= 0 and images.max() <= 255 and images.std() > 10


def test_imbalance_reports_the_class_weights_training_uses(corpus, tmp_path):
    root = tmp_path / "imbalanced"
    for cls, n in (("ants", 8), ("bees", 2)):
        for split in ("train", "val"):
            os.makedirs(root / split / cls)
            for i in range(n if split == "train" else 1):
                shutil.copy(corpus["good"][cls][i], root / split / cls / f"{i}.jpg")
    report = checks.check_data(f"folder:{root}", class_weight="balanced")
    assert report.counts["train"] == [8, 2] and report.imbalance == 4.0
    # total / (classes * count), the weights Keras receives from _objective.class_weight
    assert report.class_weights == {"ants": 0.625, "bees": 2.5}
    assert checks.balanced_class_weights([8, 2]) == {0: 0.625, 1: 2.5}
    line = [p for p in report.problems() if "warning: class imbalance:" in p]
    assert len(line) == 1 and "ants has 8" in line[0] and "bees 2" in line[0]


def test_refusals_are_one_line(corpus):
    with pytest.raises(UsageError, match="only one class"):
        checks.check_data(f"folder:{corpus['single']}")
    with pytest.raises(UsageError, match="val split .* has no readable images"):
        checks.check_data(f"folder:{corpus['emptyval']}")
    with pytest.raises(UsageError, match=r"badheader.jpg: corrupt JPEG .*8 bad file\(s\); drop --strict"):
        checks.check_data(f"folder:{corpus['mixed']}", strict=True)


def _no_traceback(proc):
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr


def test_cli_check_prints_one_line_per_problem_and_refuses_in_one_line(corpus):
    proc = run_tfl("check", "--data", f"folder:{corpus['mixed']}", "--image-size", "96")
    _no_traceback(proc)
    out = proc.stdout.splitlines()
    for name, (_, outcome, text) in CASES.items():
        if outcome != "accepted":
            lines = [line for line in out if _path(corpus, name) in line]
            assert len(lines) == 1 and text in lines[0], (name, lines)
    assert "  ants: train 13, val 5" in out and "  bees: train 11, val 4" in out
    assert out[-1] == "12 problem(s): 8 file(s) skipped, 4 warning(s)"
    for folder, message in (("single", "only one class (ants)"), ("emptyval", "has no readable images")):
        proc = run_tfl("check", "--data", f"folder:{corpus[folder]}", check=False)
        _no_traceback(proc)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    proc = run_tfl("check", "--data", f"folder:{corpus['mixed']}", "--json")
    report = json.loads(proc.stdout)
    assert len(report["skipped"]) == 8 and report["class_names"] == ["ants", "bees"]


# Runs `tfl check` and prints the process's own peak RSS (VmHWM: reset by exec, unlike
# getrusage's ru_maxrss, which keeps the forking pytest process's size).
_PEAK_RSS = """
import sys
from tfl.cli import main
try:
    main(sys.argv[1:], prog_name="tfl")
finally:
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
    print("peak_kb", hwm.split()[1], file=sys.stderr)
"""


def test_huge_image_is_refused_without_decoding_it(corpus):
    """400 megapixels would take 400 MB decoded: the check reads the header only."""
    proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, "check", "--data", f"folder:{corpus['mixed']}"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "huge.png: image too large (400 megapixels" in proc.stdout
    peak_mb = int(proc.stderr.split("peak_kb")[-1]) / 1024
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"


def test_train_reports_the_same_problems_and_trains_on_the_good_images(corpus, tmp_path):
    out = str(tmp_path / "run")
    proc = run_tfl("train", "--data", f"folder:{corpus['mixed']}", "--image-size", "64", "--epochs", "1",
                   "--fine-tune-epochs", "0", "--batch-size", "8", "--out", out)
    _no_traceback(proc)
    report = checks.check_data(f"folder:{corpus['mixed']}", backbone="mobilenet_025", image_size=64)
    logged = [line[len("[tfl] "):] for line in proc.stderr.splitlines() if line.startswith("[tfl] ")]
    for line in report.problems():
        assert line in logged, line
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["num_train"] == sum(report.counts["train"]) and metrics["skipped"] == 8
    assert os.path.exists(os.path.join(out, "model.keras"))
