"""`tfl lr-find`: the learning-rate range test, with its plot."""

from __future__ import annotations

import click

from tfl.cli._common import echo_json, fail, main, quiet_tf
from tfl.cli.train import build_config, data_options, train_options


@main.command("lr-find")
@data_options
@train_options
@click.option("--stage", type=click.IntRange(1, 2), default=1, show_default=True,
              help="1: the head on cached backbone features (seconds); 2: the unfrozen top end to end, "
                   "after training the head as stage 1 is configured.")
@click.option("--steps", type=click.IntRange(10, 10000), help=("Steps of the test. Default 200 (stage "
    "1), 100 (stage 2)."))
@click.option("--min-lr", type=click.FloatRange(0, min_open=True), default=1e-7, show_default=True)
@click.option("--max-lr", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True)
@click.option("--method", type=click.Choice(["valley", "steepest", "minimum"]), default="valley", show_default=True,
              help="How the suggestion is picked: the loss's longest valley (fastai), its steepest descent, "
                   "or a tenth of the rate at its minimum.")
@click.option("--out", default="lr_find.png", show_default=True, type=click.Path(dir_okay=False),
              help="PNG of loss against learning rate with the suggestion marked (numbers beside it as .json).")
@click.option("--json", "as_json", is_flag=True, help="Print the suggestion and the curve as JSON.")
def lr_find(stage, steps, min_lr, max_lr, method, out, as_json, **opts):
    """Find a learning rate: train with an exponentially growing rate and watch the loss.

    \b
    Example:
      tfl lr-find --data folder:photos --backbone mobilenet_025 --out lr.png
      tfl train --data folder:photos --lr 3e-3      # the suggestion
      tfl train --data folder:photos --lr auto      # or let train run the test
    """
    if not opts.get("data"):
        fail("--data is required (folder:PATH or tfds:NAME)")
    if min_lr >= max_lr:
        fail(f"--min-lr {min_lr:g} must be below --max-lr {max_lr:g}")
    if not out.lower().endswith(".png"):
        fail(f"--out {out}: the plot is a PNG; give a path ending in .png")
    cfg = build_config(None, **opts)
    quiet_tf()
    from tfl.training.lr_finder import describe
    from tfl.training.trainer import lr_find as run_lr_find

    result = run_lr_find(cfg, stage=stage, out=out, min_lr=min_lr, max_lr=max_lr, steps=steps, method=method)
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(describe(result))
    click.echo(f"suggested learning rate: {result.suggestion:.2e}  "
               f"(use --{'lr' if stage == 1 else 'fine-tune-lr'} {result.suggestion:.2g})")
    click.echo(f"plot: {result.plot}")
