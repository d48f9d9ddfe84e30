"""Pooled features on disk: `.npy` files in a folder named by a digest of everything they depend on.

A folder named by a key is always complete (written to a temporary folder,
then renamed), and its meta.json records each file's size and CRC-32, so a
truncated or edited cache is recomputed, never read as garbage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib

import numpy as np

from tfl.models import classifier as model_lib

FORMAT = 2  # bump when the files' layout changes (2: meta.json records sizes and checksums)

# (folder, file modification times) of caches verified in this process: a search's trials share one.
_VERIFIED: set = set()


def cache_key(model, data, image_size: int, copies: int, seed: int) -> str:
    """Digest of everything the cached features depend on.

    The backbone is identified by its weights' values (so a different weights
    file or random initialisation is a different cache), the data by
    `Split.fingerprint()` of both splits.
    """
    h = hashlib.sha256()

    def add(obj):
        h.update(json.dumps(obj, sort_keys=True, default=str).encode())

    preprocess = model.get_layer("preprocess")
    pool = model.get_layer("pool")
    add({"format": FORMAT, "backbone": getattr(preprocess, "backbone", None), "image_size": int(image_size),
         "pool": type(pool).__name__, "dtype": str(pool.compute_dtype), "copies": int(copies),
         "seed": int(seed if copies > 1 else 0),
         "source": data.source, "classes": list(data.class_names)})
    if copies > 1:
        add(_without_names(model.get_layer("augmentation").get_config()))
    for weight in model_lib.backbone_of(model).weights:
        h.update(np.ascontiguousarray(weight.numpy()).tobytes())
    for split in (data.train, data.val):
        h.update(split.fingerprint().encode())
    return h.hexdigest()[:20]


def _without_names(config):
    """A layer config without its auto-numbered names (random_flip_3), which are not behaviour."""
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list):
        return [_without_names(v) for v in config]
    return config


def complete(folder: str, key: str) -> bool:
    """Whether `folder` holds the whole cache of `key`, each file as it was written.

    meta.json records each file's size and CRC-32; a file that was truncated
    or edited since (a full disk, a copy cut short, another program) does not
    match, and the cache is computed again, with one line saying why, instead
    of being read as garbage. The check reads the files once per process
    (about 1 s per GB).
    """
    meta = os.path.join(folder, "meta.json")
    if not os.path.exists(meta):
        return False
    try:
        with open(meta, encoding="utf-8") as f:
            info = json.load(f)
        if not isinstance(info, dict) or info.get("key") != key:
            return False
        files = info.get("files")
        if not isinstance(files, dict) or not files:
            raise ValueError("meta.json lists no files (written by an older tfl)")
        stamp = tuple((name, os.stat(os.path.join(folder, name)).st_mtime_ns) for name in sorted(files))
        if (folder, stamp) in _VERIFIED:
            return True
        for name, expected in sorted(files.items()):
            path = os.path.join(folder, name)
            size = os.path.getsize(path)
            if size != expected["bytes"]:
                raise ValueError(f"{name} has {size:,} bytes, {expected['bytes']:,} were written")
            if _crc32(path) != expected["crc32"]:
                raise ValueError(f"{name} changed since it was written (checksum)")
    except (OSError, ValueError, KeyError, TypeError) as e:
        from tfl._logging import log

        why = e.strerror if isinstance(e, OSError) and e.strerror else e
        log.info(f"feature cache {folder} is damaged ({why}): computing it again")
        return False
    _VERIFIED.add((folder, stamp))
    return True


def _crc32(path: str) -> int:

    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
    return crc


CUT_PREFIX = "cut-"  # folders of activations at a cut (the others hold pooled features)


def _same_kind(name: str, key: str) -> bool:
    cut = name.startswith(CUT_PREFIX) or name.startswith(".tmp-" + CUT_PREFIX)
    return cut == key.startswith(CUT_PREFIX)


class _Rows:
    """One `.npy` file written row by row with plain writes.

    Not a memory map: the pages of a written map count as the process's
    resident memory until the kernel writes them back, and the point of going
    to disk is to keep memory flat. Rows go where `order` says (a seeded
    permutation), so a file read in order is already shuffled.
    """

    def __init__(self, path: str, n: int, row_shape, dtype):
        self.f = open(path, "wb")
        self.dtype = np.dtype(dtype).newbyteorder("<")
        np.lib.format.write_array_header_1_0(
            self.f, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": (n, *row_shape)})
        self.offset = self.f.tell()
        self.row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.f.truncate(self.offset + n * self.row_bytes)

    def put(self, start: int, rows, order=None) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if order is None:
            self.f.seek(self.offset + start * self.row_bytes)
            self.f.write(rows.tobytes())
            return
        for k in range(len(rows)):
            self.f.seek(self.offset + int(order[start + k]) * self.row_bytes)
            self.f.write(rows[k].tobytes())

    def close(self) -> None:
        self.f.close()


def write(cache_dir: str, key: str, passes, progress=None) -> None:
    """Computes each pass into `.npy` files in a temporary folder, then renames it into place.

    Args:
        cache_dir: the folder of caches (a run's `features/`).
        key: the cache's digest (folder name); `CUT_PREFIX` + digest for activations.
        passes: `(dataset, n, outputs)`: one pass over `dataset` (`n` images,
            decoded once) computes every `(name, fn, order)` or
            `(name, fn, order, sink)` of `outputs`: `fn` maps a batch of
            images to one array (`name.npy`) or a list of arrays (`name.0.npy`,
            `name.1.npy`, ...); row `i` of the pass is written at `order[i]`
            when `order` is not None. With a `sink`, `fn` returns
            `(written, kept)` and `sink(kept)` receives the second part of
            each batch (what the caller keeps in memory from the same pass).
        progress: a `Progress`, advanced by each batch of each output.

    A killed run leaves only a temporary folder, which the next write removes:
    a folder named by a key is always complete. Caches of other keys of the same
    kind (features, or activations) are stale for this run folder and are deleted.
    """
    from tfl.training.cut import calls

    os.makedirs(cache_dir, exist_ok=True)
    for name in os.listdir(cache_dir):
        if name != key and _same_kind(name, key):
            shutil.rmtree(os.path.join(cache_dir, name), ignore_errors=True)
    tmp = os.path.join(cache_dir, f".tmp-{key}-{os.getpid()}")
    os.makedirs(tmp)
    names, parts = [], []
    try:
        for dataset, n, outputs in passes:
            writers, i = [None] * len(outputs), 0
            for outs in calls([output[1] for output in outputs], dataset, progress):
                for k, (output, out) in enumerate(zip(outputs, outs)):
                    name, order = output[0], output[2]
                    if len(output) > 3:
                        out, kept = out
                        output[3](np.asarray(kept))
                    arrays = [np.asarray(a) for a in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]
                    if writers[k] is None:
                        files = [f"{name}.npy"] if len(arrays) == 1 else [f"{name}.{j}.npy" for j in range(len(arrays))]
                        writers[k] = [_Rows(os.path.join(tmp, f), n, a.shape[1:], a.dtype)
                                      for f, a in zip(files, arrays)]
                        names += files
                    for w, a in zip(writers[k], arrays):
                        w.put(i, a, order)
                    batch = len(arrays[0])
                i += batch
            for w in [w for ws in writers if ws for w in ws]:
                w.close()
            parts += [output[0] for output in outputs]
            if i != n:
                raise RuntimeError(f"feature cache: a pass yielded {i} images, expected {n}")
        files = {f: {"bytes": os.path.getsize(os.path.join(tmp, f)), "crc32": _crc32(os.path.join(tmp, f))}
                 for f in names}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump({"key": key, "parts": parts, "files": files}, f)
        final = os.path.join(cache_dir, key)
        shutil.rmtree(final, ignore_errors=True)  # an unreadable one: complete() said no
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def drop_cut_folders(folder: str) -> None:
    """Activations at stage 2's cut on disk serve only a resumed stage 2: gone once the run is finished.

    They are the largest files a run writes (0.85 GB for MobileNetV2 on 1,440 images); the pooled
    features, small, stay for `tfl tune` and evaluation.
    """
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(CUT_PREFIX) or name.startswith(".tmp-" + CUT_PREFIX):
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def free_bytes(folder: str):
    """Free bytes on the disk that holds (or will hold) `folder`; None when that cannot be known."""
    path = os.path.abspath(folder)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None
