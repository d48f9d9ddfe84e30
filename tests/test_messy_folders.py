"""The photo folders people really have: link loops, broken and duplicate links, special files, names that
are not UTF-8, and images that decode but are damaged. Everything is made by the tests from real photos.

Every case ends as one line naming the file or folder (or as an image counted once), never a traceback,
and `tfl check` and `tfl train` say the same.
"""

import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from helpers import REPO
from PIL import Image, ImageFile

from tfl.data import checks, images

PER_CLASS = 6


def _real_photos(hymenoptera, cls, start, n):
    folder = os.path.join(hymenoptera, "train", cls)
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder))[start:start + n]]


def zeroed_jpeg(data: bytes, libjpeg_silent: bool) -> bytes:
    """`data` with 500 bytes in the middle of its image data zeroed (the issue's damage).

    libjpeg notices such damage in about 6 files of 7 (the rest decode smeared without a word):
    `libjpeg_silent` picks an offset where it says nothing, so only tfl's own check can find it.
    """
    start = data.index(b"\xff\xda")
    for frac in np.linspace(0.3, 0.7, 41):
        at = int(start + (len(data) - start) * frac)
        damaged = data[:at] + bytes(500) + data[at + 500:]
        if libjpeg_silent != _libjpeg_complains(damaged):
            return damaged
    raise AssertionError("no offset gave the wanted libjpeg behaviour")


def _libjpeg_complains(data) -> bool:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        f.write(data)
        f.flush()
        return bool(images.decode_problems([f.name]))  # TensorFlow's decode only, not tfl's structure check


def tfl(*args):
    """`tfl ARGS` in a subprocess; output decoded as the file system does (names need not be UTF-8)."""
    proc = subprocess.run([sys.executable, "-m", "tfl", *args], capture_output=True, cwd=REPO, timeout=900)
    out, err = (b.decode("utf-8", "surrogateescape") for b in (proc.stdout, proc.stderr))
    assert "Traceback" not in err, err
    return proc.returncode, out, err


def garbage_jpeg(data: bytes) -> bytes:
    """200 random bytes written over the middle of the image data: libjpeg warns, Pillow loads it."""
    start = data.index(b"\xff\xda")
    at = start + (len(data) - start) // 2
    noise = bytes(b if b != 0xFF else 0 for b in random.Random(3).randbytes(200))
    return data[:at] + noise + data[at + 200:]


