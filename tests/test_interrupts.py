"""Ctrl-C, SIGTERM and two writers: real signals to real `tfl train` / `tfl tune` processes.

A signal stops the run at once (exit 130) with one line saying how to resume, between whole writes, and
`--resume` then completes every epoch. Exact points come from the test hook of tfl/training/_checkpoint.py
(TFL_TEST_KILL_AT with TFL_TEST_KILL_SIGNAL: the process signals itself there, through the real handler);
one test signals from outside, at whatever point the run has reached. A second process that wants to write
a folder in use is refused in one line, and the first finishes untouched.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import REPO, run_tfl

from tfl.runs import FolderLock, RunFolder

EPOCHS, FINE_TUNE_EPOCHS = 3, 3
TRAIN_ARGS = ["--image-size", "64", "--epochs", str(EPOCHS), "--fine-tune-epochs", str(FINE_TUNE_EPOCHS),
              "--batch-size", "8", "--seed", "3"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, hymenoptera):
    """16 train and 8 validation images per class of hymenoptera."""
    root = tmp_path_factory.mktemp("small")
    for cls in ("ants", "bees"):
        names = sorted(os.listdir(os.path.join(hymenoptera, "train", cls)))[:24]
        for split, part in (("train", names[:16]), ("val", names[16:])):
            os.makedirs(root / split / cls)
            for n in part:
                shutil.copy(os.path.join(hymenoptera, "train", cls, n), root / split / cls / n)
    return str(root)


def _tfl_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("tfl:")]


def _not_locked(folder):
    FolderLock(folder).release()  # raises if a process still held it


def _assert_whole(run):
    """Every checkpoint state.json names exists, and nothing half-written is left."""
    state = RunFolder(run).read_state()
    for stage in ("stage1", "stage2"):
        for key in ("last", "optimizer", "best"):
            name = state.get(stage, {}).get(key)
            if name:
                assert os.path.getsize(os.path.join(run, "checkpoints", name)) > 0, name
    leftovers = [n for n in os.listdir(run) + os.listdir(os.path.join(run, "checkpoints")) if n.startswith(".tmp-")]
    assert leftovers == []
    return state


def _resume_completes(run):
    proc = run_tfl("train", "--resume", run)
    assert "Traceback" not in proc.stderr
    history = json.load(open(os.path.join(run, "history.json")))
    assert [len(history[s]["loss"]) for s in ("stage1", "stage2")] == [EPOCHS, FINE_TUNE_EPOCHS]
    assert _assert_whole(run)["finished"] and os.path.exists(os.path.join(run, "model.keras"))
    return proc


def _interrupt(small_data, run, point, sig, name, last):
    """Runs `tfl train` until it signals itself at `point`; checks the exit, the line and the state."""
    proc = run_tfl("train", "--data", f"folder:{small_data}", *TRAIN_ARGS, "--out", run, check=False,
                   env={"TFL_TEST_KILL_AT": point, "TFL_TEST_KILL_SIGNAL": sig})
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert _tfl_lines(proc) == [f"tfl: interrupted: {name} stopped the run (last good checkpoint: {last}); "
                                f"continue it with: tfl train --resume {run}"]
    stage, epoch = last.split()[1], int(last.split()[-1])
    assert _assert_whole(run)[f"stage{stage}"]["epochs_done"] == epoch
    _not_locked(run)


@pytest.mark.slow
def test_ctrl_c_mid_epoch_stops_with_one_line_then_resume_completes_every_epoch(small_data, tmp_path):
    run = str(tmp_path / "run")
    _interrupt(small_data, run, "stage1:epoch2:batch2", "SIGINT", "Ctrl-C", "stage 1 epoch 1")
    proc = _resume_completes(run)
    # The epochs after the last good one, and no other, were run again.
    resumed = [line for line in proc.stdout.splitlines() if line.startswith("Epoch ")]
    assert resumed[:EPOCHS - 1] == [f"Epoch {e}/{EPOCHS}" for e in range(2, EPOCHS + 1)]


@pytest.mark.parametrize("point,last", [
    ("stage2:epoch2:batch1", "stage 2 epoch 1"),   # a scheduler's SIGTERM mid-epoch
    ("stage1:epoch2:saving", "stage 1 epoch 2"),   # while a checkpoint is written: that epoch is committed first
])
def test_sigterm_stops_the_same_way(small_data, tmp_path, point, last):
    _interrupt(small_data, str(tmp_path / "run"), point, "SIGTERM", "SIGTERM", last)


@pytest.mark.slow
def test_sigint_from_outside_mid_training_stops_within_seconds(small_data, tmp_path):
    """A real Ctrl-C at an arbitrary moment of stage 2 (trained on images, slow enough to be caught)."""
    run = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-m", "tfl", "train", "--data", f"folder:{small_data}",
                             "--image-size", "64", "--epochs", "1", "--fine-tune-epochs", "50", "--gradual-unfreeze",
                             "--batch-size", "8", "--out", run], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if os.path.exists(os.path.join(run, "state.json")):
                if RunFolder(run).read_state().get("stage2", {}).get("epochs_done", 0) >= 1:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        took = time.time() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("tfl:")]
    assert len(lines) == 1 and lines[0].startswith("tfl: interrupted: Ctrl-C stopped the run (last good checkpoint: "
                                                   "stage 2 epoch ")
    assert lines[0].endswith(f"continue it with: tfl train --resume {run}")
    assert took < 30, f"{took:.1f}s from the signal to the exit"
    assert _assert_whole(run)["stage2"]["epochs_done"] >= 1
    _not_locked(run)


@pytest.mark.slow
def test_a_second_writer_is_refused_in_one_line_and_the_first_finishes_untouched(small_data, tmp_path):
    """The first `tfl train` stops itself (SIGSTOP) mid-epoch, holding its folder; three others try it."""
    run = str(tmp_path / "run")
    first = subprocess.Popen([sys.executable, "-m", "tfl", "train", "--data", f"folder:{small_data}", *TRAIN_ARGS,
                              "--out", run], cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "TFL_TEST_KILL_AT": "stage2:epoch1:batch2",
                                  "TFL_TEST_KILL_SIGNAL": "SIGSTOP"})
    try:
        deadline = time.time() + 600
        while time.time() < deadline and first.poll() is None:
            with open(f"/proc/{first.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "T":  # stopped
                    break
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()[1][-3000:]
        before = sorted(os.listdir(run)), open(os.path.join(run, "state.json")).read()
        for extra in (["--resume", run], ["--data", f"folder:{small_data}", "--out", run, "--overwrite"],
                      ["--data", f"folder:{small_data}", "--out", run]):
            proc = run_tfl("train", *extra, check=False)
            assert proc.returncode == 2 and "Traceback" not in proc.stderr
            assert _tfl_lines(proc) == [f"tfl: error: run folder {run} is in use by another tfl process "
                                        f"(pid {first.pid}): wait for it to finish or stop it, "
                                        "or choose another folder"]
        assert (sorted(os.listdir(run)), open(os.path.join(run, "state.json")).read()) == before
        first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err[-3000:]
    history = json.load(open(os.path.join(run, "history.json")))
    assert [len(history[s]["loss"]) for s in ("stage1", "stage2")] == [EPOCHS, FINE_TUNE_EPOCHS]
    assert _assert_whole(run)["finished"]


TUNE_ARGS = ["--image-size", "32", "--epochs", "1", "--fine-tune-epochs", "1",
             "--batch-size", "8", "--max-trials", "1", "--search", "lr=1e-3..1e-2:log"]


@pytest.mark.slow
def test_tune_ctrl_c_says_how_to_resume_and_resume_finishes_the_search(small_data, tmp_path):
    out = str(tmp_path / "search")
    proc = run_tfl("tune", "--data", f"folder:{small_data}", *TUNE_ARGS, "--out", out, check=False,
                   env={"TFL_TEST_KILL_AT": "stage2:epoch1:batch1", "TFL_TEST_KILL_SIGNAL": "SIGINT"})
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert _tfl_lines(proc) == [f"tfl: interrupted: Ctrl-C stopped the search; continue it with: "
                                f"tfl tune --resume {out}"]
    _not_locked(out)
    proc = run_tfl("tune", "--resume", out)
    assert "Traceback" not in proc.stderr
    trials = json.load(open(os.path.join(out, "trials.json")))
    assert [t["status"] for t in trials] == ["COMPLETED"]
    assert RunFolder(os.path.join(out, "best")).is_trained()


def test_a_second_tune_chief_is_refused_in_one_line(small_data, tmp_path):
    out = str(tmp_path / "search")
    lock = FolderLock(out, "search folder")  # held by this process, as a running search would
    try:
        for extra in ([], ["--overwrite"]):
            proc = run_tfl("tune", "--data", f"folder:{small_data}", *TUNE_ARGS, "--out", out, *extra, check=False)
            assert proc.returncode == 2 and "Traceback" not in proc.stderr
            assert _tfl_lines(proc) == [f"tfl: error: search folder {out} is in use by another tfl process "
                                        f"(pid {os.getpid()}): wait for it to finish or stop it, "
                                        "or choose another folder"]
        assert os.listdir(out) == ["tfl.lock"]
    finally:
        lock.release()
