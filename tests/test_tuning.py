"""tfl.tune / tfl tune: Keras Tuner search over the two-stage recipe.

The searches are real (Keras Tuner oracles, real trainings of mobilenet_025
with its ImageNet weights on the hymenoptera photos) and tiny: small images
and one or two epochs per stage, except the accuracy test, which needs
224 px.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from conftest import REPO, run_tfl

# Tiny trials: 96 px, 2 head epochs on cached features, 1 fine-tuning epoch.
TINY = ["--backbone", "mobilenet_025", "--weights", "imagenet", "--image-size", "96", "--epochs", "2",
        "--fine-tune-epochs", "1", "--no-augment", "--batch-size", "32"]


def _tfl_popen(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "tfl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env={**os.environ, **(env or {})})


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# -- the search space -------------------------------------------------------------------------------
def test_search_specs_parse_and_bad_ones_say_which_option():
    from tfl.errors import UsageError
    from tfl.tuning import space as ss

    assert ss.parse_spec("lr", "1e-4..1e-2:log") == ss.Range(1e-4, 1e-2, log=True)
    assert ss.parse_spec("unfreeze", "0,20,40,80") == ss.Choice(("0", "20", "40", "80"))
    assert ss.parse_spec("dense_units", "64..256:step=64") == ss.Range(64, 256, step=64)
    assert ss.parse_spec("dropout", "0.2", "--fix") == ss.Fixed(0.2)
    space = ss.SearchSpace(ss.parse_assignments(["lr=1e-4..1e-2:log", "unfreeze=0,20,40,80"], "--search"),
                           ss.parse_assignments(["dropout=0.2"], "--fix"))
    domains = space.domains()
    assert domains["dropout"] == ss.Fixed(0.2) and domains["unfreeze"].values == ("0", "20", "40", "80")
    assert domains["fine_tune_lr"] == ss.PARAMS["fine_tune_lr"].default  # untouched defaults stay searched
    assert "backbone" not in domains  # optional ones are searched only on request
    for option, items, words in [
        ("--search", ["lrr=1e-3..1e-2"], "did you mean lr"),
        ("--search", ["lr=1e-2..1e-4"], "low to high"),
        ("--search", ["lr=0..1e-2:log"], "above 0"),
        ("--search", ["unfreeze=0..20"], "list of values"),
        ("--search", ["optimizer=adam,lbfgs"], "not one of"),
        ("--search", ["dense_units=64.5,128"], "whole number"),
        ("--fix", ["dropout"], "NAME=SPEC"),
    ]:
        with pytest.raises(UsageError, match=words) as e:
            ss.parse_assignments(items, option)
        assert option in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UsageError, match="both name dropout"):
        ss.SearchSpace({"dropout": "0..0.5"}, {"dropout": "0.2"})
    with pytest.raises(UsageError, match="give one value"):
        ss.SearchSpace(fix={"dropout": "0.1,0.2"}).domains()


def test_hypermodel_build_is_pure_and_maps_every_value():
    import keras_tuner as kt

    from tfl.config import TrainConfig
    from tfl.tuning import space as ss
    from tfl.tuning.search import HyperModel

    base = TrainConfig()
    base.data.source = "folder:/nowhere"
    space = ss.SearchSpace({"optimizer": "sgd,adamw", "backbone": "mobilenet_025,mobilenet_050",
                            "dense_layers": "0,2"}, {"dropout": "0.3", "batch_size": "16"})
    before = base.to_dict()
    hm = HyperModel(base, space)
    hp = kt.HyperParameters()
    cfg = hm.build(hp)
    assert isinstance(cfg, TrainConfig) and base.to_dict() == before  # the base config is not touched
    assert hm.build(hp).to_dict() == cfg.to_dict()  # same values, same config: no hidden state
    assert cfg.stage1.optimizer == cfg.stage2.optimizer == "sgd" and cfg.model.backbone == "mobilenet_025"
    assert cfg.model.head.dropout == 0.3 and cfg.data.batch_size == 16 and cfg.model.head.dense == []
    assert not hp.is_active("dense_units")  # only searched when there is a hidden layer
    hp.values.update({"dense_layers": 2, "dense_units": 512, "lr": 0.02, "fine_tune_lr": 3e-5, "unfreeze": "4blocks"})
    cfg = hm.build(hp)
    assert hp.is_active("dense_units") and cfg.model.head.dense == [512, 512]
    assert (cfg.stage1.lr, cfg.stage2.lr, cfg.stage2.unfreeze) == (0.02, 3e-5, "4blocks")


def test_cli_refuses_bad_searches_in_one_line(tmp_path):
    from tfl.cli import main

    runner = CliRunner()
    cases = [
        (["tune", "--data", "folder:x", "--search", "nope=1,2"], "--search nope: unknown hyperparameter"),
        (["tune", "--data", "folder:x", "--fix", "lr=1e-3..1e-2"], "--fix lr=1e-3..1e-2: give one value"),
        (["tune", "--data", "folder:x", "--max-time", "soon"], "--max-time 'soon' is not a duration"),
        (["tune", "--data", "folder:x", "--chief", "localhost"], "--chief 'localhost' is not HOST:PORT"),
        (["tune", "--resume", str(tmp_path)], "nothing to resume"),
        (["tune", "--search", "lr=1e-3..1e-2"], "--data is required"),
    ]
    for args, words in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and words in lines[0], (args, result.output)
    listing = runner.invoke(main, ["tune", "--list-params"])
    assert listing.exit_code == 0 and "fine_tune_lr" in listing.output and "1e-05..0.001:log" in listing.output


@pytest.mark.parametrize("name", ["random", "grid", "bayesian", "hyperband"])
def test_every_tuner_drives_the_recipe_configs(tmp_path, name):
    """Keras Tuner's four oracles over tfl's space; the trial's training is replaced by a score of its config."""
    import keras_tuner as kt

    from tfl.config import TrainConfig
    from tfl.tuning import space as ss
    from tfl.tuning import tuner as _tuner
    from tfl.tuning.search import HyperModel, trial_rows

    runs, run_dirs = [], []

    def score(cfg):
        return 1 - abs(cfg.stage1.lr - 0.01) - 0.1 * len(cfg.model.head.dense) + cfg.seed / 1e3

    class Scored(_tuner.TwoStageTuner):
        def _run(self, cfg, run_dir, continue_from, trial_id):
            runs.append((trial_id, cfg, continue_from))
            run_dirs.append(os.path.relpath(run_dir, self.search_dir))
            return {"val_accuracy": score(cfg)}

    base = TrainConfig()
    base.stage2.epochs = 4  # Hyperband: 5 trials of 2 stage-2 epochs, then the best 2 continued to 4
    space = ss.SearchSpace({"lr": "1e-3..3e-2:log:step=3" if name == "grid" else "1e-3..3e-2:log"},
                           {"unfreeze": "2blocks", "fine_tune_lr": "1e-4", "dropout": "0.2"})
    oracle = _tuner.make_oracle(name, "val_accuracy", 7, seed=1, max_epochs=base.stage2.epochs)
    executions = 2 if name == "random" else 1
    tuner = Scored(oracle, HyperModel(base, space), str(tmp_path / name), executions_per_trial=executions)
    assert type(oracle) is _tuner.ORACLES[name] and isinstance(tuner, kt.Tuner)  # public Keras Tuner classes
    tuner.search()
    rows = trial_rows(tuner)
    assert len(runs) == executions * len(rows)
    if executions == 2:  # each trial runs twice, with seeds 42 and 43, into two run folders
        assert [c.seed for _, c, _ in runs[:2]] == [42, 43] and runs[0][1].stage1.lr == runs[1][1].stage1.lr
        assert run_dirs[:2] == [os.path.join("trials", runs[0][0]), os.path.join("trials", runs[0][0] + ".1")]
        for r in rows:  # the trial's score is the mean of its executions'
            mine = [score(c) for t, c, _ in runs if t == r["trial_id"]]
            assert len(mine) == 2 and r["score"] == pytest.approx(sum(mine) / 2)
    else:
        assert run_dirs == [os.path.join("trials", t) for t, _, _ in runs]
    assert 3 <= len(rows) <= 7 and all(r["status"] == "COMPLETED" for r in rows)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert len({(c.stage1.lr, tuple(c.model.head.dense)) for _, c, _ in runs}) >= 3  # it explores
    if name == "hyperband":  # early rounds are cheap: fewer stage-2 epochs; later ones continue a trial
        assert [c.stage2.epochs for _, c, _ in runs] == [2] * 5 + [4] * 2
        first = {t: c for t, c, _ in runs[:5]}
        for _, cfg, previous in runs[5:]:
            earlier = first[os.path.basename(previous)]  # continues a round-0 trial with its hyperparameters
            assert (earlier.stage1.lr, earlier.model.head.dense) == (cfg.stage1.lr, cfg.model.head.dense)
    else:
        assert {c.stage2.epochs for _, c, _ in runs} == {4}


