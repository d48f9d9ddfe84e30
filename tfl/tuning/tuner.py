"""The Keras Tuner side of `tfl.tune`: oracles chosen by name, and a tuner
whose trial is one whole two-stage run (`tfl.training.trainer.Trainer`).

Keras Tuner is used through its public API only. `TwoStageTuner` is a
`keras_tuner.Tuner` that overrides `run_trial`, the hook Keras Tuner
documents for trials that are not one `model.fit` ("if not calling
`super().run_trial()`, it can tune anything"): it turns the trial's
hyperparameters into a `TrainConfig` (`HyperModel.build`, which builds
nothing heavy), trains it `executions_per_trial` times into
`DIR/trials/<trial id>[.<execution>]` and returns each run's validation
metrics, which Keras Tuner averages. Work is reused between trials:

* trials with the same backbone, weights, image size and augmentation share
  stage 1's feature cache (kept in memory, a few at a time);
* trials with the same stage-1 hyperparameters share the stage-1 head: its
  checkpoint is copied from the first such trial, and stage 1 is skipped;
* a Hyperband trial that continues an earlier one (`tuner/trial_id`) copies
  that trial's run and trains stage 2 on, to `tuner/epochs` epochs.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import time

import keras_tuner as kt
from keras_tuner.engine.trial import Trial, TrialStatus

from tfl import _compat
from tfl._logging import log
from tfl.config import MONITORS, TrainConfig, is_minimized
from tfl.errors import UsageError
from tfl.runs import RunFolder, atomic_write_text, read_json
from tfl.training.activations import ActivationStore
from tfl.tuning import space as _search_space

# val_macro_f1, val_micro_f1 and val_map need a multi-label head (config.validate says so).
OBJECTIVES = MONITORS


def _atomic_save_json(path: str, state) -> None:
    # Keras Tuner rewrites its JSON files in place; a kill mid-write would
    # leave a search that cannot be resumed.
    atomic_write_text(path, json.dumps(state))


class _TflOracle:
    """Mixed into Keras Tuner's oracles: atomic state files, a deadline, progress lines."""

    deadline = None  # --max-time: `time.time()` after which no trial starts
    log_trials = True  # the process that owns the oracle prints each trial's start and end

    @kt.synchronized
    def create_trial(self, tuner_id):
        if self.deadline is not None and time.time() >= self.deadline and tuner_id not in self.ongoing_trials:
            # --max-time: no new trial; the search ends with what it has.
            self.tuner_ids.discard(tuner_id)
            return Trial(self.get_space(), status=TrialStatus.STOPPED)
        trial = super().create_trial(tuner_id)
        if trial.status == TrialStatus.RUNNING and self.log_trials:
            self._started = {**getattr(self, "_started", {}), trial.trial_id: time.time()}
            log.info(f"trial {trial.trial_id} started ({tuner_id}): {format_hps(trial.hyperparameters.values)}")
        return trial

    @kt.synchronized
    def end_trial(self, trial):
        super().end_trial(trial)
        if self.log_trials:
            trial = self.trials[trial.trial_id]
            seconds = time.time() - getattr(self, "_started", {}).get(trial.trial_id, time.time())
            score = f"{self.objective.name} {trial.score:.4f}" if trial.score is not None else "no score"
            why = (trial.message or "").strip().splitlines()
            why = f" ({why[-1]})" if why and trial.status != TrialStatus.COMPLETED else ""
            log.info(f"trial {trial.trial_id} {trial.status.lower()}: {score} in {seconds:.0f}s{why}")

    # Keras Tuner has no public hook for how its files are written; these two are its
    # own (overridable) methods, on this object.
    def save(self):
        _atomic_save_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        _atomic_save_json(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())


class TflRandomSearchOracle(_TflOracle, kt.oracles.RandomSearchOracle):
    """`--tuner random`."""


class TflGridSearchOracle(_TflOracle, kt.oracles.GridSearchOracle):
    """`--tuner grid`."""


