"""Per-epoch checkpoints that a killed run can resume from exactly.

Each epoch writes new weight and optimizer files under fresh names, then
commits them by rewriting `state.json` atomically, then deletes the files the
previous state named. A kill at any instant leaves a state that names a
complete set of files. Early stopping lives here too, so that its counters
survive a restart.

Test hook: with `TFL_TEST_KILL_AT=<point>` in the environment the process
SIGKILLs itself on reaching that point (or sends itself the signal named by
`TFL_TEST_KILL_SIGNAL`, e.g. SIGINT), so tests/test_resume.py and
tests/test_interrupts.py can stop a real `tfl train` at an exact place. The points (see `kill_point` calls):
`stage{N}:epoch{E}:batch{B}` (during an epoch), `stage{N}:epoch{E}:saving`
(checkpoint written to a temporary file, not yet renamed or committed),
`between-stages`, `final-save` (model.keras written, not yet renamed).
"""

from __future__ import annotations

import contextlib
import os
import signal

import numpy as np

from tfl import interrupts
from tfl.config import is_minimized
from tfl.runs import RunFolder, atomic_path, ensure_space

_KILL_AT = os.environ.get("TFL_TEST_KILL_AT", "")
_KILL_SIGNAL = os.environ.get("TFL_TEST_KILL_SIGNAL", "SIGKILL")


def kill_point(name: str) -> None:
    """Test-only: signal this process (SIGKILL, or TFL_TEST_KILL_SIGNAL) at the point TFL_TEST_KILL_AT names."""
    if _KILL_AT and name == _KILL_AT:
        os.kill(os.getpid(), getattr(signal, _KILL_SIGNAL, signal.SIGKILL))


def _keras():
    import keras

    return keras


def save_optimizer(optimizer, path: str) -> None:
    arrays = {f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def variables_bytes(variables) -> int:
    """Bytes that `variables` take in a checkpoint, plus room for HDF5's own records."""
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize + 4096 for v in variables) + 65536


def load_optimizer(optimizer, variables, path: str) -> None:
    """Restores optimizer slots saved by `save_optimizer` (builds it first)."""
    optimizer.build(variables)
    with np.load(path) as data:
        arrays = [data[f"v{i}"] for i in range(len(data.files))]
    if len(arrays) != len(optimizer.variables):
        raise RuntimeError(f"optimizer checkpoint {path} does not match the model ({len(arrays)} != "
                           f"{len(optimizer.variables)} variables); start again with --overwrite")
    for var, value in zip(optimizer.variables, arrays):
        var.assign(value)


class StageState:
    """The resumable state of one stage, stored under `state.json[stage{n}]`."""

    def __init__(self, run: RunFolder, stage: int):
        self.run, self.stage = run, stage
        self.key = f"stage{stage}"
        self.data = run.read_state().get(self.key, {})

    epochs_done = property(lambda self: self.data.get("epochs_done", 0))
    done = property(lambda self: self.data.get("done", False))
    history = property(lambda self: self.data.get("history", {}))

    def path(self, name: str) -> str:
        return os.path.join(self.run.checkpoint_dir, name)

    def commit(self, **changes) -> None:
        old_files = self._files()
        self.data = {**self.data, **changes}
        state = self.run.read_state()
        state[self.key] = self.data
        self.run.write_state(state)
        for f in old_files - self._files():
            with contextlib.suppress(OSError):
                os.unlink(self.path(f))

    def _files(self) -> set:
        return {self.data[k] for k in ("last", "optimizer", "best") if self.data.get(k)}

    def restore_last(self, model) -> bool:
        """Loads the last epoch's weights and optimizer state, if any."""
        if not self.data.get("last"):
            return False
        model.load_weights(self.path(self.data["last"]))
        load_optimizer(model.optimizer, model.trainable_variables, self.path(self.data["optimizer"]))
        return True

    def restore_best(self, model) -> bool:
        if not self.data.get("best"):
            return False
        model.load_weights(self.path(self.data["best"]))
        return True


def make_callback(state: StageState, monitor: str, patience):
    """A Keras callback that checkpoints `state` every epoch and stops early."""
    keras = _keras()
    mode_max = not is_minimized(monitor)

    class StageCheckpoint(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if _KILL_AT:
                kill_point(f"stage{state.stage}:epoch{self.epoch + 1}:batch{batch + 1}")

        def save_weights(self, name):
            with atomic_path(state.path(name)) as tmp:
                self.model.save_weights(tmp)
                kill_point(f"stage{state.stage}:epoch{self.epoch + 1}:saving")

        def on_epoch_end(self, epoch, logs=None):
            with interrupts.protected():  # a signal waits until this epoch is committed
                self._checkpoint(epoch, logs)

        def _checkpoint(self, epoch, logs):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            history = {k: list(v) for k, v in state.history.items()}
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            value = logs.get(monitor)
            best = state.data.get("best_value")
            improved = value is not None and (best is None or (value > best if mode_max else value < best))
            tag = f"stage{state.stage}.e{epoch + 1:03d}"
            changes = dict(epochs_done=epoch + 1, history=history, last=f"{tag}.weights.h5",
                           optimizer=f"{tag}.opt.npz")
            # last + best + optimizer slots, before anything is written (see runs.ensure_space)
            ensure_space(state.run.checkpoint_dir, 2 * variables_bytes(self.model.weights)
                         + variables_bytes(self.model.optimizer.variables))
            self.save_weights(changes["last"])
            save_optimizer(self.model.optimizer, state.path(changes["optimizer"]))
            if improved:
                changes.update(best=f"{tag}.best.weights.h5", best_value=value, best_epoch=epoch + 1, wait=0)
                self.save_weights(changes["best"])
            else:
                changes["wait"] = state.data.get("wait", 0) + 1
            if patience and changes["wait"] >= patience:
                changes["stopped_early"] = True
                self.model.stop_training = True
            state.commit(**changes)

    return StageCheckpoint()
