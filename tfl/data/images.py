"""Finding image files on disk and checking that they decode.

Checks use Pillow on a reduced-size decode (JPEG draft mode), which finds
zero-byte, truncated, non-image and unsupported files in about a millisecond
each, so a bad file is reported by path up front instead of failing an epoch.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
import typing


def _tf_decodes_webp() -> bool:
    # tf.io.decode_image reads WebP in recent TensorFlow (verified with 2.21); earlier
    # releases fail mid-epoch on it, so there WebP is reported as unsupported up front.
    from importlib import metadata

    for dist in ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"):
        try:
            major, minor = (int(v) for v in metadata.version(dist).split(".")[:2])
        except (metadata.PackageNotFoundError, ValueError):
            continue
        return (major, minor) >= (2, 21)
    return False


# What tf.io.decode_image reads (Pillow format -> family). MPO is a JPEG with extra frames.
SUPPORTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "BMP": "BMP", "GIF": "GIF"}
if _tf_decodes_webp():
    SUPPORTED_FORMATS["WEBP"] = "WEBP"
# Largest image we decode: beyond this a single file could exhaust memory.
MAX_PIXELS = 64_000_000
# Larger files are not read at all (the check reads a whole file to hash it): a video, a disk image.
MAX_FILE_BYTES = 256 * 1024 * 1024


def class_folders(folder: str) -> typing.List[str]:
    """Sorted names of the visible sub-folders of `folder`."""
    if not os.path.isdir(folder):
        return []
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def list_files(folder: str) -> typing.List[str]:
    """All visible files below `folder`, recursively, in a stable order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
    return out


def list_images(inputs: typing.Sequence[str]) -> typing.List[str]:
    """Expands files and folders (walked recursively) into a list of files."""
    out = []
    for item in inputs:
        if os.path.isdir(item):
            out += list_files(item)
        elif os.path.isfile(item):
            out.append(item)
        else:
            from tfl.errors import UsageError

            raise UsageError(f"{item}: no such file or folder")
    return out


@dataclasses.dataclass
class FileInfo:
    """What one decode check learned about a file.

    Args:
        path: the file.
        problem: why it cannot be used as an image, or None when it can.
        format: the image format Pillow found (JPEG, PNG, ...).
        width: width in pixels (0 when unknown).
        height: height in pixels (0 when unknown).
        mode: Pillow mode (RGB, RGBA, L, CMYK, I;16, ...).
        frames: number of frames (animated GIFs have several; the first is used).
        digest: SHA-1 of the file's bytes (finds duplicates).
    """

    path: str
    problem: typing.Optional[str] = None
    format: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    frames: int = 1
    digest: str = ""


def check_file(path: str) -> typing.Optional[str]:
    """Returns why `path` cannot be used as a training image, or None."""
    return inspect_file(path).problem


def inspect_file(path: str) -> FileInfo:
    """Reads `path` once: its hash, header and a reduced-size decode (never a huge one)."""
    import hashlib
    import io
    import warnings

    from PIL import Image

    info = FileInfo(path)
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            info.problem = f"file too large ({os.path.getsize(path) >> 20} MB) for an image: not read"
            return info
        with open(path, "rb") as f:
            contents = f.read()
    except OSError as e:
        info.problem = f"cannot read ({e.strerror})"
        return info
    info.digest = hashlib.sha1(contents).hexdigest()
    if not contents:
        info.problem = "empty file"
        return info
    try:
        # Pillow warns (to stderr) about large images; the size check below decides instead. A filter,
        # not catch_warnings(), which is not thread-safe (inspect_files runs this in threads).
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(contents)) as im:
            info.format, info.mode = im.format or "unknown", im.mode
            info.width, info.height = im.size
            info.frames = getattr(im, "n_frames", 1)
            fmt = SUPPORTED_FORMATS.get(info.format)
            if fmt is None:
                info.problem = f"unsupported format {info.format}: convert it to JPEG or PNG"
            elif fmt == "WEBP" and info.frames > 1:
                info.problem = "animated WEBP is not supported: convert it to JPEG or PNG"
            elif im.width * im.height > MAX_PIXELS:
                info.problem = (f"image too large ({im.width}x{im.height}): downscale it below "
                                f"{MAX_PIXELS // 1_000_000} megapixels")
            else:
                im.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale, enough to find corruption
                im.load()
    except Image.DecompressionBombError as e:
        size = re.search(r"\((\d+) pixels\)", str(e))
        info.problem = (f"image too large ({int(size.group(1)) // 1_000_000} megapixels, a decompression bomb?): "
                        "downscale it" if size else "image too large (decompression bomb): downscale it")
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e).split("\n")[0]
        if "cannot identify image file" in msg:
            info.problem = _unidentified(contents, path)
        else:
            info.problem = f"cannot decode {info.format or 'image'} ({msg})"
    return info


# Magic numbers of files Pillow cannot open, so that the report names the format.
_MAGIC = ((b"\xff\xd8", "corrupt JPEG (cannot decode it)"),
          (b"\x89PNG", "corrupt PNG (cannot decode it)"),
          (b"GIF8", "corrupt GIF (cannot decode it)"),
          (b"\xff\x0a", "unsupported format JPEG XL: convert it to JPEG or PNG"),
          (b"\x00\x00\x00\x0cJXL ", "unsupported format JPEG XL: convert it to JPEG or PNG"),
          (b"%PDF", "a PDF document, not an image"))
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


def _unidentified(contents: bytes, path: str) -> str:
    for magic, reason in _MAGIC:
        if contents.startswith(magic):
            return reason
    if contents[4:8] == b"ftyp":
        brand = contents[8:12]
        if brand in _HEIF_BRANDS:
            return "unsupported format HEIC/HEIF (iPhone photo): convert it to JPEG or PNG"
        return f"unsupported format ({brand.decode('ascii', 'replace').strip()} video or image container): not an image"
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext in ("heic", "heif", "avif", "jxl", "raw", "cr2", "nef", "arw", "dng", "svg", "psd"):
        return f"unsupported format {ext.upper()}: convert it to JPEG or PNG"
    try:
        contents[:4096].decode("utf-8")
        return "a text file, not an image"
    except UnicodeDecodeError:
        return "not an image (unknown format)"


def inspect_files(paths: typing.Sequence[str]) -> typing.List[FileInfo]:
    """`inspect_file` of every path, in parallel (the work is mostly I/O and C code)."""
    from tfl._progress import Progress

    out = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool, \
            Progress("checking image files", len(paths), "files") as progress:
        for info in pool.map(inspect_file, paths):
            out.append(info)
            progress.update(1)
    return out


def check_files(paths: typing.Sequence[str]) -> typing.List[typing.Tuple[str, str]]:
    """(path, reason) for every file in `paths` that cannot be used."""
    return [(i.path, i.problem) for i in inspect_files(paths) if i.problem]