class TflBayesianOptimizationOracle(_TflOracle, kt.oracles.BayesianOptimizationOracle):
    """`--tuner bayesian`: Keras Tuner's Gaussian process, which needs scipy."""

    def __init__(self, *args, **kwargs):
        try:
            import scipy  # noqa: F401
        except ImportError:
            raise UsageError("--tuner bayesian needs scipy: pip install scipy (or keras-tuner[bayesian])") from None
        super().__init__(*args, **kwargs)


class TflHyperbandOracle(_TflOracle, kt.oracles.HyperbandOracle):
    """`--tuner hyperband`: its budget is stage-2 epochs (`tuner/epochs`), at most `max_trials` trials."""

    def __init__(self, objective, max_trials=None, **kwargs):
        super().__init__(objective, **kwargs)
        # HyperbandOracle takes no max_trials, but Oracle.create_trial honours the attribute.
        self.max_trials = max_trials


ORACLES = {"random": TflRandomSearchOracle, "grid": TflGridSearchOracle,
           "bayesian": TflBayesianOptimizationOracle, "hyperband": TflHyperbandOracle}
TUNERS = tuple(ORACLES)


def make_oracle(name: str, objective: str, max_trials: int, seed: int, max_epochs: int, factor: int = 3):
    """The oracle of tuner `name` (`ORACLES`): Keras Tuner's, with tfl's additions."""
    if name not in ORACLES:
        raise UsageError(f"--tuner {name} is not one of {', '.join(TUNERS)}")
    objective = kt.Objective(objective, "min" if is_minimized(objective) else "max")
    if name == "hyperband":
        oracle = TflHyperbandOracle(objective, max_trials=max_trials, max_epochs=max(1, max_epochs), factor=factor,
                                    hyperband_iterations=1, seed=seed)
    else:
        oracle = ORACLES[name](objective, max_trials=max_trials, seed=seed)
    oracle.verbose = 0  # tfl prints its own one-line progress and the final table
    return oracle


def format_hps(values: dict) -> str:
    return " ".join(f"{k}={_search_space.format_value(v)}" for k, v in values.items() if not k.startswith("tuner/"))


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def stage1_key(cfg: TrainConfig) -> str:
    """What stage 1's result depends on: everything but stage 2 and how it runs."""
    d = cfg.to_dict()
    for k in ("stage2", "strategy", "jit_compile"):
        d.pop(k, None)
    d["data"].pop("download", None)
    return _digest(d)


