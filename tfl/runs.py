"""The run folder: the one module that knows the file names inside it.

A run folder holds everything a trained model needs to be reused, resumed
or served::

    RUN/
      config.json        the TrainConfig (enough to reproduce the run)
      class_names.json   label names in output order
      state.json         training progress, rewritten atomically each epoch
      history.json       per-stage metrics per epoch
      metrics.json       final validation metrics of both stages
      thresholds.json    multi-label runs: each label's decision threshold, chosen on validation
      data.csv           runs trained on an in-memory table: its rows, the split of each (the run's data source)
      model.keras        the best model
      checkpoints/       per-stage weights and optimizer state (resume)
      logs/              TensorBoard logs
      features/          stage 1 backbone features too big for memory (keyed by backbone and data)
      pick/              --backbone auto: the ranking of the candidates (pick.json, pick.png, index.html)
      tfl.lock           held (flock) by the process writing the run, with its pid
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile

from tfl.errors import TflError, UsageError, flag

# Errors that mean "no room to write": a full disk, a quota, a file size limit.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# The lock file of a run or search folder (see FolderLock).
LOCK_FILE = "tfl.lock"


def atomic_write_text(path: str, text: str) -> None:
    """Writes `text` to `path` so that a crash leaves the old file or the new one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; run files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    # numpy scalars and arrays end up in histories and metrics.
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary path beside `path` (same suffix); renamed onto it on success.

    Keras picks the file format from the suffix, so the temporary name keeps
    the full suffix of `path` (`.weights.h5`, `.keras`).
    """
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{name}")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def fsync_file(path: str) -> None:
    """Flushes a written file to disk, so that a rename onto it never exposes a half-written file."""
    if os.path.isfile(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def ensure_space(folder: str, nbytes: int) -> None:
    """Raises ENOSPC before a write of about `nbytes` that cannot fit in `folder`.

    HDF5 (Keras `.weights.h5`) handles a full disk badly: it leaves the file
    open, prints tracebacks when the objects are collected and can crash the
    interpreter at exit. Checking first makes the usual case a clean error.
    """
    free = shutil.disk_usage(folder).free
    if free < nbytes:
        raise OSError(errno.ENOSPC, f"No space left on device ({nbytes // 1024} KB needed, "
                                    f"{free // 1024} KB free)", folder)


def is_disk_full(e: BaseException) -> bool:
    """Whether `e` (an OSError, or h5py's/TensorFlow's wrapping of one) means no room to write."""
    if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
        return True
    text = str(e)
    return any(s in text for s in ("No space left on device", "Disk quota exceeded", "File too large",
                                   "errno = 28", "errno = 27"))


@contextlib.contextmanager
def disk_full_is_one_line(what: str, hint: str):
    """Turns a full-disk failure inside the block into one `TflError` line naming `what` and `hint`."""
    try:
        yield
    except Exception as e:
        if isinstance(e, TflError) or not is_disk_full(e):
            raise
        raise TflError(f"disk full while writing {what}: {hint() if callable(hint) else hint}") from e


def read_json(path: str, default=None):
    """The JSON in `path` (`default` when there is no file); a damaged file is one `TflError` line."""
    if not os.path.exists(path):
        return default
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise TflError(f"{path} is damaged ({e}): restore it or start the run again with --overwrite") from None


class FolderLock:
    """An exclusive lock on a run or search folder, so that two processes never write it at once.

    `fcntl.flock` on `FOLDER/tfl.lock`, which holds the owner's pid. The kernel
    drops the lock when its process ends, however it ends (even SIGKILL), so a
    killed run never leaves a stale lock; the file itself stays.

    Args:
        folder: the folder (created if missing).
        what: how the refusal names it ("run folder", "search folder").

    Raises:
        UsageError: another process holds the lock (one line with its pid).

    Examples:
        >>> lock = FolderLock("runs/ants", "run folder")
        >>> lock.release()
    """

    def __init__(self, folder: str, what: str = "run folder"):
        self.file = None
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            return
        try:
            os.makedirs(folder, exist_ok=True)
            f = open(os.path.join(folder, LOCK_FILE), "a+", encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write the {what} {folder} ({e.strerror or e}); choose another --out") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.seek(0)
            owner = f.read().strip()
            f.close()
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UsageError(_in_use(folder, what, owner)) from None
            return  # a file system without locks (ENOLCK): carry on unlocked, as before
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self.file = f

    @staticmethod
    def check(folder: str, what: str = "run folder") -> None:
        """Raises `UsageError` when another process holds `folder`'s lock (creates and writes nothing)."""
        try:
            import fcntl

            f = open(os.path.join(folder, LOCK_FILE), encoding="utf-8")
        except (ImportError, OSError):
            return  # no lock file, or no locking here: nobody holds it
        with f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: a writer's lock excludes it
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UsageError(_in_use(folder, what, f.read().strip())) from None

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing drops the flock; the file stays (deleting it would race)
            self.file = None


