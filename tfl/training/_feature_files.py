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


def write(cache_dir: str, key: str, parts, dim: int, progress=None) -> None:
    """Computes each part into `.npy` files in a temporary folder, then renames it into place.

    A killed run leaves only a temporary folder, which the next write removes:
    a folder named by a key is always complete. Caches of other keys are
    stale for this run folder and are deleted.
    """
    os.makedirs(cache_dir, exist_ok=True)
    for name in os.listdir(cache_dir):
        if name != key:
            shutil.rmtree(os.path.join(cache_dir, name), ignore_errors=True)
    tmp = os.path.join(cache_dir, f".tmp-{key}-{os.getpid()}")
    os.makedirs(tmp)
    try:
        for name, fn, dataset, n in parts:
            out = np.lib.format.open_memmap(os.path.join(tmp, f"{name}.npy"), mode="w+", dtype="<f4", shape=(n, dim))
            i = 0
            for x, _ in dataset:
                feats = fn(x).numpy()
                out[i:i + len(feats)] = feats
                i += len(feats)
                if progress is not None:
                    progress.update(len(feats))
            if i != n:
                raise RuntimeError(f"feature cache: {name} yielded {i} images, expected {n}")
            out.flush()
            del out
        files = {f"{p[0]}.npy": {"bytes": os.path.getsize(os.path.join(tmp, f"{p[0]}.npy")),
                                 "crc32": _crc32(os.path.join(tmp, f"{p[0]}.npy"))} for p in parts}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump({"key": key, "dim": dim, "parts": [p[0] for p in parts], "files": files}, f)
        final = os.path.join(cache_dir, key)
        shutil.rmtree(final, ignore_errors=True)  # an unreadable one: complete() said no
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
