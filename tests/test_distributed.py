"""Distributed search (Keras Tuner's chief/worker mode) and multi-worker training
(MultiWorkerMirroredStrategy from TF_CONFIG), all on 127.0.0.1 with real processes."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO

TINY = ["--backbone", "mobilenet_025", "--weights", "imagenet", "--image-size", "96", "--epochs", "2",
        "--fine-tune-epochs", "1", "--no-augment"]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start(*args, env=None, logs):
    """Starts `tfl ARGS`; its stdout and stderr go to files (pipes could fill up while we wait on another)."""
    n = len(logs)
    out, err = open(logs.base / f"{n}.out", "w+"), open(logs.base / f"{n}.err", "w+")
    logs.append((out, err))
    return subprocess.Popen([sys.executable, "-m", "tfl", *args], stdout=out, stderr=err, text=True, cwd=REPO,
                            env={**os.environ, **(env or {})})


class _Logs(list):
    def __init__(self, base):
        super().__init__()
        self.base = base


def _finish(procs, logs, timeout):
    """(stdout, stderr) of each process; kills them all if one fails or time runs out."""
    deadline, outs = time.time() + timeout, []
    try:
        for p, (out, err) in zip(procs, logs):
            try:
                p.wait(timeout=max(1, deadline - time.time()))
            finally:
                out.seek(0), err.seek(0)
                outs.append((out.read(), err.read()))
            assert p.returncode == 0, f"exit {p.returncode}:\n{outs[-1][0]}\n{outs[-1][1]}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outs


@pytest.mark.slow
def test_chief_and_two_workers_search_together(tmp_path, hymenoptera):
    (port,) = _free_ports(1)
    out = str(tmp_path / "search")
    common = ["tune", "--data", f"folder:{hymenoptera}", *TINY, "--tuner", "random", "--max-trials", "4",
              "--search", "lr=1e-3..3e-2:log", "--fix", "dense_layers=0", "--fix", "unfreeze=1blocks", "--out", out]
    logs = _Logs(tmp_path)
    chief = _start(*common, "--chief", f"127.0.0.1:{port}", logs=logs)
    workers = [_start(*common, "--worker", f"127.0.0.1:{port}", "--tuner-id", f"worker-{i}", logs=logs)
               for i in range(2)]
    (c_out, c_err), *worker_outs = _finish([chief, *workers], logs, timeout=600)

    lines = c_out.splitlines()
    assert lines[0].split()[:3] == ["rank", "trial", "status"], c_out
    rows = [line.split() for line in lines[1:5]]
    assert sorted(r[1] for r in rows) == ["0", "1", "2", "3"] and all(r[2] == "completed" for r in rows), c_out
    # The chief reports every trial, and which worker ran it.
    ran_by = {}
    for line in c_err.splitlines():
        if "] trial " in line and " started (" in line:
            trial, who = line.split("] trial ")[1].split(" started (")
            ran_by[trial] = who.split(")")[0]
    assert sorted(ran_by) == ["0", "1", "2", "3"] and set(ran_by.values()) <= {"worker-0", "worker-1"}, c_err
    assert sum(f"trial {t} completed" in c_err for t in ran_by) == 4
    for i, (w_out, _) in enumerate(worker_outs):
        mine = sorted(t for t, who in ran_by.items() if who == f"worker-{i}")
        assert mine and f"worker worker-{i}: ran {len(mine)} trial(s): " + ", ".join(mine) in w_out, (w_out, ran_by)
    trials = json.load(open(os.path.join(out, "trials.json"), encoding="utf-8"))
    assert all(os.path.exists(os.path.join(t["run_dir"], "model.keras")) for t in trials)
    assert os.path.exists(os.path.join(out, "best", "model.keras"))


@pytest.mark.slow
def test_two_workers_with_tf_config_train_the_same_model(tmp_path, hymenoptera):
    from tfl.serving.prediction import load_model

    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs = [], _Logs(tmp_path)
    for i in range(2):
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(_start("train", "--data", f"folder:{hymenoptera}", *TINY, "--unfreeze", "1blocks",
                            "--strategy", "multiworker", "--out", str(tmp_path / f"worker{i}"), env=env, logs=logs))
    _finish(procs, logs, timeout=600)
    runs = [str(tmp_path / f"worker{i}") for i in range(2)]
    metrics = [json.load(open(os.path.join(r, "metrics.json"), encoding="utf-8")) for r in runs]
    assert metrics[0]["stage2"]["epochs"] == 1 and metrics[0]["stage1"] == metrics[1]["stage1"]
    models = [load_model(r) for r in runs]
    weights = [m.get_weights() for m in models]
    assert len(weights[0]) == len(weights[1]) > 10
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    assert metrics[0]["stage1"]["val_accuracy"] > 0.6  # it learned: the weights agree after training