# -- real searches ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_mirrored_search_finds_an_accurate_model_and_keeps_it_as_a_run(tmp_path, hymenoptera):
    """3 trials under MirroredStrategy over 2 logical CPUs; stage 1 is shared, stage 2 is searched."""
    out = tmp_path / "search"
    proc = run_tfl("tune", "--data", f"folder:{hymenoptera}", "--backbone", "mobilenet_025", "--weights", "imagenet",
                   "--image-size", "224", "--no-augment", "--epochs", "20", "--fine-tune-epochs", "1",
                   "--strategy", "mirrored", "--cpu-replicas", "2", "--tuner", "grid", "--max-trials", "3",
                   "--fix", "lr=0.02", "--fix", "dense_layers=0", "--fix", "dropout=0.2",
                   "--search", "unfreeze=0,1blocks,2blocks", "--fix", "fine_tune_lr=1e-5", "--out", str(out))
    table = proc.stdout.splitlines()
    assert table[0].split()[:4] == ["rank", "trial", "status", "val_accuracy"]
    rows = [line.split() for line in table[1:4]]
    scores = [float(r[3]) for r in rows]
    assert [r[2] for r in rows] == ["completed"] * 3 and scores == sorted(scores, reverse=True)
    assert "strategy: MirroredStrategy with 2 replicas" in proc.stderr
    trials = _read_json(out / "trials.json")
    assert len(trials) == 3 and {t["hyperparameters"]["unfreeze"] for t in trials} == {"0", "1blocks", "2blocks"}
    # Trials share the feature cache and the stage-1 head (same stage-1 hyperparameters).
    assert proc.stderr.count("stage 1 shared with") == 2
    shared = [_read_json(out / "trials" / t["trial_id"] / "state.json").get("stage1_from") for t in trials]
    assert sorted(s or "" for s in shared)[1:] == ["0", "0"]
    best = _read_json(out / "best_hyperparameters.json")
    assert best["trial_id"] == trials[0]["trial_id"] and best["score"] >= 0.86
    # DIR/best is a normal run folder: `tfl evaluate` (its Python side, in this process) scores its saved model.
    import tfl

    assert tfl.evaluate(str(out / "best"))["accuracy"] >= 0.86


