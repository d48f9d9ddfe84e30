"""`tfl train`, `tfl evaluate`, `tfl predict`, `tfl info`."""

from __future__ import annotations

import datetime
import json
import os

import click

from tfl.cli._common import echo_json, fail, main, quiet_tf, read_config_file


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


def data_options(f):
    """--data and the options that say how to read it."""
    f = click.option("--no-download", is_flag=True, help="Never download a tfds dataset (fail if not prepared).")(f)
    f = click.option("--strict", is_flag=True, default=None,
                     help="Refuse the data if any image is unreadable (default: skip and report).")(f)
    f = click.option("--val-split", help=("Validation split (folder name or tfds split); "
        "default val/validation/test."))(f)
    f = click.option("--data-dir", type=click.Path(file_okay=False), help="tfds data directory.")(f)
    f = click.option("--data", "data", metavar="SOURCE",
                     help="folder:PATH (PATH/train/<class>/*.jpg and PATH/val/...) or tfds:NAME[/CONFIG].")(f)
    return f


def train_options(f):
    """Model and schedule options shared by `tfl train` and the recipes."""
    opts = [
        click.option("--backbone", help="Backbone name (see `tfl backbones`). Default mobilenet_025."),
        click.option("--weights", callback=_weights, help="imagenet (default), none, or a weights file PATH."),
        click.option("--image-size", type=click.IntRange(16, 2048), help="Input side in pixels (default: backbone's)."),
        click.option("--epochs", type=click.IntRange(0), help="Stage 1 epochs (head on frozen backbone). Default 20."),
        click.option("--fine-tune-epochs", type=click.IntRange(0), help="Stage 2 epochs (unfrozen top). Default 10."),
        click.option("--unfreeze", help=("Stage 2: all, N layers from the top, a fraction "
            "(0.3), or Nblocks. Default 2blocks.")),
        click.option("--lr", callback=_lr, metavar="LR|auto",
                     help=("Stage 1 learning rate, or auto (LR range test on the "
                         "cached features). Default 3e-3, cosine decay.")),
        click.option("--fine-tune-lr", callback=_lr, metavar="LR|auto|LOW..HIGH",
                     help="Stage 2 peak learning rate; auto (LR range test); or LOW..HIGH: discriminative rates "
                          "spread from the lowest unfrozen block to the head, e.g. 1e-5..1e-3. Default 5e-4."),
        click.option("--gradual-unfreeze/--no-gradual-unfreeze", default=None,
                     help="Stage 2: release the unfrozen blocks one at a time from the top over the stage."),
        click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd", "rmsprop"]), help="Stage 1 optimizer."),
        click.option("--fine-tune-optimizer", type=click.Choice(["adam", "adamw", "sgd", "rmsprop"]),
                     help="Stage 2 optimizer."),
        click.option("--schedule", type=click.Choice(["constant", "cosine"]), help=("Stage 2 schedule (default "
            "cosine).")),
        click.option("--warmup", "warmup_epochs", type=float, help="Stage 2 warm-up epochs (default 1)."),
        click.option("--patience", type=click.IntRange(1), help="Early stopping patience (epochs) in both stages."),
        click.option("--batch-size", type=click.IntRange(1), help="Global batch size. Default 32."),
        click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), help="Head dropout. Default 0.2."),
        click.option("--dense", callback=_csv_ints, help=("Hidden head layer sizes, e.g. 256 or "
            "512,128 (default none).")),
        click.option("--pooling", type=click.Choice(["avg", "max"]), help="Global pooling. Default avg."),
        click.option("--augment/--no-augment", default=None, help=("Random flip/rotation/zoom in "
            "training (default on).")),
        click.option("--label-smoothing", type=click.FloatRange(0, 1), help="Label smoothing. Default 0."),
        click.option("--class-weight", type=click.Choice(["balanced", "none"]), help="Weight classes by frequency."),
        click.option("--multi-label", is_flag=True, default=None, help="Sigmoid outputs (multi-label)."),
        click.option("--mixed-precision", is_flag=True, default=None, help="Mixed float16 (GPUs; off on CPU)."),
        click.option("--xla", "jit_compile", is_flag=True, default=None,
                     help="XLA compilation of the training step (slower on CPU; a stage 2 on images runs without it)."),
        click.option("--strategy", type=click.Choice(["default", "auto", "mirrored", "multiworker", "tpu"]),
                     help="tf.distribute strategy. Default: default."),
        click.option("--seed", type=int, help="Random seed. Default 42."),
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


