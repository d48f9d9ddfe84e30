"""`tfl train`, `tfl evaluate`, `tfl predict`, `tfl info`."""

from __future__ import annotations

import datetime
import json
import os

import click

from tfl.cli._common import echo_json, fail, main, option, quiet_tf, read_config_file
from tfl.config import OPTIMIZERS, SCHEDULES, TrainConfig


def _csv_ints(ctx, param, value):
    if value is None:
        return None
    if value.strip().lower() in ("", "none"):
        return []
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of sizes such as 256,128") from None


def _lr(ctx, param, value):
    """A learning rate: a number, `auto` (LR finder) or a `LOW..HIGH` range."""
    if value is None:
        return None
    from tfl.config import parse_lr

    try:
        kind, low, high = parse_lr(value, param.opts[0])
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if kind == "range" and param.name == "lr":
        raise click.BadParameter(f"'{value}': a LOW..HIGH range is for --fine-tune-lr (stage 1 trains the head only)")
    return high if kind == "fixed" else value.strip().lower()


def _weights(ctx, param, value):
    if value is None:
        return None
    if value.lower() == "none":
        return "none"
    if value != "imagenet" and not os.path.isfile(value):
        raise click.BadParameter(f"'{value}' is neither imagenet, none nor an existing weights file")
    return value


# What an option left out means: tfl's defaults, read from `tfl.config` so the help cannot drift from the code.
DEFAULTS = TrainConfig()
HOLD_OUT = f"{DEFAULTS.data.val_fraction:.0%}"
VAL_SPLIT_DEFAULT = f"a val or validation folder (tfds: validation, val or test), else {HOLD_OUT} of train"
DATA_DIR_DEFAULT = "tfds's, ~/tensorflow_datasets"
DATA_HELP = ("Where the images are. folder:PATH: class folders under PATH/train and PATH/val (optional "
             f"PATH/test), or directly under PATH (then a stratified {HOLD_OUT} is held out for validation); "
             "an existing folder given without folder: is read as one. csv:PATH: a table of image paths and "
             "labels (see the --*-column options). tfds:NAME[/CONFIG]: a tensorflow-datasets dataset.")


def shown(value) -> str:
    """A default as the help shows it: 0.003 as 3e-3, 1.0 as 1, [256, 64] as 256,64, None as none, False as off."""
    if value is None or value == []:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and 0 < abs(value) < 0.01:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _lr_text(stage) -> str:
    """A stage's default learning rate with its warm-up and schedule, e.g. `5e-4 after 1 warm-up epoch, cosine
    decay to 0`."""
    text = shown(stage.lr)
    if stage.warmup_epochs:
        text += f" after {shown(stage.warmup_epochs)} warm-up epoch{'s' if stage.warmup_epochs != 1 else ''}"
    return text + (", cosine decay to 0" if stage.schedule == "cosine" else ", constant")


def table_options(f):
    """The options that say how to read a csv: table (shared by `tfl train`, `tfl tune` and `tfl check`)."""
    f = option("--label-delimiter", metavar="CHAR", default_text="none (one label per cell)",
               help="csv: separates several labels in one cell, e.g. ' ' for \"ants landscape\" (a file may also "
                    "get several labels on several rows).")(f)
    f = option("--split-column", metavar="NAME",
               default_text=f"a 'split' column if any, else {HOLD_OUT} of the rows held out, stratified",
               help="csv: column saying train, val or test per row.")(f)
    f = option("--label-column", metavar="NAME", default_text="label, labels, tags, class, ...",
               help="csv: column of the labels; tfds: the label feature.")(f)
    f = option("--path-column", metavar="NAME", default_text="path, file, filename, image, ...",
               help="csv: column of the image paths, relative to the CSV's folder unless absolute.")(f)
    return f


