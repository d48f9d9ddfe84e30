"""Killed and starved training resumes: SIGKILL at exact points, and a full disk.

Each kill is a real SIGKILL of a `python -m tfl train` subprocess: the
test-only hook TFL_TEST_KILL_AT (tfl/training/_checkpoint.py) makes the process kill
itself on reaching the named point, so the points are hit exactly. One run is
killed at every point in turn (each `--resume` dies at the next point), then
completes; it must end in the same state as an uninterrupted run.
"""

import json
import os
import shutil

import pytest
from helpers import fill_disk, run_tfl, small_disk

from tfl.runs import RunFolder

EPOCHS, FINE_TUNE_EPOCHS = 3, 3
TRAIN_ARGS = ["--image-size", "64", "--epochs", str(EPOCHS), "--fine-tune-epochs", str(FINE_TUNE_EPOCHS),
              "--batch-size", "8", "--seed", "3"]

# (kill point, where it is, the Keras "Epoch e/n" lines the killed process printed)
KILL_POINTS = [
    ("stage1:epoch1:saving", "while writing a checkpoint", ["Epoch 1/3"]),
    ("stage1:epoch2:batch2", "during a stage-1 epoch", ["Epoch 1/3", "Epoch 2/3"]),
    ("between-stages", "after stage 1, before stage 2", ["Epoch 2/3", "Epoch 3/3"]),
    ("stage2:epoch2:batch3", "during a stage-2 epoch", ["Epoch 1/3", "Epoch 2/3"]),
    ("final-save", "while writing model.keras", ["Epoch 2/3", "Epoch 3/3"]),
]


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


def _state(run):
    return RunFolder(run).read_state()


def _assert_consistent(run):
    """Every checkpoint file state.json names exists (the commit came after the files)."""
    for stage in ("stage1", "stage2"):
        for key in ("last", "optimizer", "best"):
            name = _state(run).get(stage, {}).get(key)
            if name:
                assert os.path.getsize(os.path.join(run, "checkpoints", name)) > 0, name


def _epochs_run(proc):
    return [line for line in proc.stdout.splitlines() if line.startswith("Epoch ")]


def _tmp_files(run):
    return [n for n in os.listdir(run) + os.listdir(os.path.join(run, "checkpoints")) if n.startswith(".tmp-")]