def truncated_png(photo: str) -> bytes:
    buf = io.BytesIO()
    Image.open(photo).save(buf, "PNG")
    data = buf.getvalue()
    return data[:len(data) * 2 // 3]


@pytest.fixture(scope="module")
def messy(tmp_path_factory, hymenoptera):
    """photos/train/{ants,bees} + val/, real photos, and every mess next to them.

    Returns the root and, per split and class, the real image files the walk must list (each once).
    """
    root = tmp_path_factory.mktemp("messy") / "photos"
    outside = root.parent / "elsewhere"
    os.makedirs(outside)
    expected = {}
    for cls in ("ants", "bees"):
        for split, start, n in (("train", 0, PER_CLASS), ("val", PER_CLASS, 3)):
            folder = root / split / cls
            os.makedirs(folder)
            for src in _real_photos(hymenoptera, cls, start, n):
                shutil.copy(src, folder)
            expected[(split, cls)] = sorted(str(folder / f) for f in os.listdir(folder))
    ants, bees = root / "train" / "ants", root / "train" / "bees"
    photo = sorted(os.listdir(bees))[0]
    data = (bees / photo).read_bytes()

    os.symlink("..", bees / "loop")                             # the loop: bees/loop -> train/
    os.symlink(os.path.abspath(root), ants / "to_the_root")     # a link to a folder above
    os.symlink("/", ants / "slash")                             # ... and to the top of the file system
    os.symlink("gone.jpg", bees / "broken.jpg")                 # a broken link
    os.symlink("itself.jpg", bees / "itself.jpg")               # a link to itself
    os.symlink(photo, bees / "again.jpg")                       # a second name for a file (a link)
    os.link(bees / photo, bees / "hardlink.jpg")                # ... and a hard link
    os.mkfifo(ants / "pipe.jpg")                                # a named pipe: reading it would hang
    # A folder outside the dataset, linked twice: its photo counts once, under its first link.
    extra = _real_photos(hymenoptera, "ants", 20, 1)[0]
    shutil.copy(extra, outside / "far.jpg")
    os.symlink(str(outside), ants / "more")
    os.symlink(str(outside), ants / "more_again")
    expected[("train", "ants")].append(str(ants / "more" / "far.jpg"))
    # A single photo outside the dataset, linked.
    shutil.copy(_real_photos(hymenoptera, "ants", 21, 1)[0], outside / "single.jpg")
    os.symlink(str(outside / "single.jpg"), ants / "linked.jpg")
    expected[("train", "ants")].append(str(ants / "linked.jpg"))
    # A name that is not UTF-8 (Latin-1 "abeille_été.jpg" from an old archive): a good photo.
    latin1 = os.fsdecode(b"abeille_\xe9t\xe9.jpg")
    shutil.copy(_real_photos(hymenoptera, "bees", 30, 1)[0], os.path.join(bees, latin1))
    expected[("train", "bees")].append(os.path.join(str(bees), latin1))
    # Damaged images that decode.
    damaged = {
        "zeroed_silent.jpg": (zeroed_jpeg(data, libjpeg_silent=True), "500 zero bytes"),
        "zeroed.jpg": (zeroed_jpeg(data, libjpeg_silent=False), "damaged JPEG"),
        "garbage.jpg": (garbage_jpeg(data), "damaged JPEG (libjpeg: Corrupt JPEG data"),
        "cut_then_closed.jpg": (data[:len(data) * 2 // 3] + b"\xff\xd9", "premature end of data segment"),
        "cut.png": (truncated_png(str(bees / photo)), "PNG"),
    }
    for name, (content, _) in damaged.items():
        (bees / name).write_bytes(content)
    # A damaged image whose name is not UTF-8 either.
    bad_name = os.fsdecode(b"d\xe9g\xe2t.jpg")
    with open(os.path.join(bees, bad_name), "wb") as f:
        f.write(garbage_jpeg(data))
    skipped = {str(bees / n): text for n, (_, text) in damaged.items()}
    skipped[os.path.join(str(bees), bad_name)] = "damaged JPEG"
    skipped[str(bees / "broken.jpg")] = "broken link to gone.jpg"
    skipped[str(bees / "itself.jpg")] = "leads back to itself"
    skipped[str(ants / "pipe.jpg")] = "not a regular file (a named pipe)"
    loops = [str(bees / "loop"), str(ants / "to_the_root"), str(ants / "slash")]
    return {"root": str(root), "expected": expected, "skipped": skipped, "loops": loops,
            "twice": str(ants / "more_again")}


def test_walk_lists_each_real_file_once_and_names_each_loop(messy):
    for (split, cls), files in messy["expected"].items():
        walk = images.Walk(os.path.join(messy["root"], split, cls))
        listed = [p for p in walk.files if p not in messy["skipped"]]
        assert sorted(listed) == sorted(files), (split, cls)
    walk = images.Walk(os.path.join(messy["root"], "train", "bees"))
    assert [n for n in walk.notes if "loop" in n] == [
        f"{messy['loops'][0]} links back to {os.path.realpath(os.path.join(messy['root'], 'train'))}, "
        "a folder that contains it (a loop): not followed"]
    assert any("2 file(s) reached a second time" in n for n in walk.notes)  # again.jpg and hardlink.jpg
    ants = images.Walk(os.path.join(messy["root"], "train", "ants"))
    assert any("1 file(s) reached a second time" in n for n in ants.notes)  # single.jpg: linked, and in more/


def test_cli_check_counts_real_images_once_and_names_every_problem_in_one_line(messy):
    code, out, _ = tfl("check", "--data", f"folder:{messy['root']}")
    assert code == 0
    lines = out.splitlines()
    for cls in ("ants", "bees"):
        real = len(messy["expected"][("train", cls)])
        assert f"  {cls}: train {real}, val 3" in lines  # the loop made it 10,041 bees
    assert not [line for line in lines if "under two classes" in line or "is a copy of" in line]
    for loop in messy["loops"]:
        named = [line for line in lines if line.startswith(f"warning: {loop} links back to")]
        assert len(named) == 1 and named[0].endswith("(a loop): not followed"), (loop, named)
    assert sum(f"warning: {messy['twice']} is the folder" in line for line in lines) == 1
    for path, reason in messy["skipped"].items():
        named = [line for line in lines if line.startswith(f"skipped {path}: ")]
        assert len(named) == 1 and reason in named[0], (path, named)
    # + 3 loops, the folder linked twice, files reached twice in ants (single.jpg, linked and inside
    # the linked folder) and in bees (again.jpg, hardlink.jpg)
    n = len(messy["skipped"])
    assert lines[-1] == f"{n + 6} problem(s): {n} file(s) skipped, 6 warning(s)"


def test_strict_refuses_the_damaged_images_in_one_line(messy):
    code, out, err = tfl("check", "--data", f"folder:{messy['root']}", "--strict")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "drop --strict to skip them" in err


def test_train_reports_the_same_lines_and_trains_on_the_real_images(messy, tmp_path):
    out = str(tmp_path / "run")
    code, _, err = tfl("train", "--data", f"folder:{messy['root']}", "--weights", "none", "--image-size", "32",
                       "--epochs", "1", "--fine-tune-epochs", "0", "--batch-size", "8", "--out", out)
    assert code == 0, err
    logged = [line[len("[tfl] "):] for line in err.splitlines() if line.startswith("[tfl] ")]
    report = checks.check_data(f"folder:{messy['root']}", backbone="mobilenet_025", image_size=32)
    for line in report.problems():
        # stderr shows a name that is not UTF-8 with backslash escapes (Python's stderr error handler)
        assert line.encode("utf-8", "backslashreplace").decode() in logged, line
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    train = sum(len(messy["expected"][("train", c)]) for c in ("ants", "bees"))
    assert metrics["num_train"] == train and metrics["skipped"] == len(messy["skipped"])


def test_structure_check_flags_none_of_the_shared_photos(shared_dir):
    """No false alarm: every photo of the four shared datasets passes the JPEG/PNG structure checks."""
    paths = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(shared_dir, "datasets"))
             for f in files if f.lower().endswith((".jpg", ".jpeg", ".png"))]
    assert len(paths) > 3700
    flagged = []
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        problem = images.jpeg_damage(data) if data[:2] == b"\xff\xd8" else images.png_damage(data)
        if problem:
            flagged.append((path, problem))
    assert flagged == []


@pytest.mark.parametrize("options", [{}, {"optimize": True}, {"progressive": True},
                                     {"progressive": True, "optimize": True}])
def test_flat_areas_are_not_mistaken_for_zeroed_blocks(options):
    """Optimised Huffman tables can code a flat area as runs of zero bytes: those are real images."""
    rng = np.random.default_rng(0)
    for mode in ("RGB", "L"):
        for background in (0, 128, 255):
            pixels = np.full((768, 768, 3), background, np.uint8)
            pixels[300:460, 300:460] = rng.integers(0, 255, (160, 160, 3))  # a product on a plain background
            buf = io.BytesIO()
            Image.fromarray(pixels).convert(mode).save(buf, "JPEG", quality=90, **options)
            assert images.jpeg_damage(buf.getvalue()) is None, (mode, background)


def test_zeroed_blocks_are_found_where_libjpeg_is_silent(hymenoptera):
    """Of 40 zeroed copies of real photos, tfl's check finds all; libjpeg alone misses some."""
    found = 0
    for i, path in enumerate(_real_photos(hymenoptera, "ants", 0, 20) + _real_photos(hymenoptera, "bees", 0, 20)):
        data = open(path, "rb").read()
        start = data.index(b"\xff\xda")
        at = start + (len(data) - start) * (3 + i % 5) // 10
        found += images.jpeg_damage(data[:at] + bytes(500) + data[at + 500:]) is not None
    assert found == 40


def test_truncated_png_is_found_even_when_pillow_is_told_to_load_truncated_images(messy):
    path = [p for p in messy["skipped"] if p.endswith("cut.png")][0]
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # as many training scripts set it
    try:
        assert images.inspect_file(path).problem.startswith("truncated PNG")
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def test_png_with_a_bad_checksum_is_damaged():
    buf = io.BytesIO()
    Image.fromarray(np.arange(48 * 48 * 3, dtype=np.uint8).reshape(48, 48, 3)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert images.png_damage(bytes(data)) is None
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    assert "checksum of its IDAT chunk" in images.png_damage(bytes(data))


def test_what_pillow_opens_but_tensorflow_cannot_decode_is_named(tmp_path):
    """A black-and-white BMP (a scan): Pillow reads it, TensorFlow's BMP decoder does not, and training
    would fail mid-epoch."""
    path = str(tmp_path / "scan.bmp")
    Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32) % 16 * 16).convert("1").save(path)
    assert images.inspect_file(path).problem is None  # Pillow is happy
    problem = images.check_files([path])
    assert len(problem) == 1 and "TensorFlow, which training uses, cannot decode it" in problem[0][1]


def test_png_chunks_are_read_without_pillow():
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    idat = chunk(b"IDAT", zlib.compress(b"\x00\x00"))
    assert images.png_damage(header + idat + chunk(b"IEND", b"")) is None
    assert images.png_damage(header + idat).startswith("truncated PNG (no end chunk)")
    assert images.png_damage(header + chunk(b"IEND", b"")) == "damaged PNG (no image data): remove it"