@pytest.mark.slow
def test_resume_after_sigkill_finishes_without_redoing_completed_trials(tmp_path, hymenoptera):
    out = tmp_path / "search"
    args = ["tune", "--data", f"folder:{hymenoptera}", *TINY, "--tuner", "random", "--max-trials", "3",
            "--search", "lr=1e-3..3e-2:log", "--fix", "dense_layers=0", "--fix", "unfreeze=1blocks", "--out", str(out)]
    proc = _tfl_popen(*args)
    lines = []
    for line in proc.stderr:  # kill it (SIGKILL: no cleanup at all) once trial 1 has begun training
        lines.append(line)
        if "trial 1 started" in line:
            deadline = time.time() + 120
            while not (out / "trials" / "1" / "state.json").exists() and time.time() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(lines)
    first = out / "trials" / "0" / "model.keras"
    assert first.exists() and not (out / "trials" / "1" / "model.keras").exists()
    stamp = first.stat().st_mtime_ns

    resumed = run_tfl("tune", "--resume", str(out))
    assert "trial 0 started" not in resumed.stderr  # completed: not run again
    assert "trial 1 started" in resumed.stderr and "trial 2 started" in resumed.stderr
    assert "trials/1: continuing an interrupted run" in resumed.stderr  # from its last checkpoint
    assert first.stat().st_mtime_ns == stamp
    trials = _read_json(out / "trials.json")
    assert sorted(t["trial_id"] for t in trials) == ["0", "1", "2"]
    assert all(t["status"] == "COMPLETED" for t in trials)
    assert (out / "best" / "model.keras").exists()