@main.command()
@data_options
@train_options
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="Start from a config.json (e.g. of an earlier run); options override it.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default runs/<backbone>-<time>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), metavar="RUN",
              help="Continue the killed or stopped run in RUN from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
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
        out = out or os.path.join("runs", f"{cfg.model.backbone}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    from tfl.data import checks

    quiet_tf()
    # Bad options fail here in one line, before TensorFlow is imported or any data is read.
    checks.check_options(cfg, out=out, resume=bool(resume_dir), overwrite=overwrite)
    from tfl.training.trainer import Trainer

    result = Trainer(cfg, out, resume=bool(resume_dir), overwrite=overwrite).fit()
    for stage, m in (("stage 1", result.stage1), ("stage 2", result.stage2)):
        if m:
            click.echo(f"{stage}: val_accuracy {m.get('val_accuracy', float('nan')):.4f}  "
                       f"val_loss {m.get('val_loss', float('nan')):.4f}  "
                       f"(best epoch {m['best_epoch']} of {m['epochs']})")
        else:
            click.echo(f"{stage}: skipped")
    click.echo(f"kept stage {result.best_stage}: val_accuracy {result.val_accuracy:.4f}")
    click.echo(f"run folder: {result.run_dir}")


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--data", help="Data to evaluate on (default: the run's own data).")
@click.option("--split", default="val", show_default=True, help="val, train or test.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(run, data, split, batch_size, as_json):
    """Score a run's model: accuracy, loss, per-class precision/recall/F1, confusion matrix."""
    quiet_tf()
    from tfl.serving.evaluation import evaluate as evaluate_run
    from tfl.serving.evaluation import format_metrics

    metrics = evaluate_run(run, data=data, split=split, batch_size=batch_size)
    if as_json:
        echo_json(metrics)
    else:
        click.echo(f"{metrics['data']} ({split})")
        click.echo(format_metrics(metrics))


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list: path, label, probability per image.")
def predict(run, inputs, batch_size, as_json):
    """Label image files (folders walked recursively) with a run's model or a `tfl export` folder."""
    quiet_tf()
    from tfl.serving.prediction import predict as predict_files

    results = predict_files(run, inputs, batch_size=batch_size)
    if as_json:
        echo_json(results)
        return
    for r in results:
        if "error" in r:
            click.echo(f"{r['path']}\tERROR\t{r['error']}")
        else:
            click.echo(f"{r['path']}\t{r['label']}\t{r['probability']:.4f}")


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print config, classes and metrics as JSON.")
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
    click.echo(f"classes:    {', '.join(out['class_names'] or [])}")
    state = out["state"]
    click.echo("progress:   " + ("finished" if state.get("finished") else
                                  ", ".join(f"{k} {v.get('epochs_done', 0)} epochs" for k, v in state.items()
                                            if isinstance(v, dict)) or "not started"))
    metrics = out["metrics"]
    if metrics:
        click.echo(f"val acc:    stage 1 {metrics.get('stage1', {}).get('val_accuracy', float('nan')):.4f}, "
                   f"stage 2 {metrics.get('stage2', {}).get('val_accuracy', float('nan')):.4f}, "
                   f"kept stage {metrics.get('best_stage')}")


def _fmt_lr(lr) -> str:
    return f"{lr:g}" if isinstance(lr, (int, float)) else str(lr)
