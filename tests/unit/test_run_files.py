"""tfl.runs: atomic writes, disk-full detection and the run folder's files, on real files in tmp_path."""

import array
import errno
import json
import os
import stat

import pytest

from tfl import errors, runs
from tfl.config import TrainConfig
from tfl.errors import TflError, UsageError
from tfl.runs import FolderLock, RunFolder


def test_atomic_write_text_replaces_the_file_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    runs.atomic_write_text(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's private 0o600


def test_atomic_write_text_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        runs.atomic_write_text(str(path), b"bytes are not text")
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_atomic_write_json_is_sorted_indented_and_ends_with_a_newline(tmp_path):
    path = tmp_path / "metrics.json"
    runs.atomic_write_json(str(path), {"b": 1, "a": [1.5, None]})
    assert path.read_text() == '{\n  "a": [\n    1.5,\n    null\n  ],\n  "b": 1\n}\n'


def test_atomic_write_json_takes_anything_with_tolist(tmp_path):
    # numpy scalars and arrays end up in histories; array.array has the same tolist().
    path = tmp_path / "history.json"
    runs.atomic_write_json(str(path), {"loss": array.array("d", [0.5, 0.25])})
    assert json.loads(path.read_text()) == {"loss": [0.5, 0.25]}
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        runs.atomic_write_json(str(path), {"x": object()})
    assert json.loads(path.read_text()) == {"loss": [0.5, 0.25]}


def test_atomic_path_renames_on_success_only(tmp_path):
    path = tmp_path / "model.weights.h5"
    with runs.atomic_path(str(path)) as tmp:
        # Beside the target, with its full suffix: Keras picks the file format from it.
        assert tmp == str(tmp_path / f".tmp-{os.getpid()}-model.weights.h5")
        with open(tmp, "w") as f:
            f.write("v1")
    assert path.read_text() == "v1"
    with pytest.raises(RuntimeError), runs.atomic_path(str(path)) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "v1"
    assert sorted(os.listdir(tmp_path)) == ["model.weights.h5"]


def test_read_json_default(tmp_path):
    assert runs.read_json(str(tmp_path / "missing.json"), default={"x": 1}) == {"x": 1}
    assert runs.read_json(str(tmp_path / "missing.json")) is None
    (tmp_path / "a.json").write_text('{"k": [1, 2]}')
    assert runs.read_json(str(tmp_path / "a.json")) == {"k": [1, 2]}


@pytest.mark.parametrize("error,full", [
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
    (OSError(errno.EFBIG, "File too large"), True),
    (OSError(errno.EACCES, "Permission denied"), False),
    (RuntimeError("Unable to synchronously write data (file write failed: errno = 28, ...)"), True),
    (RuntimeError("h5py: No space left on device"), True),
    (RuntimeError("something else"), False),
])
def test_is_disk_full(error, full):
    assert runs.is_disk_full(error) is full


def test_disk_full_becomes_one_tfl_error_line():
    with pytest.raises(TflError) as info, runs.disk_full_is_one_line("the model", lambda: "free 20 MB"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(info.value) == "disk full while writing the model: free 20 MB"
    assert isinstance(info.value.__cause__, OSError)


def test_other_errors_pass_through_unchanged():
    with pytest.raises(PermissionError), runs.disk_full_is_one_line("the model", "hint"):
        raise PermissionError(errno.EACCES, "Permission denied")
    original = TflError("already one line")
    with pytest.raises(TflError) as info, runs.disk_full_is_one_line("the model", "hint"):
        raise original
    assert info.value is original


def test_ensure_space(tmp_path):
    runs.ensure_space(str(tmp_path), 1)  # a byte fits anywhere
    with pytest.raises(OSError) as info:
        runs.ensure_space(str(tmp_path), 1 << 62)
    assert info.value.errno == errno.ENOSPC
    assert runs.is_disk_full(info.value)


def test_fsync_file_ignores_a_missing_file(tmp_path):
    runs.fsync_file(str(tmp_path / "missing"))
    (tmp_path / "x").write_text("x")
    runs.fsync_file(str(tmp_path / "x"))


# -- RunFolder -------------------------------------------------------------------------------------------------
def test_run_folder_paths():
    run = RunFolder("runs/ants")
    assert run.model_path == os.path.join("runs/ants", "model.keras")
    assert run.config_path == os.path.join("runs/ants", "config.json")
    assert run.checkpoint(2, "best") == os.path.join("runs/ants", "checkpoints", "stage2.best.weights.h5")
    assert run.checkpoint(1, "optimizer") == os.path.join("runs/ants", "checkpoints", "stage1.optimizer.npz")


def test_a_new_folder_is_prepared(tmp_path):
    run = RunFolder(str(tmp_path / "a" / "b"))
    run.prepare(resume=False, overwrite=False)
    assert os.path.isdir(run.checkpoint_dir)
    assert not run.exists() and not run.is_trained()


@pytest.fixture
def cli_names():
    """Messages as the command line words them (`--overwrite`), as `tfl` switches them on."""
    errors.use_cli_names()
    yield
    errors.use_cli_names(False)


def _trained_one_epoch(run):
    run.write_state({"stage1": {"epochs_done": 1}})


def test_an_earlier_run_is_not_clobbered(tmp_path, cli_names):
    run = RunFolder(str(tmp_path / "run"))
    run.prepare(resume=False, overwrite=False)
    run.write_config(TrainConfig())
    _trained_one_epoch(run)
    with pytest.raises(UsageError) as info:
        run.prepare(resume=False, overwrite=False)
    assert str(info.value) == (f"run folder {run.path} already exists: pass --resume {run.path} to continue it "
                               "or --overwrite to start again")
    run.prepare(resume=False, overwrite=True)
    assert not run.exists() and os.path.isdir(run.checkpoint_dir)


def test_in_python_the_refusal_names_keyword_arguments(tmp_path):
    run = RunFolder(str(tmp_path / "run"))
    run.prepare(resume=False, overwrite=False)
    run.write_config(TrainConfig())
    _trained_one_epoch(run)
    with pytest.raises(UsageError) as info:
        run.prepare(resume=False, overwrite=False)
    assert str(info.value) == (f"run folder {run.path} already exists: pass resume=True to continue it "
                               "or overwrite=True to start again")


def test_a_folder_that_never_trained_an_epoch_is_replaced_without_overwrite(tmp_path):
    run = RunFolder(str(tmp_path / "run"))
    run.prepare(resume=False, overwrite=False)
    run.write_config(TrainConfig())
    assert not run.never_trained()  # a config alone is not a run tfl started: refused
    run.write_state({"plan": {"stage1": {}, "stage2": {}}})  # started, failed or killed before its first epoch
    assert run.never_trained()
    assert run.prepare(resume=False, overwrite=False) is True
    assert not run.exists() and os.path.isdir(run.checkpoint_dir)


@pytest.mark.parametrize("setup,resume,message", [
    ("file", False, "--out {path} is a file, not a folder; choose another --out"),
    ("empty", True, "nothing to resume in {path}: it has no config.json"),
])
def test_preflight_refusals(tmp_path, setup, resume, message, cli_names):
    path = tmp_path / "run"
    if setup == "file":
        path.write_text("x")
    else:
        path.mkdir()
    with pytest.raises(UsageError) as info:
        RunFolder(str(path)).preflight(resume=resume, overwrite=False)
    assert str(info.value) == message.format(path=path)


def test_preflight_refuses_a_parent_that_is_a_file(tmp_path, cli_names):
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "run"
    with pytest.raises(UsageError) as info:
        RunFolder(str(path)).preflight(resume=False, overwrite=False)
    assert str(info.value) == (f"cannot write the run folder {path}: {tmp_path / 'file'} is not writable "
                               "(not a folder); choose another --out")


def test_small_files_round_trip(tmp_path):
    run = RunFolder(str(tmp_path))
    cfg = TrainConfig()
    cfg.model.backbone = "resnet50"
    run.write_config(cfg)
    assert run.exists() and run.read_config() == cfg
    run.write_class_names(("ants", "bees"))
    assert run.read_class_names() == ["ants", "bees"]
    assert run.read_state() == {} and run.read_history() == {} and run.read_metrics() == {}
    run.write_state({"stage": 2})
    run.write_history({"stage1": {"loss": [1.0]}})
    run.write_metrics({"val_accuracy": 0.9})
    assert run.read_state() == {"stage": 2}
    assert run.read_history() == {"stage1": {"loss": [1.0]}}
    assert run.read_metrics() == {"val_accuracy": 0.9}


def test_reading_what_is_not_there(tmp_path):
    run = RunFolder(str(tmp_path))
    with pytest.raises(UsageError, match=r"is not a tfl run folder \(no config.json\)$"):
        run.read_config()
    with pytest.raises(UsageError, match=r"has no class_names.json: is it a finished tfl run\?$"):
        run.read_class_names()


def test_remove_leftovers_keeps_what_state_names(tmp_path):
    run = RunFolder(str(tmp_path))
    run.prepare(resume=False, overwrite=False)
    ckpt = run.checkpoint_dir
    keep = ["stage1.e003.last.weights.h5", "stage1.e003.optimizer.npz", "stage1.e002.best.weights.h5"]
    orphans = ["stage1.e004.last.weights.h5", ".tmp-123-stage1.e004.best.weights.h5"]
    for name in keep + orphans + ["notes.txt"]:
        with open(os.path.join(ckpt, name), "w") as f:
            f.write("x")
    (tmp_path / ".tmp-9-model.keras").write_text("x")
    run.write_state({"stage1": {"last": keep[0], "optimizer": keep[1], "best": keep[2]}, "epochs": 3})
    run.remove_leftovers()
    assert sorted(os.listdir(ckpt)) == sorted(keep + ["notes.txt"])
    assert sorted(os.listdir(tmp_path)) == ["checkpoints", "state.json", "tfl.lock"]  # the lock prepare() took


# -- one writer per folder --------------------------------------------------------------------------------
def test_a_locked_run_folder_is_refused_and_free_again_once_released(tmp_path):
    first = RunFolder(str(tmp_path / "run"))
    first.prepare(resume=False, overwrite=False)
    assert open(tmp_path / "run" / "tfl.lock").read() == f"{os.getpid()}\n"
    for resume, overwrite in ((True, False), (False, True), (False, False)):
        with pytest.raises(UsageError) as info:
            RunFolder(first.path).prepare(resume=resume, overwrite=overwrite)
        assert str(info.value) == (f"run folder {first.path} is in use by this process (another run in it writes "
                                   "there): wait for it to finish or stop it, or choose another folder")
    assert os.path.isdir(first.checkpoint_dir)  # --overwrite deleted nothing
    first.release()
    second = RunFolder(first.path)
    second.prepare(resume=False, overwrite=True)
    assert sorted(os.listdir(first.path)) == ["checkpoints", "tfl.lock"]
    second.release()


def test_a_lock_held_by_another_process_names_its_pid(tmp_path):
    import subprocess
    import sys

    folder = str(tmp_path / "search")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom tfl.runs import FolderLock\n"
                               f"lock = FolderLock({folder!r}, 'search folder')\nprint('locked', flush=True)\n"
                               "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(UsageError) as info:
            FolderLock.check(folder, "search folder")
        assert str(info.value) == (f"search folder {folder} is in use by another tfl process (pid {holder.pid}): "
                                   "wait for it to finish or stop it, or choose another folder")
    finally:
        holder.stdin.close()
        holder.wait(30)
    FolderLock.check(folder, "search folder")  # its end released the lock; the file stays


# -- signals wait for whole writes ------------------------------------------------------------------------
def test_a_signal_inside_protected_waits_for_the_block_to_end():
    import signal

    from tfl import interrupts

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        interrupts.install()
        done = []
        with pytest.raises(KeyboardInterrupt, match="^SIGTERM$"):
            with interrupts.protected():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("written")  # the block runs to its end
                with interrupts.protected():  # nested blocks: only the outermost end raises
                    done.append("committed")
        assert done == ["written", "committed"]
        with pytest.raises(KeyboardInterrupt, match="^SIGINT$"):
            os.kill(os.getpid(), signal.SIGINT)  # outside a block: at once
            for _ in range(1000):
                pass
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