def data_options(f=None, *, required_text="required unless --config or --resume gives it"):
    """--data and the options that say how to read it (`@data_options`, or `@data_options(required_text=...)`)."""
    if f is None:
        return lambda g: data_options(g, required_text=required_text)
    f = table_options(f)
    f = option("--no-download", is_flag=True, help="Never download a tfds dataset (fail if it is not prepared).")(f)
    f = option("--strict", is_flag=True, default=None, default_text=f"{shown(DEFAULTS.data.strict)} (skip and report)",
               help="Refuse the data if any image is unreadable.")(f)
    f = option("--holdout", type=click.FloatRange(0, 0.9, max_open=True), metavar="FRACTION",
               default_text="0 (none; a test folder or csv test rows are always scored)",
               help="Hold out this fraction of the training images (stratified, seeded) as a test split that "
                    "nothing is chosen on; the kept model's test accuracy is the honest figure.")(f)
    f = option("--val-split", metavar="NAME",
               default_text=VAL_SPLIT_DEFAULT,
               help="Validation split: a folder name under PATH, a csv split value (test), or a tfds split "
                    "(slicing allowed: 'train[80%:]').")(f)
    f = option("--data-dir", type=click.Path(file_okay=False), default_text=DATA_DIR_DEFAULT,
               help="Where tfds datasets are prepared.")(f)
    f = option("--data", "data", metavar="SOURCE", help=DATA_HELP, required_text=required_text)(f)
    return f