def _in_use(folder: str, what: str, owner: str) -> str:
    who = ("this process (another run in it writes there)" if owner == str(os.getpid())
           else f"another tfl process (pid {owner or '?'})")
    return f"{what} {folder} is in use by {who}: wait for it to finish or stop it, or choose another folder"


def clear_folder(folder: str) -> None:
    """Deletes everything in `folder` but its lock file (the caller holds that lock)."""
    for entry in os.scandir(folder):
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def _entries(folder: str) -> list:
    return [n for n in os.listdir(folder) if n != LOCK_FILE]


class RunFolder:
    """Paths and small state files of one training run.

    Args:
        path: the run folder.

    Examples:
        >>> run = RunFolder("runs/ants")
        >>> run.model_path
        'runs/ants/model.keras'
    """

    def __init__(self, path: str):
        self.path = path
        self.lock = None  # the FolderLock `prepare` takes

    def _p(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    config_path = property(lambda self: self._p("config.json"))
    class_names_path = property(lambda self: self._p("class_names.json"))
    state_path = property(lambda self: self._p("state.json"))
    history_path = property(lambda self: self._p("history.json"))
    metrics_path = property(lambda self: self._p("metrics.json"))
    thresholds_path = property(lambda self: self._p("thresholds.json"))
    table_path = property(lambda self: self._p("data.csv"))
    model_path = property(lambda self: self._p("model.keras"))
    checkpoint_dir = property(lambda self: self._p("checkpoints"))
    logs_dir = property(lambda self: self._p("logs"))
    report_dir = property(lambda self: self._p("report"))
    features_dir = property(lambda self: self._p("features"))  # stage 1 features too big for memory
    pick_dir = property(lambda self: self._p("pick"))  # --backbone auto: the ranking of the candidates

    def checkpoint(self, stage: int, kind: str) -> str:
        """Checkpoint file of a stage: kind is `last`, `best` or `optimizer`."""
        suffix = ".npz" if kind == "optimizer" else ".weights.h5"
        return self._p("checkpoints", f"stage{stage}.{kind}{suffix}")

    def exists(self) -> bool:
        return os.path.exists(self.config_path)

    def exists_table(self) -> bool:
        return os.path.exists(self.table_path)

    def is_trained(self) -> bool:
        return os.path.exists(self.model_path) and os.path.exists(self.class_names_path)

    def preflight(self, resume: bool, overwrite: bool) -> None:
        """The checks of `prepare` without creating anything: refuses to clobber an
        earlier run by accident, and an output folder that cannot be written."""
        out = flag("--out", "out=")
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise UsageError(f"{flag('--out ', 'out=')}{self.path} is a file, not a folder; choose another {out}")
        if self.lock is None:  # this object's own lock is no obstacle
            FolderLock.check(self.path)
        if (os.path.isdir(self.path) and _entries(self.path) and not (resume or overwrite)
                and not self.never_trained()):
            raise UsageError(
                f"run folder {self.path} already exists: pass {flag('--resume ' + self.path, 'resume=True')} "
                f"to continue it or {flag('--overwrite', 'overwrite=True')} to start again"
            )
        if resume and not self.exists():
            raise UsageError(f"nothing to resume in {self.path}: it has no config.json")
        # Permission bits do not stop root, and read-only mounts show no bits at all:
        # only writing a file says for sure.
        parent = os.path.abspath(self.path)
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        problem = None if os.path.isdir(parent) else "not a folder"
        if problem is None:
            try:
                with tempfile.TemporaryFile(dir=parent):
                    pass
            except OSError as e:
                problem = e.strerror or str(e)
        if problem:
            raise UsageError(f"cannot write the run folder {self.path}: {parent} is not writable ({problem}); "
                             f"choose another {out}")

    def never_trained(self, started_by_tfl: bool = True) -> bool:
        """A run folder that holds no finished epoch and no model: a start that failed or was killed early.

        Such a folder has nothing worth keeping, so a new run may take its place without `--overwrite`.

        Args:
            started_by_tfl: count only a folder whose trainer got as far as writing its plan (not any
                folder with a config.json); the trainer that created the folder itself passes False.
        """
        if not self.exists() or self.is_trained() or os.path.exists(self._p("search.json")):
            return False
        try:
            state = self.read_state()
        except (OSError, ValueError):
            return False
        if started_by_tfl and "plan" not in state:
            return False
        return not any(isinstance(v, dict) and v.get("epochs_done") for v in state.values())

    def prepare(self, resume: bool, overwrite: bool) -> bool:
        """Creates the folder and locks it (see `FolderLock`; `release` unlocks it), refusing to
        clobber an earlier run by accident or a folder another process is writing.

        Returns:
            True when this call starts the run afresh in it (the folder was absent, replaced, or never
            trained), so that a failure before the first epoch may remove it again.
        """
        self.preflight(resume, overwrite)
        created = not resume and not (os.path.isdir(self.path) and not _entries(self.path))
        replace = not resume and (overwrite or self.never_trained())
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create run folder {self.path}: {e.strerror}; choose another --out") from None
        if self.lock is None:
            self.lock = FolderLock(self.path)  # before anything is deleted or written
        if replace:
            clear_folder(self.path)
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        if resume:
            self.remove_leftovers()
        return created

    def release(self) -> None:
        """Unlocks the folder (`prepare` locked it); the lock also ends with the process."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def remove_leftovers(self) -> None:
        """Deletes what a killed process left half-written: temporary files, and checkpoint
        files that `state.json` does not name (written, then killed before the commit)."""
        keep = set()
        for stage in self.read_state().values():
            if isinstance(stage, dict):
                keep.update(stage.get(k) for k in ("last", "optimizer", "best") if stage.get(k))
        for folder in (self.path, self.checkpoint_dir):
            for entry in os.scandir(folder):
                # Only names that _checkpoint writes (stage2.e003.best.weights.h5, ...).
                orphan = (folder == self.checkpoint_dir and entry.name not in keep
                          and re.match(r"stage\d+\.e\d+\.", entry.name))
                if entry.is_file() and (entry.name.startswith(".tmp-") or orphan):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    # Small JSON files.
    def read_config(self):
        from tfl.config import TrainConfig

        if not self.exists():
            raise UsageError(f"{self.path} is not a tfl run folder (no config.json)")
        with open(self.config_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        try:
            return TrainConfig.from_json(text)
        except ValueError as e:  # bad JSON, an unknown key, a value outside its type
            raise UsageError(f"{self.config_path}: {e}; fix the file or start a new run") from None

    def write_config(self, cfg) -> None:
        atomic_write_text(self.config_path, cfg.to_json() + "\n")

    def read_class_names(self) -> list:
        names = read_json(self.class_names_path)
        if names is None:
            raise UsageError(f"{self.path} has no class_names.json: is it a finished tfl run?")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise UsageError(f"{self.class_names_path} is not a list of class names: fix the file or train again")
        return names

    def write_class_names(self, names) -> None:
        atomic_write_json(self.class_names_path, list(names))

    def read_state(self) -> dict:
        return read_json(self.state_path, default={})

    def write_state(self, state: dict) -> None:
        atomic_write_json(self.state_path, state)

    def read_history(self) -> dict:
        return read_json(self.history_path, default={})

    def write_history(self, history: dict) -> None:
        atomic_write_json(self.history_path, history)

    def read_metrics(self) -> dict:
        return read_json(self.metrics_path, default={})

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_json(self.metrics_path, metrics)

    def read_thresholds(self) -> dict:
        """A multi-label run's `{"thresholds": {label: threshold}, ...}`; {} when it has none."""
        return read_json(self.thresholds_path, default={})

    def write_thresholds(self, thresholds: dict) -> None:
        atomic_write_json(self.thresholds_path, thresholds)
