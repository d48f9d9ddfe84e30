"""Keras Tuner search over the two-stage recipe: `tfl.tune` and its HyperModel.

A trial is one whole two-stage run (head on the frozen backbone, then the
top of the backbone unfrozen with BatchNorm kept in inference mode), trained
into its own run folder; its score is the validation metric of the model the
run keeps at the end of stage 2. The search folder::

    DIR/
      search.json                the search's settings (what --resume reads)
      tuner/                     Keras Tuner's oracle and trial files
      trials/<id>/               each trial's tfl run folder
      trials.json                every trial: hyperparameters, metrics, status
      best_hyperparameters.json  the best trial's hyperparameters and score
      best/                      the best trial's run (tfl evaluate/predict/export take it)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import typing

import keras_tuner as kt

from tfl import config as config_lib
from tfl._logging import log
from tfl.config import TrainConfig
from tfl.errors import TflError, UsageError
from tfl.runs import LOCK_FILE, FolderLock, RunFolder, atomic_write_json, clear_folder, read_json
from tfl.selection import auto
from tfl.tuning import distributed as _distributed
from tfl.tuning import space as _search_space
from tfl.tuning import tuner as _tuner


class HyperModel(kt.HyperModel):
    """The two-stage recipe as a Keras Tuner HyperModel.

    `build(hp)` declares the hyperparameters and returns the trial's
    `TrainConfig`; it builds no model and has no side effects (Keras Tuner
    calls it to discover the space). The tuner trains the config.

    Args:
        base: the configuration every trial starts from.
        space: the `SearchSpace` (default ranges with overrides).

    Examples:
        >>> hm = HyperModel(TrainConfig(), SearchSpace(fix={"dropout": "0.2"}))
        >>> hm.build(kt.HyperParameters()).model.head.dropout
        0.2
    """

    def __init__(self, base: TrainConfig, space: _search_space.SearchSpace):
        super().__init__(name="tfl_two_stage")
        self.base, self.space = base, space
        self.domains = space.domains()

    def build(self, hp) -> TrainConfig:
        values = {}
        for name, domain in self.domains.items():
            if name != "dense_units":
                values[name] = _search_space.declare(hp, name, domain)
        if "dense_units" in self.domains:
            layers = self.domains.get("dense_layers")
            if isinstance(layers, (_search_space.Choice, _search_space.Range)):
                wide = ([v for v in layers.values if v > 0] if isinstance(layers, _search_space.Choice)
                        else list(range(max(1, int(layers.lo)), int(layers.hi) + 1)))
                if wide:  # units only matter (and are only searched) when there is a hidden layer
                    with hp.conditional_scope("dense_layers", wide):
                        values["dense_units"] = _search_space.declare(hp, "dense_units", self.domains["dense_units"])
            elif values.get("dense_layers", len(self.base.model.head.dense)) > 0:
                values["dense_units"] = _search_space.declare(hp, "dense_units", self.domains["dense_units"])
        return apply_values(self.base, values)


def apply_values(base: TrainConfig, values: dict) -> TrainConfig:
    """A copy of `base` with hyperparameter values (see `_search_space.PARAMS`) applied."""
    cfg = TrainConfig.from_dict(base.to_dict())
    v = {k: x for k, x in values.items() if x is not None}
    simple = {"lr": (cfg.stage1, "lr"), "fine_tune_lr": (cfg.stage2, "lr"), "unfreeze": (cfg.stage2, "unfreeze"),
              "dropout": (cfg.model.head, "dropout"), "fine_tune_optimizer": (cfg.stage2, "optimizer"),
              "label_smoothing": (cfg, "label_smoothing"), "batch_size": (cfg.data, "batch_size"),
              "backbone": (cfg.model, "backbone"), "image_size": (cfg.model, "image_size"),
              "epochs": (cfg.stage1, "epochs"), "fine_tune_epochs": (cfg.stage2, "epochs"),
              "warmup_epochs": (cfg.stage2, "warmup_epochs")}
    for name in ("optimizer", "weight_decay"):
        if name in v:
            setattr(cfg.stage1, name, v[name])
            setattr(cfg.stage2, name, v[name])
    for name, (obj, attr) in simple.items():
        if name in v:
            setattr(obj, attr, str(v[name]) if name == "unfreeze" else v[name])
    if "dense_layers" in v or "dense_units" in v:
        old = cfg.model.head.dense
        layers = int(v.get("dense_layers", len(old)))
        units = int(v.get("dense_units", old[0] if old else 256))
        cfg.model.head.dense = [units] * layers
    return cfg


@dataclasses.dataclass
class TuneResult:
    """What `tune` returns.

    Args:
        search_dir: the search folder.
        best_run_dir: `DIR/best`, a normal tfl run folder (None if no trial completed).
        best_trial_id: the best trial's id.
        best_score: its objective value.
        objective: the objective's name.
        best_hyperparameters: the best trial's hyperparameter values.
        trials: one dict per trial, best first (`trial_id`, `status`, `score`,
            `hyperparameters`, `metrics`, `run_dir`).
        stopped_by_time: the search ended because of `max_time`.
    """

    search_dir: str
    best_run_dir: typing.Optional[str]
    best_trial_id: typing.Optional[str]
    best_score: typing.Optional[float]
    objective: str
    best_hyperparameters: dict
    trials: typing.List[dict]
    stopped_by_time: bool = False


def tune(config: typing.Optional[TrainConfig] = None, out: str = "runs/tune", *, search=None, fix=None,
         tuner: str = "random", max_trials: typing.Optional[int] = None, executions_per_trial: int = 1,
         objective: str = "val_accuracy", max_time=None, hyperband_factor: int = 3, resume: bool = False,
         overwrite: bool = False, chief: typing.Optional[str] = None, worker: typing.Optional[str] = None,
         tuner_id: typing.Optional[str] = None, verbose=0, callbacks=(), image_data=None,
         **overrides) -> TuneResult:
    """Searches the two-stage recipe's hyperparameters with Keras Tuner.

    Args:
        config: the base `TrainConfig` of every trial (default: the defaults).
        out: the search folder.
        search: `{name: spec}` ranges to search, e.g. `{"lr": "1e-4..1e-2:log",
            "unfreeze": "0,20,40,80"}` (see `tfl tune --list-params`).
        fix: `{name: value}` hyperparameters not to search, e.g. `{"dropout": 0.2}`.
        tuner: `random`, `grid`, `bayesian` or `hyperband` (Hyperband spends
            stage-2 epochs: up to the base config's `fine_tune_epochs`).
        max_trials: most trials (default 10).
        executions_per_trial: runs per trial with different seeds, averaged.
        objective: `val_accuracy` (maximised), `val_loss` (minimised), or for
            multi-label runs `val_macro_f1`, `val_micro_f1` or `val_map`
            (maximised; scored at the per-label thresholds each trial chooses
            on validation).
        max_time: time budget (seconds, or `"15m"`); training stops at the next
            batch once it is spent and the search ends with what it has.
        hyperband_factor: Hyperband's reduction factor.
        resume: continue the interrupted search in `out` (its settings are
            read from `out/search.json`; `max_time` and `max_trials` may be given anew).
        overwrite: replace an existing search folder.
        chief: `HOST:PORT`: serve the oracle there for workers (runs no trial).
        worker: `HOST:PORT` of the chief: run trials it hands out.
        tuner_id: a worker's id (default: unique per process).
        verbose: Keras verbosity inside trials.
        callbacks: extra Keras callbacks for every run.
        image_data: an already loaded `ImageData` of the config's data.
        **overrides: `fine_tune` shortcuts for the base config (`data` (the
            source), `backbone`, `image_size`, `fine_tune_epochs`, `strategy`, ...).

    Returns:
        A `TuneResult`.

    Examples:
        >>> result = tfl.tune(data="folder:hymenoptera_data", image_size=224, tuner="hyperband",
        ...                   max_trials=6, search={"unfreeze": "0,20,40"}, out="runs/ants-search")
        >>> result.best_run_dir
        'runs/ants-search/best'
    """
    role = _distributed.configure(chief, worker, tuner_id)
    max_time = _search_space.parse_duration(max_time)
    # One writer of the search folder at a time (workers share it with their chief and lock their trials).
    lock = None
    if role != "worker" and not (resume and not os.path.isdir(out)):
        lock = FolderLock(out, "search folder")
    try:
        return _tune(config, out, search, fix, tuner, max_trials, executions_per_trial, objective, max_time,
                     hyperband_factor, resume, overwrite, role, verbose, callbacks, image_data, overrides)
    except KeyboardInterrupt as e:
        from tfl.errors import Interrupted
        from tfl.interrupts import signal_name

        raise Interrupted(f"{signal_name(e)} stopped the search; continue it with: tfl tune --resume {out}"
                          + (" (with the same --chief/--worker options)" if role else "")) from None
    finally:
        if lock is not None:
            lock.release()


def _tune(config, out, search, fix, tuner, max_trials, executions_per_trial, objective, max_time,
          hyperband_factor, resume, overwrite, role, verbose, callbacks, image_data, overrides) -> TuneResult:
    if resume:
        settings = _tuner.read_search(out)
        if settings is None:
            raise UsageError(f"nothing to resume in {out}: it has no search.json (not a tfl search folder)")
        if max_trials is not None:
            settings["max_trials"] = max_trials
    else:
        settings = _new_search(config, out, search, fix, tuner, max_trials, executions_per_trial, objective,
                               hyperband_factor, overwrite, role, overrides)
    try:
        cfg = TrainConfig.from_dict(settings["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{os.path.join(out, 'search.json')}: {e}; fix the file or start a new search") from None
    space = _search_space.SearchSpace(**settings["space"])
    deadline = time.time() + max_time if max_time else None
    oracle = _tuner.make_oracle(settings["tuner"], settings["objective"], settings["max_trials"], cfg.seed,
                                max_epochs=cfg.stage2.epochs, factor=settings["hyperband_factor"])
    oracle.deadline = deadline
    strategy = None
    if role != "chief":
        from tfl.data import loading as data_lib
        from tfl.training import strategy as strategy_lib

        strategy = strategy_lib.get_strategy(cfg.strategy)
        log.info(f"strategy: {type(strategy).__name__} with {strategy.num_replicas_in_sync} replica"
                 f"{'s' if strategy.num_replicas_in_sync > 1 else ''}")
        image_data = image_data or data_lib.load_data(cfg.data, seed=cfg.seed,
                                                      multi_label=cfg.model.head.multi_label)
        if auto.is_auto(cfg.model.backbone):  # picked once, before the search: every trial trains the winner
            settings["backbone"] = auto.choose(cfg, image_data, None, os.path.join(out, "pick"), what="search")
            settings["config"] = cfg.to_dict()
            atomic_write_json(os.path.join(out, "search.json"), settings)
    oracle.log_trials = role != "worker"
    search_tuner = _tuner.TwoStageTuner(oracle, HyperModel(cfg, space), out, data=image_data, strategy=strategy,
                                        executions_per_trial=settings["executions_per_trial"], verbose=verbose,
                                        callbacks=callbacks, deadline=deadline)
    log.info(f"{'resuming' if resume else 'starting'} {settings['tuner']} search in {out}: "
             f"{settings['max_trials']} trials, objective {settings['objective']}"
             + (f", role {role} ({os.environ.get(_distributed.TUNER_ID)})" if role else ""))
    if role == "chief":
        search_tuner.save()
        _distributed.serve(search_tuner.oracle)
    else:
        try:
            search_tuner.search()
        except RuntimeError as e:
            if "consecutive failures" not in str(e):
                raise
            last = (str(e).strip().splitlines() or ["?"])[-1]
            raise TflError(f"the search stopped: {search_tuner.oracle.max_consecutive_failed_trials} trials in a "
                           f"row failed, the last with {last} (tracebacks: {out}/tuner/trial_*/trial.json)") from None
    timed_out = deadline is not None and time.time() >= deadline
    if role == "worker":
        return TuneResult(out, None, None, None, settings["objective"], {},
                          [{"trial_id": t, "run_dir": search_tuner.run_dir(t)} for t in search_tuner.trials_run],
                          timed_out)
    return _finish(search_tuner, out, settings, timed_out)


def _new_search(config, out, search, fix, tuner, max_trials, executions, objective, factor, overwrite, role,
                overrides) -> dict:
    if tuner not in _tuner.TUNERS:
        raise UsageError(f"--tuner {tuner} is not one of {', '.join(_tuner.TUNERS)}")
    if objective not in _tuner.OBJECTIVES:
        raise UsageError(f"--objective {objective} is not one of {', '.join(_tuner.OBJECTIVES)}")
    if max_trials is not None and max_trials < 1 or executions < 1:
        raise UsageError("--max-trials and --executions-per-trial must be at least 1")
    try:
        cfg = config_lib.apply_overrides(config or TrainConfig(), **overrides)
    except TypeError as e:
        raise UsageError(str(e)) from None
    cfg.monitor = objective
    kind, _, path = cfg.data.source.partition(":")
    if kind in ("folder", "csv") and path:
        # Absolute, so the trial runs and DIR/best work from any directory.
        cfg.data.source = f"{kind}:{os.path.abspath(path)}"
    try:
        config_lib.validate(cfg)
    except ValueError as e:
        raise UsageError(str(e)) from None
    space = _search_space.SearchSpace(dict(search or {}), dict(fix or {}))
    if auto.is_auto(cfg.model.backbone):
        auto.check(cfg)
        if "backbone" in space.domains():
            raise UsageError("--backbone auto and a searched or fixed backbone: give one of them")
        if role:
            raise UsageError("--backbone auto is for a search on one machine: run tfl pick first and pass "
                             "--backbone NAME to the chief and its workers")
    if tuner == "hyperband" and "fine_tune_epochs" in space.domains():
        raise UsageError("--tuner hyperband chooses the stage-2 epochs itself: do not search or fix fine_tune_epochs")
    if tuner == "hyperband" and cfg.stage2.epochs < 1:
        raise UsageError("--tuner hyperband needs --fine-tune-epochs of at least 1 (its largest budget)")
    settings = {"config": cfg.to_dict(), "space": space.to_dict(), "tuner": tuner,
                "max_trials": max_trials or 10, "executions_per_trial": executions, "objective": objective,
                "hyperband_factor": factor}
    path = os.path.join(out, "search.json")
    if role == "worker":
        os.makedirs(out, exist_ok=True)
        return settings
    # A chief may find what workers that started first wrote; only an earlier search is in the way.
    if os.path.exists(path) or (role is None and os.path.isdir(out) and set(os.listdir(out)) - {LOCK_FILE}):
        if not overwrite:
            raise UsageError(f"search folder {out} already exists: pass --resume {out} to continue it "
                             "or --overwrite to start again")
        clear_folder(out)  # all but the lock this process holds
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create search folder {out}: {e.strerror}; choose another --out") from None
    atomic_write_json(path, settings)
    return settings


def _finish(search_tuner, out, settings, timed_out) -> TuneResult:
    """Writes trials.json, best_hyperparameters.json and DIR/best; returns the result."""
    oracle = search_tuner.oracle
    objective = settings["objective"]
    rows = trial_rows(search_tuner)
    atomic_write_json(os.path.join(out, "trials.json"), rows)
    done = [r for r in rows if r["status"] == "COMPLETED"]
    if not done:
        log.info(f"no trial completed; see {out}/trials.json")
        return TuneResult(out, None, None, None, objective, {}, rows, timed_out)
    best = done[0]
    best_dir = os.path.join(out, "best")
    source = _best_execution(search_tuner, best["trial_id"], objective)
    if source is None:
        log.info(f"the best trial's run ({best['run_dir']}) is not on this machine; "
                 f"retrain it with: tfl train --config {out}/best_config.json")
        best_dir = None
    else:
        _copy_run(source, best_dir)
    trial = oracle.get_trial(best["trial_id"])
    best_cfg = search_tuner.hypermodel.build(trial.hyperparameters)
    if "tuner/epochs" in trial.hyperparameters.values:
        best_cfg.stage2.epochs = int(trial.hyperparameters.values["tuner/epochs"])
    atomic_write_json(os.path.join(out, "best_config.json"), best_cfg.to_dict())
    atomic_write_json(os.path.join(out, "best_hyperparameters.json"),
                      {"trial_id": best["trial_id"], "objective": objective, "score": best["score"],
                       "hyperparameters": best["hyperparameters"], "run_dir": best_dir})
    return TuneResult(out, best_dir, best["trial_id"], best["score"], objective, best["hyperparameters"],
                      rows, timed_out)


def trial_rows(search_tuner) -> typing.List[dict]:
    """Every trial of the search as a dict, completed ones best first."""
    oracle = search_tuner.oracle
    best = [t.trial_id for t in oracle.get_best_trials(len(oracle.trials))]
    rows = []
    for trial_id in best:
        t = oracle.trials[trial_id]
        metrics = {name: t.metrics.get_last_value(name) for name in t.metrics.metrics}
        hps = {k: v for k, v in t.hyperparameters.values.items() if not k.startswith("tuner/") or k == "tuner/epochs"}
        rows.append({"trial_id": trial_id, "status": t.status, "score": t.score, "hyperparameters": hps,
                     "metrics": metrics, "run_dir": search_tuner.run_dir(trial_id),
                     "cut_by_max_time": trial_id in search_tuner.cut_short})
    return rows


def _best_execution(search_tuner, trial_id, objective):
    runs = [search_tuner.run_dir(trial_id, i) for i in range(search_tuner.executions_per_trial)]
    scored = [(RunFolder(r).read_metrics(), r) for r in runs if RunFolder(r).is_trained()]
    scored = [(_score(m, objective), r) for m, r in scored]
    scored = [(s, r) for s, r in scored if s is not None]
    if not scored:
        return None
    return (min if config_lib.is_minimized(objective) else max)(scored)[1]


def _score(metrics: dict, objective: str):
    """A run's `objective` from its metrics.json: multi-label scores at its thresholds, else its kept stage's."""
    validation = metrics.get("validation") or {}
    if objective in config_lib.MULTI_LABEL_METRICS and objective[len("val_"):] in validation:
        return validation[objective[len("val_"):]]
    return metrics.get("stage2" if metrics.get("best_stage") == 2 else "stage1", {}).get(objective)


def _copy_run(source: str, dest: str) -> None:
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("checkpoints", "logs", LOCK_FILE))
    state = read_json(os.path.join(tmp, "state.json"), default={})
    state["copied_from"] = os.path.relpath(source, os.path.dirname(dest))
    atomic_write_json(os.path.join(tmp, "state.json"), state)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


def format_trials(trials: typing.List[dict], objective: str = "val_accuracy", limit: int = 50) -> str:
    """The trials table, best first, as plain text."""
    names = []
    for t in trials:
        for k in t["hyperparameters"]:
            if k not in names:
                names.append(k)
    header = ["rank", "trial", "status", objective, "stage1", "stage2", "seconds"] + [
        n.replace("tuner/epochs", "ft_epochs") for n in names]
    lines = []
    for i, t in enumerate(trials[:limit]):
        m = t.get("metrics", {})
        cells = [str(i + 1) if t["status"] == "COMPLETED" else "-", t["trial_id"], t["status"].lower()
                 + ("*" if t.get("cut_by_max_time") else ""), _num(t.get("score")),
                 _num(m.get("stage1_val_accuracy")), _num(m.get("stage2_val_accuracy")), _num(m.get("seconds"), 0)]
        cells += [_search_space.format_value(t["hyperparameters"][n]) if n in t["hyperparameters"] else "-"
                  for n in names]
        lines.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header] + lines]
    if any(t.get("cut_by_max_time") for t in trials):
        text.append("* cut short by --max-time")
    return "\n".join(text)


def _num(value, digits=4) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}f}"