class TwoStageTuner(kt.Tuner):
    """Runs each trial as the two-stage recipe; see the module docstring.

    `run_trial` is overridden and does not call `super().run_trial()`, the
    way `kt.Tuner` documents for trials that are not one Keras `fit` ("if not
    calling `super().run_trial()`, it can tune anything"). Keras Tuner's own
    `run_trial` (its loop over `executions_per_trial`, and the only caller of
    `HyperModel.fit`) cannot run this trial without overriding private
    methods (`Tuner._build_and_fit_model` or `_try_build`):

    * for every execution it calls `HyperModel.build` and stops the whole
      search (`FatalTypeError`) unless that returns a `keras.Model`; here
      `build` returns the trial's `TrainConfig` (it must stay cheap and pure:
      Keras Tuner also calls it to discover the space), and the `Trainer`
      builds the models and fits twice (head, then fine-tuning);
    * `HyperModel.fit` is not told which execution it runs, so it could not
      train seed `seed + i` into `DIR/trials/<id>.<i>`;
    * its `SaveBestEpoch` callback saves the fitted model's weights at every
      improvement into Keras Tuner's trial folder, a second checkpoint next
      to the run's own (of both stages, which resuming uses).

    From `kt.Tuner` this class keeps `executions_per_trial`, the multi-worker
    reporting of `distribution_strategy` (in a MultiWorkerMirroredStrategy
    cluster, only the worker that checkpoints reports the trial) and
    `get_best_models` (through `load_model`); Keras Tuner averages the
    executions' metrics that `run_trial` returns.

    Args:
        oracle: from `make_oracle`.
        hypermodel: a `tfl.tuning.search.HyperModel` (its `build` returns a `TrainConfig`).
        search_dir: the search folder (`DIR`).
        data: the loaded `ImageData`, shared by all trials.
        strategy: the `tf.distribute.Strategy` every trial trains under.
        executions_per_trial: runs per trial (seeds `seed`, `seed + 1`, ...), averaged.
        verbose: Keras verbosity inside trials.
        callbacks: extra Keras callbacks for every run.
        deadline: `time.time()` after which training stops at the next batch.
    """

    def __init__(self, oracle, hypermodel, search_dir, *, data=None, strategy=None, executions_per_trial=1,
                 verbose=0, callbacks=(), deadline=None):
        self.search_dir, self.data, self.verbose = search_dir, data, verbose
        self.callbacks, self.deadline = list(callbacks), deadline
        # One owner of cached backbone outputs for the whole search: trials with the same backbone, weights,
        # size and data share a feature pass (and, with the same unfreeze depth, the cut's activations).
        # Features too big for memory go to DIR/features, where other trials (and workers) find them.
        self.store = ActivationStore(cache_dir=os.path.join(search_dir, "features"), keep=4)
        self.cut_short = set()
        self.trials_run = []
        super().__init__(oracle, hypermodel, distribution_strategy=strategy, directory=search_dir,
                         project_name="tuner", overwrite=False, executions_per_trial=executions_per_trial)

    @property
    def strategy(self):
        """The `tf.distribute.Strategy` every trial trains under (Keras Tuner's `distribution_strategy`)."""
        return self.distribution_strategy

    # -- files --------------------------------------------------------------------------------
    def run_dir(self, trial_id: str, execution: int = 0) -> str:
        name = str(trial_id) if execution == 0 else f"{trial_id}.{execution}"
        return os.path.join(self.search_dir, "trials", name)

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        _atomic_save_json(self._get_tuner_fname(), self.get_state())

    def load_model(self, trial):
        """The model trial `trial` kept (its first execution's), so `get_best_models` works."""
        from tfl.serving.prediction import load_model

        return load_model(self.run_dir(trial.trial_id))

    # -- one trial -------------------------------------------------------------------------------
    def run_trial(self, trial, *args, **kwargs):
        """Trains the trial's config `executions_per_trial` times; Keras Tuner averages the metrics returned."""
        hp = trial.hyperparameters
        cfg = self.hypermodel.build(hp)
        if "tuner/epochs" in hp.values:
            cfg.stage2.epochs = int(hp.values["tuner/epochs"])
        previous = hp.values.get("tuner/trial_id")
        if self._is_worker() or not self.oracle.log_trials:
            log.info(f"trial {trial.trial_id} started ({self.tuner_id}): {format_hps(hp.values)}")
        self.trials_run.append(trial.trial_id)
        results = []
        for i in range(self.executions_per_trial):
            run_cfg = TrainConfig.from_dict(cfg.to_dict())
            run_cfg.seed = cfg.seed + i
            donor = self.run_dir(previous, i) if previous else None
            results.append(self._run(run_cfg, self.run_dir(trial.trial_id, i), donor, trial.trial_id))
        return results

    def _run(self, cfg, run_dir, continue_from, trial_id) -> dict:
        from tfl.training.trainer import Trainer

        t0 = time.time()
        gradients = _compat.custom_gradient_names()
        resume = self._prepare(cfg, run_dir, continue_from)
        callbacks = list(self.callbacks)
        if self.deadline is not None:
            callbacks.append(_deadline_callback(self.deadline, lambda: self.cut_short.add(trial_id)))
        try:
            trainer = Trainer(cfg, run_dir, resume=resume, overwrite=not resume, verbose=self.verbose,
                              data=self.data, strategy=self.strategy, callbacks=callbacks, store=self.store,
                              report=False, score_test=False)
            result = trainer.fit()
            kept = result.stage2 if result.best_stage == 2 else result.stage1
            out = {k: float(v) for k, v in kept.items() if k.startswith("val_")}
            out["stage1_val_accuracy"] = float(result.stage1.get("val_accuracy", float("nan")))
            out["stage2_val_accuracy"] = float(result.stage2.get("val_accuracy", float("nan")))
            # Multi-label: the kept model's scores at the thresholds chosen on validation, which is what
            # evaluation, export and prediction apply (the epochs' own are at 0.5, mAP interpolated by Keras).
            out.update({f"val_{k}": float(result.validation[k]) for k in ("macro_f1", "micro_f1", "map")
                        if k in result.validation})
            out["best_stage"] = float(result.best_stage)
            out["seconds"] = time.time() - t0
            return out
        finally:
            trainer = result = None
            self._free_memory(gradients)

    def _free_memory(self, gradients=None):
        """Frees what the trial built before the next one starts, or RSS climbs from trial to trial."""
        import keras

        if gradients is not None:
            _compat.forget_custom_gradients(gradients)
        keras.backend.clear_session()
        gc.collect()
        _compat.clear_kernel_cache()  # a finished trial's traced train steps are never reused
        _compat.malloc_trim()

    def _prepare(self, cfg, run_dir, continue_from) -> bool:
        """Readies `run_dir`; True when the Trainer should resume it rather than start afresh."""
        run = RunFolder(run_dir)
        if run.exists():
            # A trial that was running when the search was killed: continue its run.
            try:
                if run.read_config().to_dict() == cfg.to_dict():
                    log.info(f"{run_dir}: continuing an interrupted run")
                    return True
            except (ValueError, OSError):
                pass
            shutil.rmtree(run_dir)
        if continue_from and RunFolder(continue_from).read_state().get("stage2", {}).get("done"):
            return self._continue(cfg, run_dir, continue_from)
        donor = self._stage1_donor(cfg)
        if donor is None:
            return False
        state = RunFolder(donor).read_state()["stage1"]
        os.makedirs(run.checkpoint_dir, exist_ok=True)
        for key in ("last", "optimizer", "best"):
            if state.get(key):
                shutil.copy2(os.path.join(RunFolder(donor).checkpoint_dir, state[key]), run.checkpoint_dir)
        run.write_config(cfg)
        run.write_state({"stage1": state, "stage1_from": os.path.basename(donor)})
        log.info(f"{run_dir}: stage 1 shared with {os.path.basename(donor)} (same stage-1 hyperparameters)")
        return True

    def _continue(self, cfg, run_dir, previous) -> bool:
        """Hyperband: copy an earlier trial's run and train its stage 2 on to `cfg.stage2.epochs`."""
        tmp = run_dir + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(previous, tmp, ignore=shutil.ignore_patterns("logs", "report"))
        run = RunFolder(tmp)
        state = run.read_state()
        state.pop("finished", None)
        state["stage2"]["done"] = False
        state["continued_from"] = os.path.basename(previous)
        run.write_state(state)
        run.write_config(cfg)
        os.replace(tmp, run_dir)
        log.info(f"{run_dir}: continues {os.path.basename(previous)} from stage-2 epoch "
                 f"{state['stage2'].get('epochs_done', 0)} to {cfg.stage2.epochs}")
        return True

    def _stage1_donor(self, cfg):
        """An earlier run in this search whose finished stage 1 used the same stage-1 settings."""
        if not cfg.stage1.epochs:
            return None
        key = stage1_key(cfg)
        trials = os.path.join(self.search_dir, "trials")
        for name in sorted(os.listdir(trials)) if os.path.isdir(trials) else ():
            run = RunFolder(os.path.join(trials, name))
            s1 = run.read_state().get("stage1", {})
            if not s1.get("done") or not s1.get("best"):
                continue
            if s1.get("epochs_done", 0) < cfg.stage1.epochs and not s1.get("stopped_early"):
                continue  # cut short by --max-time
            try:
                if stage1_key(run.read_config()) == key:
                    return run.path
            except (ValueError, OSError):
                continue
        return None


def _deadline_callback(deadline, on_cut):
    import keras

    class Deadline(keras.callbacks.Callback):
        """--max-time: stops training at the next batch once the time is up."""

        def on_train_batch_end(self, batch, logs=None):
            if time.time() >= deadline and not self.model.stop_training:
                self.model.stop_training = True
                on_cut()

    return Deadline()


def read_search(search_dir: str) -> dict:
    return read_json(os.path.join(search_dir, "search.json"), default=None)
