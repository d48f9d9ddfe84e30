"""tfl.data.images: header reads and decode checks on tiny real files written with Pillow into tmp_path."""

import hashlib
import io
import random

import pytest
from PIL import Image

from tfl.data import images
from tfl.errors import UsageError


def _save(path, size=(40, 30), mode="RGB", color=(200, 30, 30), **kwargs):
    Image.new(mode, size, color).save(path, **kwargs)
    return str(path)


def _noise_jpeg(width=64, height=48) -> bytes:
    rng = random.Random(0)  # noise: a JPEG long enough that half of it still has a full header
    im = Image.frombytes("RGB", (width, height), bytes(rng.randrange(256) for _ in range(width * height * 3)))
    buf = io.BytesIO()
    im.save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("name,mode,size,fmt", [
    ("a.png", "RGB", (40, 30), "PNG"),
    ("b.jpg", "RGB", (33, 17), "JPEG"),
    ("c.png", "RGBA", (8, 9), "PNG"),
    ("d.png", "L", (5, 3), "PNG"),
    ("e.bmp", "RGB", (10, 12), "BMP"),
    ("f.gif", "P", (6, 6), "GIF"),
])
def test_a_good_image_header(tmp_path, name, mode, size, fmt):
    color = 7 if mode in ("P", "L") else (1, 2, 3, 4)[:len(mode)]
    path = _save(tmp_path / name, size, mode, color)
    info = images.inspect_file(path)
    assert info.problem is None
    assert (info.format, info.width, info.height, info.mode, info.frames) == (fmt, size[0], size[1], mode, 1)
    assert info.digest == hashlib.sha1((tmp_path / name).read_bytes()).hexdigest()
    assert images.check_file(path) is None


def test_an_animated_gif_counts_its_frames(tmp_path):
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    info = images.inspect_file(str(tmp_path / "anim.gif"))
    assert (info.problem, info.format, info.frames) == (None, "GIF", 3)


def test_animated_webp_is_refused_where_webp_is_read(tmp_path):
    if "WEBP" not in images.SUPPORTED_FORMATS:
        pytest.skip("this TensorFlow does not decode WebP: every WebP is unsupported")
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:])
    assert images.check_file(str(tmp_path / "anim.webp")) == "animated WEBP is not supported: convert it to JPEG or PNG"
    assert images.check_file(_save(tmp_path / "still.webp")) is None


def test_a_truncated_jpeg_is_found_by_the_decode(tmp_path):
    data = _noise_jpeg()
    (tmp_path / "t.jpg").write_bytes(data[:len(data) // 2])
    info = images.inspect_file(str(tmp_path / "t.jpg"))
    # The header is intact (size known); only decoding finds the missing half.
    assert (info.format, info.width, info.height) == ("JPEG", 64, 48)
    assert info.problem.startswith("cannot decode JPEG (image file is truncated")


NOT_IMAGES = [
    ("empty.png", b"", "empty file"),
    ("bad.jpg", b"\xff\xd8" + b"\x00" * 50, "corrupt JPEG (cannot decode it)"),
    ("bad.png", b"\x89PNG" + b"\x00" * 50, "corrupt PNG (cannot decode it)"),
    ("doc.jpg", b"%PDF-1.4 ...", "a PDF document, not an image"),
    ("notes.jpg", b"hello, I am text", "a text file, not an image"),
    ("noise.jpg", bytes(range(256)), "not an image (unknown format)"),
    ("photo.jpg", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 20,
     "unsupported format HEIC/HEIF (iPhone photo): convert it to JPEG or PNG"),
    ("clip.jpg", b"\x00\x00\x00\x18ftypisom" + b"\x00" * 20,
     "unsupported format (isom video or image container): not an image"),
    ("photo.avif", bytes(range(128, 256)), "unsupported format AVIF: convert it to JPEG or PNG"),
    ("x.jxl", b"\xff\x0a" + b"\x00" * 20, "unsupported format JPEG XL: convert it to JPEG or PNG"),
]


@pytest.mark.parametrize("name,contents,problem", NOT_IMAGES, ids=[row[0] for row in NOT_IMAGES])
def test_what_is_not_an_image(tmp_path, name, contents, problem):
    (tmp_path / name).write_bytes(contents)
    assert images.check_file(str(tmp_path / name)) == problem


def test_an_unsupported_format_is_named(tmp_path):
    info = images.inspect_file(_save(tmp_path / "scan.tif", (8, 8), "L", 0))
    assert info.problem == "unsupported format TIFF: convert it to JPEG or PNG"
    assert (info.format, info.width, info.height) == ("TIFF", 8, 8)


def test_a_huge_image_is_refused_from_its_header(tmp_path):
    path = _save(tmp_path / "huge.png", (8001, 8001), "1", 0)  # 64 million pixels, 8 KB of PNG
    assert images.check_file(path) == "image too large (8001x8001): downscale it below 64 megapixels"


def test_a_file_that_cannot_be_read(tmp_path):
    assert images.check_file(str(tmp_path / "missing.jpg")) == "cannot read (No such file or directory)"


def test_check_files_lists_only_the_bad_ones_in_order(tmp_path):
    good = _save(tmp_path / "good.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_bytes(b"plain text")
    paths = [str(tmp_path / "empty.jpg"), good, str(tmp_path / "text.png")]
    # decode=False: the TensorFlow decode pass is tested in tests/test_messy_folders.py, not in the unit layer.
    assert images.check_files(paths, decode=False) == [(paths[0], "empty file"),
                                                       (paths[2], "a text file, not an image")]
    assert [i.path for i in images.inspect_files(paths, decode=False)] == paths


def test_duplicates_share_a_digest(tmp_path):
    a = _save(tmp_path / "a.png")
    (tmp_path / "copy.png").write_bytes((tmp_path / "a.png").read_bytes())
    b = _save(tmp_path / "b.png", color=(0, 0, 0))
    infos = images.inspect_files([a, str(tmp_path / "copy.png"), b], decode=False)
    assert infos[0].digest == infos[1].digest != infos[2].digest


def test_listing_skips_hidden_entries_and_is_sorted(tmp_path):
    for rel in ("train/bees/2.jpg", "train/bees/1.jpg", "train/ants/a.jpg", "train/.hidden/x.jpg",
                "train/ants/.DS_Store", "val/ants/b.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert images.class_folders(str(tmp_path / "train")) == ["ants", "bees"]
    assert images.class_folders(str(tmp_path / "missing")) == []
    expected = [str(tmp_path / "train" / p) for p in ("ants/a.jpg", "bees/1.jpg", "bees/2.jpg")]
    assert images.list_files(str(tmp_path / "train")) == expected
    one = str(tmp_path / "val" / "ants" / "b.jpg")
    assert images.list_images([one, str(tmp_path / "train")]) == [one] + expected


def test_list_images_refuses_a_missing_path(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(UsageError) as info:
        images.list_images([missing])
    assert str(info.value) == f"{missing}: no such file or folder"