@pytest.mark.slow
def test_memory_stays_flat_over_six_trials(tmp_path, hymenoptera):
    """Peak RSS of each of 6 trials of one search process, sampled with psutil, stays within 15% of trial 0's."""
    import psutil  # a test dependency (setup.cfg [test]): a missing one must fail, not skip
    out = tmp_path / "search"
    proc = _tfl_popen("tune", "--data", f"folder:{hymenoptera}", *TINY, "--tuner", "random", "--max-trials", "6",
                      "--search", "lr=1e-3..3e-2:log", "--search", "dropout=0.1,0.3",
                      # One shape for every trial: 2 unfrozen blocks cache larger activations than 1, which
                      # would show as growth that is not a leak.
                      "--fix", "unfreeze=2blocks", "--fix", "dense_layers=1", "--out", str(out))
    peaks, current, log = {}, [None], []

    def follow():
        for line in proc.stderr:
            log.append(line)
            if "] trial " in line and " started" in line:
                current[0] = line.split("] trial ")[1].split()[0]
            elif "] trial " in line and " completed" in line:
                current[0] = None

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    process = psutil.Process(proc.pid)
    while proc.poll() is None:
        trial = current[0]
        try:
            rss = process.memory_info().rss
        except psutil.NoSuchProcess:
            break
        if trial is not None:
            peaks[trial] = max(peaks.get(trial, 0), rss)
        time.sleep(0.05)
    reader.join(timeout=10)
    assert proc.returncode == 0, "".join(log)
    assert sorted(peaks) == [str(i) for i in range(6)], (peaks, "".join(log))
    first = peaks["0"]
    mb = {k: round(v / 2**20) for k, v in sorted(peaks.items())}
    print(f"peak RSS per trial (MB): {mb}")
    assert max(peaks.values()) <= 1.15 * first, f"peak RSS per trial (MB): {mb}"


@pytest.mark.slow
def test_max_time_stops_the_search_cleanly_with_what_it_has(tmp_path, hymenoptera):
    import tfl

    t0 = time.time()
    # 5000 head epochs: far more than 8 s on any machine (50 fitted in 8 s on a fast one, and then
    # trial 0 ended on its own), so trial 0 is always the one the time limit cuts.
    result = tfl.tune(data=f"folder:{hymenoptera}", backbone="mobilenet_025", image_size=96, epochs=5000,
                      fine_tune_epochs=1, augment=False, tuner="random", max_trials=20, max_time=8,
                      fix={"dense_layers": 0}, out=str(tmp_path / "search"))
    took = time.time() - t0
    assert result.stopped_by_time and 1 <= len(result.trials) < 20
    assert all(t["status"] == "COMPLETED" for t in result.trials)  # nothing left half-run
    assert result.trials[0]["cut_by_max_time"] and len(result.trials) == 1
    assert took < 8 + 60, took  # stopped at the next batch, not after 5000 epochs x 20 trials
    assert os.path.exists(os.path.join(result.best_run_dir, "model.keras"))