def train_options(f):
    """Model and schedule options shared by `tfl train`, `tfl tune`, `tfl lr-find` and the recipes."""
    s1, s2, model, head = DEFAULTS.stage1, DEFAULTS.stage2, DEFAULTS.model, DEFAULTS.model.head
    opts = [
        option("--backbone", default_text=model.backbone,
               help="Backbone name (see `tfl backbones`), or auto: rank the candidates on this data first (as "
                    "tfl pick does) and train the winner; auto:A,B,C ranks those."),
        option("--weights", callback=_weights, metavar="imagenet|none|PATH", default_text=shown(model.weights),
               help="Backbone weights: imagenet, none (no pretrained weights: every layer trains from scratch in one "
                    "stage), or a weights file PATH."),
        option("--image-size", type=click.IntRange(16, 2048), default_text="the backbone's (see tfl backbones)",
               help="Square input side in pixels."),
        option("--epochs", type=click.IntRange(0), default_text=shown(s1.epochs),
               help="Stage 1 epochs (the head on the frozen backbone); 0 skips the stage."),
        option("--fine-tune-epochs", type=click.IntRange(0), default_text=shown(s2.epochs),
               help="Stage 2 epochs (the unfrozen top of the backbone); 0 skips the stage."),
        option("--unfreeze", metavar="SPEC", default_text=s2.unfreeze,
               help="Stage 2: how much to train: auto (decided from the data by linear probes at candidate cuts "
                    "of the frozen backbone), all, N layers from the top, a fraction (0.3, 30%), or Nblocks. "
                    "BatchNorm stays frozen."),
        option("--lr", callback=_lr, metavar="LR|auto", default_text=_lr_text(s1),
               help="Stage 1 learning rate, or auto (LR range test on the cached features)."),
        option("--fine-tune-lr", callback=_lr, metavar="LR|auto|LOW..HIGH", default_text=_lr_text(s2),
               help="Stage 2 peak learning rate; auto (LR range test); or LOW..HIGH: discriminative rates "
                    "spread from the lowest unfrozen block to the head, e.g. 1e-5..1e-3."),
        option("--gradual-unfreeze/--no-gradual-unfreeze", default=None, default_text=shown(s2.gradual),
               help="Stage 2: release the unfrozen blocks one at a time from the top over the stage."),
        option("--optimizer", type=click.Choice(OPTIMIZERS), default_text=s1.optimizer, help="Stage 1 optimizer."),
        option("--fine-tune-optimizer", type=click.Choice(OPTIMIZERS), default_text=s2.optimizer,
               help="Stage 2 optimizer."),
        option("--schedule", type=click.Choice(SCHEDULES), default_text=s2.schedule,
               help="Stage 2 learning-rate schedule after the warm-up."),
        option("--warmup", "warmup_epochs", type=float, default_text=shown(s2.warmup_epochs),
               help="Stage 2 warm-up epochs (linear from 0 to the peak rate)."),
        option("--patience", type=click.IntRange(1), default_text="off (train every epoch)",
               help="Early stopping patience (epochs without a better val accuracy) in both stages; the best "
                    "weights are restored."),
        option("--batch-size", type=click.IntRange(1), default_text=shown(DEFAULTS.data.batch_size),
               help="Global batch size."),
        option("--dropout", type=click.FloatRange(0, 1, max_open=True), default_text=shown(head.dropout),
               help="Head dropout."),
        option("--dense", callback=_csv_ints, metavar="SIZES", default_text=shown(head.dense),
               help="Hidden head layer sizes, e.g. 256 or 512,128 (none: a linear head)."),
        option("--pooling", type=click.Choice(["avg", "max"]), default_text=head.pooling,
               help="Global pooling of the backbone's features."),
        option("--augment/--no-augment", default=None, default_text=shown(model.augment),
               help="Random flip, rotation and zoom of training images."),
        option("--label-smoothing", type=click.FloatRange(0, 1), default_text=shown(DEFAULTS.label_smoothing),
               help="Label smoothing of the cross-entropy loss."),
        option("--class-weight", type=click.Choice(["balanced", "none"]), default_text=shown(DEFAULTS.class_weight),
               help="balanced: weight each class by its inverse frequency (multi-label: each label, present and "
                    "absent)."),
        option("--multi-label", is_flag=True, default=None, default_text=shown(head.multi_label),
               help="Several labels per image: sigmoid outputs, binary cross-entropy, a threshold per label chosen "
                    "on validation."),
        option("--mixed-precision", is_flag=True, default=None, default_text=shown(DEFAULTS.mixed_precision),
               help="Mixed float16 (for GPUs; about 4x slower on CPU)."),
        option("--xla", "jit_compile", is_flag=True, default=None, default_text=shown(DEFAULTS.jit_compile),
               help="XLA compilation of the training step (slower on CPU; a stage 2 on images runs without it)."),
        option("--strategy", type=click.Choice(["default", "auto", "mirrored", "multiworker", "tpu"]),
               default_text=f"{DEFAULTS.strategy} (one device, no tf.distribute)",
               help="tf.distribute strategy: auto is mirrored when several GPUs are visible; multiworker reads "
                    "TF_CONFIG."),
        option("--seed", type=int, default_text=shown(DEFAULTS.seed),
               help="Random seed of the data order, augmentation, validation split and initialisation."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_config(base=None, **opts):
    """A TrainConfig from CLI options (options not given keep the defaults)."""
    from tfl import config as config_lib

    cfg = base or config_lib.TrainConfig()
    patience = opts.pop("patience", None)
    if opts.pop("no_download", False):
        opts["download"] = False
        cfg.data.download = False
    opts.pop("download", None)
    cfg = config_lib.apply_overrides(cfg, **opts)
    if patience:
        cfg.stage1.patience = cfg.stage2.patience = patience
    return cfg


@main.command(short_help="Train a classifier: the head, then the top of the backbone.")
@data_options
@train_options
@option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default_text="none (tfl's defaults)",
        help="Start from a config.json (e.g. of an earlier run); options given override it.")
@option("--out", type=click.Path(file_okay=False), default_text="runs/<backbone>-<date>-<time>", help="Run folder.")
@option("--resume", "resume_dir", type=click.Path(file_okay=False), metavar="RUN", default_text="none (a new run)",
        help="Continue the killed or stopped run in RUN from its last checkpoint.")
@option("--overwrite", is_flag=True, help="Replace an existing run folder.")
def train(config_file, out, resume_dir, overwrite, **opts):
    """Train a classifier in two stages: the head, then the top of the backbone.

    \b
    Example:
      tfl train --data folder:photos --backbone mobilenet_025 --out runs/photos
    """
    if resume_dir:
        out = resume_dir
        cfg = None
    else:
        base = None
        if config_file:
            base = read_config_file(config_file)
        cfg = build_config(base, **opts)
        if not opts.get("data") and not config_file:
            fail("--data is required (folder:PATH or tfds:NAME), or --resume RUN")
        from tfl.selection.auto import AUTO, is_auto

        name = AUTO if is_auto(cfg.model.backbone) else cfg.model.backbone
        out = out or os.path.join("runs", f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    from tfl.data import checks

    quiet_tf()
    # Bad options fail here in one line, before TensorFlow is imported or any data is read.
    checks.check_options(cfg, out=out, resume=bool(resume_dir), overwrite=overwrite)
    from tfl.training.scoring import test_summary as test_line
    from tfl.training.trainer import Trainer

    result = Trainer(cfg, out, resume=bool(resume_dir), overwrite=overwrite).fit()
    for stage, m in (("stage 1", result.stage1), ("stage 2", result.stage2)):
        if m:
            click.echo(f"{stage}: val_accuracy {m.get('val_accuracy', float('nan')):.4f}  "
                       f"val_loss {m.get('val_loss', float('nan')):.4f}  "
                       f"(best epoch {m['best_epoch']} of {m['epochs']})")
        else:
            click.echo(f"{stage}: skipped")
    click.echo(f"kept stage {result.best_stage}: val_accuracy {result.val_accuracy:.4f} (the split it was chosen on)")
    if result.test:
        click.echo(f"test: {test_line(result.test)}")
    if result.validation:
        v = result.validation
        click.echo(f"multi-label, at the per-label thresholds chosen on validation: macro F1 {v['macro_f1']:.4f}  "
                   f"micro F1 {v['micro_f1']:.4f}  mAP {v['map']:.4f}  exact match {v['accuracy']:.4f}")
    click.echo(f"run folder: {result.run_dir}")


@main.command(short_help="Score a run: accuracy, loss, per-class P/R/F1, confusion.")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@option("--data", metavar="SOURCE", default_text="the run's own data",
        help="Data to evaluate on: folder:PATH or tfds:NAME with the run's classes.")
@option("--split", default="val", help="val, train or test.")
@option("--batch-size", type=click.IntRange(1), default=32, help="Prediction batch size.")
@option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(run, data, split, batch_size, as_json):
    """Score a run's model: accuracy, loss, per-class precision/recall/F1, confusion matrix.

    RUN is a run folder; by default it is scored on the validation split of
    the data it was trained on. Multi-label models: per-label threshold,
    precision/recall/F1 and average precision, micro and macro F1, mean
    average precision, exact match.
    """
    quiet_tf()
    from tfl.serving.evaluation import evaluate as evaluate_run
    from tfl.serving.evaluation import format_metrics

    metrics = evaluate_run(run, data=data, split=split, batch_size=batch_size)
    if as_json:
        echo_json(metrics)
    else:
        click.echo(f"{metrics['data']} ({split})")
        click.echo(format_metrics(metrics))


@main.command(short_help="Label image files with a run or an exported model.")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@option("--batch-size", type=click.IntRange(1), default=32, help="Prediction batch size.")
@option("--engine", type=click.Choice(["auto", "keras", "litert"]), default="auto",
        help="What runs the model: keras (TensorFlow), litert (LiteRT with XNNPACK: pip install 'tfl[litert]'), "
             "or auto (litert when installed).")
@option("--json", "as_json", is_flag=True,
        help="Print a JSON list: path, label, probability (multi-label: labels) per image.")
def predict(run, inputs, batch_size, engine, as_json):
    """Label image files (folders walked recursively) with a run's model or a `tfl export` folder.

    Prints one line per image: path, label and probability (ERROR and the
    reason for a file that cannot be read); a multi-label model prints every
    label whose probability reaches its threshold, with it. The LiteRT engine
    runs a TFLite copy of the model, checked against it when first made (a
    run folder keeps it as model_float32.tflite).
    """
    quiet_tf()
    from tfl.serving.prediction import predict as predict_files

    results = predict_files(run, inputs, batch_size=batch_size, engine=engine)
    if as_json:
        echo_json(results)
        return
    for r in results:
        if "error" in r:
            click.echo(f"{r['path']}\tERROR\t{r['error']}")
        elif "labels" in r:
            over = ", ".join(f"{name} {p:.4f}" for name, p in r["labels"].items())
            click.echo(f"{r['path']}\t{over or '(no label over its threshold)'}")
        else:
            click.echo(f"{r['path']}\t{r['label']}\t{r['probability']:.4f}")


@main.command(short_help="Show a run's configuration, classes, progress and metrics.")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@option("--json", "as_json", is_flag=True, help="Print config, classes and metrics as JSON.")
def info(run, as_json):
    """Show a run's configuration, classes, progress and metrics."""
    from tfl.runs import RunFolder

    r = RunFolder(run)
    cfg = r.read_config()
    out = {"run": run, "config": cfg.to_dict(), "class_names": json.loads(json.dumps(r.read_class_names()))
           if os.path.exists(r.class_names_path) else None,
           "state": {k: {kk: vv for kk, vv in v.items() if kk != "history"} if isinstance(v, dict) else v
                     for k, v in r.read_state().items()},
           "metrics": r.read_metrics()}
    if as_json:
        echo_json(out)
        return
    m = cfg.model
    click.echo(f"run:        {run}")
    click.echo(f"data:       {cfg.data.source}")
    click.echo(f"model:      {m.backbone} ({m.weights or 'random init'}), {m.image_size or 'default'} px, "
               f"head {m.head.pooling} pool, dropout {m.head.dropout}, dense {m.head.dense or 'none'}")
    click.echo(f"stage 1:    {cfg.stage1.epochs} epochs, {cfg.stage1.optimizer} lr {_fmt_lr(cfg.stage1.lr)}")
    click.echo(f"stage 2:    {cfg.stage2.epochs} epochs, {cfg.stage2.optimizer} lr {_fmt_lr(cfg.stage2.lr)}, "
               f"unfreeze {cfg.stage2.unfreeze}")
    state = out["state"]
    chosen = state.get("backbone")
    if isinstance(chosen, dict) and chosen.get("why"):
        click.echo(f"backbone:   auto -> {chosen['why']} (ranking: {os.path.join(run, 'pick', 'index.html')})")
    click.echo(f"classes:    {', '.join(out['class_names'] or [])}")
    click.echo("progress:   " + ("finished" if state.get("finished") else
                                  ", ".join(f"{k} {v.get('epochs_done', 0)} epochs" for k, v in state.items()
                                            if isinstance(v, dict) and k.startswith("stage")) or "not started"))
    metrics = out["metrics"]
    if metrics:
        click.echo(f"val acc:    stage 1 {metrics.get('stage1', {}).get('val_accuracy', float('nan')):.4f}, "
                   f"stage 2 {metrics.get('stage2', {}).get('val_accuracy', float('nan')):.4f}, "
                   f"kept stage {metrics.get('best_stage')} (chosen on val)")
        if metrics.get("test"):
            from tfl.training.scoring import test_summary

            click.echo(f"test:       {test_summary(metrics['test'])}")
        for name, d in (metrics.get("decisions") or {}).items():
            click.echo(f"decided:    {name}: {d.get('chosen')} ({d.get('why')}; {d.get('seconds', 0):.1f}s)")
    for stage, plan in sorted((state.get("plan") or {}).items()):
        if isinstance(plan, dict) and plan.get("epochs"):
            copies = plan.get("copies", 1)
            click.echo(f"plan:       {stage.replace('stage', 'stage ')} on {plan.get('inputs')}, {copies} "
                       f"cop{'y' if copies == 1 else 'ies'}: {plan.get('reason')}")


def _fmt_lr(lr) -> str:
    return f"{lr:g}" if isinstance(lr, (int, float)) else str(lr)
