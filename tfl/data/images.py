"""Checking that image files decode, undamaged (finding them: `tfl.data.walk`).

Checks use Pillow on a reduced-size
decode (JPEG draft mode), which finds zero-byte, truncated, non-image and
unsupported files in about a millisecond each, plus a read of each JPEG's and
PNG's structure (`tfl.data.damage`); then `decode_problems` decodes
every file with TensorFlow, as training will, and hears libjpeg's reports of
damaged data. So a bad file is reported by path up front instead of failing
an epoch or training on a smeared picture.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
import stat
import typing

from tfl.data._decode_check import decode_problems, decode_session, start_helper  # noqa: F401 (re-exported)
from tfl.data.damage import jpeg_damage, png_damage
from tfl.data.walk import Walk, class_folders, is_file, list_files, list_images  # noqa: F401 (re-exported)


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


def inspect_file(path: str, light: bool = False) -> FileInfo:
    """Reads `path` once: its hash, header and a reduced-size decode (never a huge one).

    `light` reads the header and the structure only (no hash, no decode): what
    prediction checks, since its pipeline decodes every file anyway and names
    the few that fail then (`tfl.serving.prediction`).
    """
    import hashlib
    import io
    import warnings

    from PIL import Image

    info = FileInfo(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # opening a FIFO would wait for ever
            info.problem = f"not a regular file ({_file_kind(st.st_mode)}): remove it from the data folder"
            return info
        if st.st_size > MAX_FILE_BYTES:
            info.problem = f"file too large ({st.st_size >> 20} MB) for an image: not read"
            return info
        with open(path, "rb") as f:
            contents = f.read()
    except OSError as e:
        info.problem = _unreadable(path, e)
        return info
    if not light:
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
                if not light:
                    im.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale, enough to find corruption
                    im.load()
                # What Pillow accepts can still be damaged (and Pillow half-loads truncated files when
                # a program set ImageFile.LOAD_TRUNCATED_IMAGES): read the file's structure too.
                if fmt == "JPEG":
                    info.problem = jpeg_damage(contents)
                elif fmt == "PNG":
                    info.problem = png_damage(contents)
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
    except Exception as e:  # noqa: BLE001 - a hostile file may break a decoder in any way; it is one bad file
        why = (str(e).splitlines() or [""])[0]
        info.problem = f"cannot decode {info.format or 'image'} ({type(e).__name__}{': ' + why if why else ''})"
    return info


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a file")


def _unreadable(path: str, e: OSError) -> str:
    import errno

    if os.path.islink(path):
        if e.errno == errno.ELOOP:
            return "a link that leads back to itself (a loop of links): remove it"
        if e.errno == errno.ENOENT:
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"broken link to {target} (no such file): restore the file or remove the link"
    return f"cannot read ({e.strerror or e})"


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


def inspect_files(paths: typing.Sequence[str], decode: bool = True) -> typing.List[FileInfo]:
    """`inspect_file` of every path, in parallel (the work is mostly I/O and C code).

    Args:
        paths: the files.
        decode: then decode every file that passed with TensorFlow, as training
            will (see `decode_problems`).
    """
    if decode and paths:
        start_helper()  # it loads TensorFlow while Pillow reads the files
    from tfl._progress import Progress

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    infos = []
    try:
        with Progress("checking image files", len(paths), "files") as progress:
            for info in pool.map(inspect_file, paths):
                infos.append(info)
                progress.update(1)
    finally:
        # On Ctrl-C, drop the files not started yet instead of reading them all first.
        pool.shutdown(wait=True, cancel_futures=True)
    if decode:
        problems = decode_problems([i.path for i in infos if not i.problem])
        for info in infos:
            info.problem = info.problem or problems.get(info.path)
    return infos


def header_problems(paths: typing.Sequence[str]) -> typing.Dict[str, str]:
    """path -> reason for the files whose header or structure rules them out (`inspect_file(light=True)`).

    Threads over the files, without a progress bar: it takes about a tenth of a
    millisecond a file.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(paths) or 1)) as pool:
        infos = list(pool.map(lambda p: inspect_file(p, light=True), paths))
    return {i.path: i.problem for i in infos if i.problem}


def check_files(paths: typing.Sequence[str], decode: bool = True) -> typing.List[typing.Tuple[str, str]]:
    """(path, reason) for every file in `paths` that cannot be used."""
    return [(i.path, i.problem) for i in inspect_files(paths, decode) if i.problem]