def test_sigkill_at_every_point_then_resume_completes(small_data, tmp_path):
    """Each process dies at the next point; no finished epoch is ever run again."""
    run = str(tmp_path / "run")
    args = ["train", "--data", f"folder:{small_data}", *TRAIN_ARGS, "--out", run]
    for point, where, epochs in KILL_POINTS:
        proc = run_tfl(*args, check=False, env={"TFL_TEST_KILL_AT": point})
        assert proc.returncode == -9, f"not killed {where}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr
        assert _epochs_run(proc) == epochs, (point, _epochs_run(proc))
        state = _state(run)
        _assert_consistent(run)
        stage1, stage2 = state.get("stage1", {}), state.get("stage2", {})
        if point == "stage1:epoch1:saving":  # half-written: a temporary file that state.json does not name
            assert _tmp_files(run) and not stage1.get("epochs_done")
        elif point == "stage1:epoch2:batch2":
            assert not _tmp_files(run) and stage1["epochs_done"] == 1
            first_epoch = {k: v[0] for k, v in stage1["history"].items()}
        elif point == "between-stages":
            assert "stage 1: resuming after epoch 1" in proc.stderr
            assert stage1["done"] and not stage2.get("epochs_done")
            assert {k: v[0] for k, v in stage1["history"].items()} == first_epoch  # kept, not redone
        elif point == "stage2:epoch2:batch3":
            assert "stage 1: backbone features" not in proc.stderr  # stage 1 is done: not even features
            assert stage2["epochs_done"] == 1
        elif point == "final-save":
            assert "stage 2: resuming after epoch 1" in proc.stderr
            assert stage2["done"] and stage2["epochs_done"] == FINE_TUNE_EPOCHS and not state.get("finished")
            assert not os.path.exists(os.path.join(run, "model.keras")) and _tmp_files(run)
        args = ["train", "--resume", run]

    proc = run_tfl(*args)
    assert "Traceback" not in proc.stderr and _epochs_run(proc) == []
    state, history = _state(run), json.load(open(os.path.join(run, "history.json")))
    assert state["finished"] and not _tmp_files(run)
    assert [len(history[s]["loss"]) for s in ("stage1", "stage2")] == [EPOCHS, FINE_TUNE_EPOCHS]
    named = {state[s][k] for s in ("stage1", "stage2") for k in ("last", "optimizer", "best") if state[s].get(k)}
    assert set(os.listdir(os.path.join(run, "checkpoints"))) == named

    # The same final state as an uninterrupted run with the same seed.
    from tfl.config import TrainConfig
    from tfl.serving.prediction import Predictor
    from tfl.training.trainer import Trainer

    ref = Trainer(TrainConfig.from_json(open(os.path.join(run, "config.json")).read()), str(tmp_path / "ref"),
                  verbose=0, report=False).fit()
    ref_history = json.load(open(os.path.join(ref.run_dir, "history.json")))
    assert {s: len(h["loss"]) for s, h in ref_history.items()} == {s: len(h["loss"]) for s, h in history.items()}
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    # 16 validation images: one image is 0.0625; resumed epochs see other shuffles and dropout masks.
    assert abs(metrics["val_accuracy"] - ref.val_accuracy) <= 0.25, (metrics["val_accuracy"], ref.val_accuracy)
    results = Predictor(run).predict([os.path.join(small_data, "val", "ants")])
    assert len(results) == 8 and all(r["label"] in ("ants", "bees") for r in results)


def test_full_disk_fails_in_one_line_and_keeps_the_last_good_checkpoint(small_data, tmp_path):
    """The run gets to stage 2 epoch 1, the disk is then filled to 256 KB, and the run resumed:
    the next checkpoint cannot be written. The one from epoch 1 must survive, whole."""
    import h5py
    import numpy as np

    with small_disk(tmp_path / "disk", "64m") as disk:
        run = os.path.join(disk, "run")
        proc = run_tfl("train", "--data", f"folder:{small_data}", *TRAIN_ARGS, "--out", run, check=False,
                       env={"TFL_TEST_KILL_AT": "stage2:epoch2:batch1"})
        assert proc.returncode == -9 and _state(run)["stage2"]["epochs_done"] == 1, proc.stderr[-2000:]
        fill_disk(disk, leave=256 * 1024)
        before = _state(run)

        proc = run_tfl("train", "--resume", run, check=False)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("tfl: error:")]
        assert len(errors) == 1 and "disk full while writing the run folder" in errors[0], proc.stderr[-2000:]
        assert f"tfl train --resume {run}" in errors[0] and "last good checkpoint: stage 2 epoch 1" in errors[0]
        state = _state(run)
        assert {k: state["stage2"][k] for k in ("epochs_done", "last", "best", "optimizer")} == \
            {k: before["stage2"][k] for k in ("epochs_done", "last", "best", "optimizer")}
        _assert_consistent(run)
        assert not _tmp_files(run)
        # Whole files: every array of the weights and of the optimizer slots reads back.
        for key in ("last", "best"):
            with h5py.File(os.path.join(run, "checkpoints", state["stage2"][key]), "r") as f:
                arrays = []
                f.visititems(lambda name, obj, found=arrays: found.append(obj[()])
                             if isinstance(obj, h5py.Dataset) else None)
                assert len(arrays) > 10 and all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f")
        with np.load(os.path.join(run, "checkpoints", state["stage2"]["optimizer"])) as slots:
            assert len(slots.files) > 2 and all(np.isfinite(slots[k]).all() for k in slots.files)
