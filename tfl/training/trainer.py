"""The two-stage fine-tuning recipe: `Trainer`, `fine_tune` and `lr_find`.

Stage 1 trains the head on the frozen backbone. Because the backbone is
frozen, its pooled features are computed once (per augmented copy) and the
head trains on them: the same model as training end to end, many times
faster. Stage 2 unfreezes the top of the backbone (never BatchNorm, which stays
in inference mode) and trains the whole model with a lower learning rate.
The better of the two stages on the validation metric is kept.

`Trainer.fit` runs plan -> fit -> save: `tfl.training.plan` decides once what
each stage trains on and with which learning rate, `_inputs.StageInputs`
gives each stage its model and batches, `_objective` its loss and metrics,
the stages fit the model (Keras `fit`, with the checkpoint and, for
`lr="auto"`, the LR-finder callbacks), and the run folder gets the model,
metrics and report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
import typing

from tfl import config as config_lib
from tfl import interrupts
from tfl._logging import log
from tfl.config import TrainConfig
from tfl.errors import UsageError, flag
from tfl.models import classifier as model_lib
from tfl.runs import RunFolder
from tfl.selection import auto
from tfl.training import _checkpoint, _feature_files, _objective, _optim, _run_data, scoring
from tfl.training._inputs import StageInputs
from tfl.training._results import (  # noqa: F401 (FineTuneResult: public here, as before)
    FineTuneResult,
    class_counts,
    describe,
    near_chance,
    stage_metrics,
    worse,
)


def _verbose(verbose):
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return verbose


class Trainer:
    """Runs the two-stage recipe for one `TrainConfig` into a run folder.

    Args:
        config: the run's configuration.
        run_dir: the run folder (created; must be new unless resuming).
        resume: continue the run in `run_dir` from its last checkpoint.
        overwrite: delete an existing `run_dir` first.
        verbose: Keras verbosity (`auto`: progress bars on a terminal).
        data: an already loaded `ImageData` (tuning reuses one).
        strategy: a `tf.distribute.Strategy` (default: from the config).
        callbacks: extra Keras callbacks for both stages.
        store: the `ActivationStore` that computes and keeps the cached
            backbone outputs (default: one for this run, spilling to the run
            folder's `features/`); a search shares one between its trials.
        report: write the HTML report at the end (tuning writes one for the best run only).
        score_test: score the kept model on the data's test split, if any
            (a search's trials do not: only its best model is scored).

    Examples:
        >>> trainer = Trainer(TrainConfig(data=DataConfig("folder:photos")), "runs/photos")
        >>> result = trainer.fit()
    """

    def __init__(self, config: TrainConfig, run_dir: str, *, resume: bool = False, overwrite: bool = False,
                 verbose="auto", data=None, strategy=None, callbacks=(), store=None, report=True,
                 score_test=True):
        from tfl.training.activations import ActivationStore

        self.run = RunFolder(run_dir)
        self._created = self.run.prepare(resume=resume, overwrite=overwrite)  # removed again if no epoch trains
        if resume:
            config = self.run.read_config()
        try:
            config_lib.validate(config)
        except ValueError as e:
            raise UsageError(str(e)) from None
        self.config, self.verbose, self.data, self.strategy = config, _verbose(verbose), data, strategy
        self.extra_callbacks = list(callbacks)
        self.store = store if store is not None else ActivationStore(cache_dir=self.run.features_dir)
        self.write_report = report
        # A search's trials leave the test split alone: a score seen per trial would become a choice.
        self.score_test = score_test
        self.run.write_config(config)
        # Set by _setup():
        self.model = None  # the classifier
        self.image_size = None
        self.block_ids = None  # block index of each backbone layer
        self.plans = None  # (StagePlan of stage 1, of stage 2)
        self.inputs = None  # StageInputs: each stage's model and batches
        self.decisions = {}  # what the run decided from its data (e.g. stage 2's depth), for metrics.json

    # -- setup ------------------------------------------------------------------------------------
    def _setup(self):
        import keras

        from tfl.data import loading as data_lib
        from tfl.models import backbones
        from tfl.training import plan as plan_lib
        from tfl.training import strategy as strategy_lib

        cfg = self.config
        keras.utils.set_random_seed(cfg.seed)
        if cfg.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        if self.strategy is None:
            # Before any TensorFlow op (the data checks decode images): collective ops of a multi-worker
            # strategy must be configured at program start.
            self.strategy = strategy_lib.get_strategy(cfg.strategy)
        loaded_here = self.data is None
        multi = cfg.model.head.multi_label
        if loaded_here:
            self.data = data_lib.load_data(cfg.data, seed=cfg.seed, multi_label=multi)
        elif self.data.multi_label and not multi:
            raise UsageError(f"{self.data.source} gives images several labels: train with --multi-label")
        elif multi and not self.data.multi_label:
            self.data = data_lib.as_multi_label(self.data)
        if self.data.source == "table" and not self.run.exists_table():
            self._keep_table()
        log.info(self.data.describe())
        if auto.is_auto(cfg.model.backbone):
            self._choose_backbone()
        spec = backbones.get_backbone(cfg.model.backbone)
        self.image_size = cfg.model.image_size or spec.default_size
        if loaded_here:  # a caller that passes its data (tuning) reports its problems once itself
            self._log_data_problems(spec)
        if self.run.exists() and os.path.exists(self.run.class_names_path):
            if self.run.read_class_names() != list(self.data.class_names):
                raise UsageError(f"the classes of {cfg.data.source} changed since {self.run.path} started "
                                 f"({', '.join(self.run.read_class_names())}): restore the data or start a new run")
        self.run.write_class_names(self.data.class_names)
        scratch = cfg.model.weights is None
        if scratch:
            log.info("no pretrained weights (weights=None): training every layer from scratch in one stage, "
                     "BatchNorm in training mode (a frozen random backbone could not learn anything)")
        with self.strategy.scope():
            self.model = model_lib.build_model(cfg.model, self.data.num_classes, seed=cfg.seed, scratch=scratch)
        self.block_ids = backbones.block_ids(spec, model_lib.backbone_of(self.model))
        if cfg.stage2.unfreeze_spec.kind == "auto":
            cfg = self.config = self._decide_depth(cfg)
        stage2 = _checkpoint.StageState(self.run, 2)
        resumed_inputs = stage2.data.get("inputs", None if not stage2.epochs_done else "images")
        with self.strategy.scope():  # the cut's top model must belong to the strategy, as the classifier does
            self.plans = plan_lib.make_plan(
                cfg, self.model, self.block_ids, num_train=len(self.data.train), num_val=len(self.data.val),
                feature_dim=int(self.model.get_layer("pool").output.shape[-1]),
                memory_budget=self.store.memory_budget, stage1_done=_checkpoint.StageState(self.run, 1).done,
                stage2_inputs={"cut": "activations"}.get(resumed_inputs, resumed_inputs),
                disk_free=_feature_files.free_bytes(self.run.features_dir))
        state = self.run.read_state()
        state["plan"] = {f"stage{p.stage}": p.describe() for p in self.plans}  # what was decided, and why
        self.run.write_state(state)
        self.inputs = StageInputs(cfg, self.data, self.run, self.store, self.model, self.image_size, self.block_ids)

    def _choose_backbone(self):
        """`--backbone auto`: the pick ranks the candidates on this data; the winner becomes the run's backbone.

        Its features stay in `self.store` (stage 1 computes only the augmented copies); the ranking goes to
        RUN/pick/ and state.json says which backbone won and why.
        """
        import keras

        state = self.run.read_state()
        record = state["backbone"] = auto.choose(self.config, self.data, self.store, self.run.pick_dir)
        self.run.write_state(state)
        # Beside stage 2's depth in metrics.json, the report and tfl info: what the run decided from its data.
        self.decisions["backbone"] = {"chosen": f"--backbone {record['auto']}", "why": record["why"],
                                      "seconds": record.get("seconds", 0.0)}
        self.run.write_config(self.config)  # the winner: a resumed run trains it without picking again
        keras.utils.set_random_seed(self.config.seed)  # the same start as a run that named the winner

    def _decide_depth(self, cfg: "config_lib.TrainConfig") -> "config_lib.TrainConfig":
        """`--unfreeze auto`: the run's config with stage 2's depth decided from its data (`depth.resolve`)."""
        from tfl.training import depth

        cfg, self.decisions[depth.DECISION] = depth.resolve(
            self.run, cfg, self.model, model_lib.backbone_of(self.model), self.block_ids, self.data, self.image_size)
        return cfg

    def _keep_table(self):
        """Data from an in-memory table: its rows become the run's `data.csv` and the config's source."""
        self.config.data = _run_data.keep_table(self.run, self.config.data, self.data)
        self.run.write_config(self.config)

    def _log_data_problems(self, spec):
        _run_data.log_problems(self.data, spec.name, self.image_size, self.config)

    def _compile(self, model, stage, optimizer):
        jit = self.config.jit_compile
        blocking = model_lib.layers_without_xla(model) if jit else []
        if blocking:  # say so once, in our words, instead of Keras' warning on every compile
            log.info(f"stage {stage}: XLA (--xla, jit_compile) is off for this stage: it trains on images through "
                     f"{', '.join(blocking)}, which XLA cannot compile")
            jit = False
        with self.strategy.scope():
            loss, metrics = _objective.loss_and_metrics(self.config, self.data)
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit)

    def _callbacks(self, state, stage_cfg, stage, groups=None):
        import keras

        return [
            *([groups.callback()] if groups is not None and groups.gradual else []),
            _checkpoint.make_callback(state, self.config.monitor, stage_cfg.patience),
            keras.callbacks.TensorBoard(f"{self.run.logs_dir}/stage{stage}", write_graph=False),
            *self.extra_callbacks,
        ]

    # -- learning rates ---------------------------------------------------------------------------
    def _range_test(self, plan, model, train_ds, *, min_lr: float = 1e-7, max_lr: float = 10.0,
                    steps: typing.Optional[int] = None, method: str = "valley"):
        """The LR range test of a stage: its model, loss, optimizer (constant rate) and inputs, inside `fit`."""
        from tfl.training import lr_finder

        stage_cfg = self.config.stage1 if plan.stage == 1 else self.config.stage2
        fixed = dataclasses.replace(stage_cfg, lr=min_lr, schedule="constant", warmup_epochs=0.0)
        steps = steps or (200 if plan.stage == 1 else 100)
        t = time.time()
        with self.strategy.scope():  # the optimizer's variables must belong to the model's strategy
            optimizer = _optim.make_optimizer(fixed, 1)
        self._compile(model, plan.stage, optimizer)
        result = lr_finder.range_test(model, train_ds, min_lr=min_lr, max_lr=max_lr, steps=steps, method=method,
                                      stage=plan.stage)
        log.info(f"stage {plan.stage}: LR finder suggests {result.suggestion:.2e} ({method}; {len(result.lrs)} "
                 f"steps in {time.time() - t:.0f}s)")
        return result

    def _learning_rate(self, plan, state, model, train_ds):
        """The stage's peak learning rate and its `LayerGroups` (None: one rate for all).

        `auto` runs the range test once; the rate found is kept in state.json so
        a resumed run trains with the same rate, and its plot is written to
        `RUN/lr_find_stage{n}.png`.
        """
        from tfl.training import _discriminative

        high = plan.lr.high
        if plan.lr.kind == "auto":
            high = state.data.get("lr_found")
            if high is None:
                result = self._range_test(plan, model, train_ds)
                with contextlib.suppress(Exception):  # the plot is a convenience, never a failure
                    result.save(os.path.join(self.run.path, f"lr_find_stage{plan.stage}.png"))
                high = result.suggestion
                state.commit(lr_found=high)
        if not plan.uses_layer_groups:
            return high, None
        stage_cfg = self.config.stage2
        groups = _discriminative.LayerGroups(model, self.block_ids, plan.lr.low if plan.lr.kind == "range" else None,
                                             high, gradual=plan.gradual, epochs=stage_cfg.epochs)
        log.info(f"stage 2: {groups.describe(state.epochs_done)}")
        return high, groups

    def find_lr(self, stage: int = 1, **kwargs):
        """Runs the LR range test for `stage` (stage 2: after training stage 1) and returns its result."""
        self._setup()
        plan1, plan2 = self.plans
        if stage == 1:
            return self._range_test(plan1, *self.inputs.for_stage(plan1)[:2], **kwargs)
        if self.config.stage1.epochs:
            self._run_stage(plan1, *self.inputs.for_stage(plan1))
        return self._range_test(plan2, *self.inputs.for_stage(plan2)[:2], **kwargs)

    # -- stages -----------------------------------------------------------------------------------
    def _run_stage(self, plan, model, train_ds, val_ds, steps_per_epoch):
        """Trains `model` for one stage, resuming from its checkpoint; restores its best weights."""
        stage_cfg = self.config.stage1 if plan.stage == 1 else self.config.stage2
        state = _checkpoint.StageState(self.run, plan.stage)
        lr, groups = self._learning_rate(plan, state, model, train_ds)
        with self.strategy.scope():  # the optimizer's variables must belong to the model's strategy
            optimizer = _optim.make_optimizer(stage_cfg, steps_per_epoch, groups=groups, lr=lr)
        self._compile(model, plan.stage, optimizer)
        if state.done:
            state.restore_best(model)
            return state
        with self.strategy.scope():
            resumed = state.restore_last(model)
        if resumed:
            log.info(f"stage {plan.stage}: resuming after epoch {state.epochs_done}")
        if state.epochs_done < stage_cfg.epochs and not state.data.get("stopped_early"):
            model.fit(train_ds, validation_data=val_ds, epochs=stage_cfg.epochs, initial_epoch=state.epochs_done,
                      shuffle=False,  # the datasets shuffle themselves
                      steps_per_epoch=steps_per_epoch, callbacks=self._callbacks(state, stage_cfg, plan.stage, groups),
                      class_weight=_objective.class_weight(self.config, self.data), verbose=self.verbose)
        state.restore_best(model)
        state.commit(done=True)
        return state

    def fit(self) -> FineTuneResult:
        """Runs (or resumes) both stages and writes the run folder.

        A full disk stops it with one line; the checkpoints already committed stay
        intact, so `--resume` continues once there is room again.
        Ctrl-C or SIGTERM (with `tfl.interrupts.install()`, as the command line
        does) stops it between whole writes and raises `tfl.errors.Interrupted`,
        whose one line says how to resume. The run folder is unlocked at the end.
        """

        from tfl.runs import disk_full_is_one_line

        try:
            with disk_full_is_one_line(f"the run folder {self.run.path}", self._resume_hint):
                return self._fit()
        except KeyboardInterrupt as e:
            from tfl.errors import Interrupted
            from tfl.interrupts import signal_name

            # Kept, to be resumed (a folder that never trained an epoch may also be reused without --overwrite).
            if isinstance(e, Interrupted):
                raise
            raise Interrupted(f"{signal_name(e)} stopped the run (last good checkpoint: {self._last_checkpoint()}); "
                              "continue it with: " + flag(f"tfl train --resume {self.run.path}",
                                                          f"tfl.fine_tune(out={self.run.path!r}, resume=True)")
                              ) from None
        except BaseException:
            self._remove_if_never_trained()
            raise
        finally:
            self.run.release()

    def _remove_if_never_trained(self) -> None:
        """A run that fails before its first epoch (bad data, no weights) leaves nothing behind, so the
        corrected command can use the same folder."""
        import shutil

        if self._created and self.run.never_trained(started_by_tfl=False):
            shutil.rmtree(self.run.path, ignore_errors=True)

    def _last_checkpoint(self) -> str:
        state = self.run.read_state()
        done = [(k, v.get("epochs_done", 0)) for k, v in sorted(state.items()) if isinstance(v, dict)
                and v.get("epochs_done")]
        return f"{done[-1][0].replace('stage', 'stage ')} epoch {done[-1][1]}" if done else "none yet"

    def _resume_hint(self) -> str:
        how = flag(f"tfl train --resume {self.run.path}", f"tfl.fine_tune(out={self.run.path!r}, resume=True)")
        return f"free some space and continue with: {how} (last good checkpoint: {self._last_checkpoint()})"

    def _fit(self) -> FineTuneResult:
        t0 = time.time()
        self._setup()
        cfg = self.config
        plan1, plan2 = self.plans
        s1 = self._run_stage(plan1, *self.inputs.for_stage(plan1)) if plan1.epochs else None
        s1_weights = [w.numpy() for w in self.model.weights]
        _checkpoint.kill_point("between-stages")
        s2 = self._run_stage(plan2, *self.inputs.for_stage(plan2)) if plan2.epochs else None
        m1, m2 = stage_metrics(s1, cfg.monitor), stage_metrics(s2, cfg.monitor)
        best_stage = 2 if s2 else 1
        if s1 and s2 and worse(m2.get(cfg.monitor), m1.get(cfg.monitor), cfg.monitor):
            # Fine-tuning made it worse: keep stage 1's model.
            best_stage = 1
            for w, v in zip(self.model.weights, s1_weights):
                w.assign(v)
        size, batch, multi = self.image_size, cfg.data.batch_size, cfg.model.head.multi_label
        validation = scoring.choose_val_thresholds(self.model, self.data, size, batch, self.run) if multi else {}
        test = (scoring.score_test(self.model, self.data, size, batch, multi, validation.get("thresholds"))
                if self.score_test else {})
        self._save(m1, m2, best_stage, validation, test)
        if self.write_report:
            self._report()
        log.info(f"stage 1 {describe(m1)} | stage 2 {describe(m2)} | kept stage {best_stage} (chosen on val)"
                 + (f" | test {scoring.test_summary(test)}" if test else "")
                 + f"; {time.time() - t0:.0f}s; run folder: {self.run.path}")
        if self.write_report:  # a run of its own, not a trial of a search (which says where its best run is)
            self._say_where_and_what_next(m2 if best_stage == 2 else m1)
        return FineTuneResult(self.run.path, self.data.class_names, m1, m2, best_stage, self.model, validation,
                              test)

    def _say_where_and_what_next(self, kept: dict) -> None:
        """Where the model and report are, the next commands, and a loud warning when the model is near chance."""
        path = self.run.path
        report = os.path.join(self.run.report_dir, "index.html")
        log.info(f"model: {self.run.model_path}" + (f"; report: {report}" if os.path.exists(report) else ""))
        log.info("next: " + flag(f"tfl evaluate {path}  |  tfl predict {path} IMAGES...  |  "
                                 f"tfl export {path} --out exports",
                                 f"tfl.evaluate({path!r}), tfl.predict({path!r}, paths), "
                                 f"tfl.export({path!r}, 'exports')"))
        accuracy = kept.get("val_accuracy")
        if accuracy is None or self.config.model.head.multi_label:
            return
        majority = near_chance(accuracy, class_counts(self.data.val.labels, self.data.num_classes))
        if majority is not None:
            why = ("there are no pretrained weights (weights=None): a model trained from scratch on little data "
                   "stays near chance; use ImageNet weights" if self.config.model.weights is None else
                   "check the labels and the data (tfl check), or try more epochs, another learning rate "
                   "(--lr auto) or another backbone")
            log.warning(f"WARNING: the kept model is near chance: val_accuracy {accuracy:.3f} against "
                        f"{majority:.3f} for always answering the most common class; {why}")

    def _report(self):
        try:
            from tfl.reports.report import report

            log.info(f"report: {report(self.run.path, model=self.model, image_data=self.data)}")
        except Exception as e:  # noqa: BLE001 - a report is a convenience; it must never fail a finished run
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            log.info(f"warning: report not written ({why}); retry with: tfl report {self.run.path}")

    def _save(self, m1, m2, best_stage, validation=None, test=None):
        from tfl.runs import atomic_path, ensure_space

        history = {"stage1": _checkpoint.StageState(self.run, 1).history,
                   "stage2": _checkpoint.StageState(self.run, 2).history}
        self.run.write_history(history)
        ensure_space(self.run.path, _checkpoint.variables_bytes(self.model.weights) + (1 << 20))
        with interrupts.protected():  # a signal waits until the run's files are complete
            with atomic_path(self.run.model_path) as tmp:
                self.model.save(tmp)
                _checkpoint.kill_point("final-save")
            self.run.write_metrics({"stage1": m1, "stage2": m2, "best_stage": best_stage,
                                    "val_accuracy": (m2 if best_stage == 2 else m1).get("val_accuracy"),
                                    "num_train": len(self.data.train), "num_val": len(self.data.val),
                                    "skipped": len(self.data.skipped),
                                    "selected_on": "val",
                                    **({"decisions": self.decisions} if self.decisions else {}),
                                    **({"validation": validation} if validation else {}),
                                    **({"test": test} if test else {})})
            state = self.run.read_state()
            state["finished"] = True
            self.run.write_state(state)
        _feature_files.drop_cut_folders(self.run.features_dir)

