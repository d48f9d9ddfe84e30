"""`tfl lr-find`: the learning-rate range test, with its plot."""

from __future__ import annotations

import click

from tfl.cli._common import echo_json, fail, main, option, quiet_tf
from tfl.cli.train import build_config, data_options, shown, train_options


@main.command("lr-find", short_help="Find a learning rate with the LR range test; plot the loss.")
@data_options(required_text="required")
@train_options
@option("--stage", type=click.IntRange(1, 2), default=1,
              help="1: the head on cached backbone features (seconds); 2: the unfrozen top end to end, "
                   "after training the head as stage 1 is configured.")
@option("--steps", type=click.IntRange(10, 10000), default_text="200 for stage 1, 100 for stage 2",
        help="Training steps of the test; the rate grows exponentially from --min-lr to --max-lr over them.")
@option("--min-lr", type=click.FloatRange(0, min_open=True), default=1e-7, default_text=shown(1e-7),
        help="Learning rate of the first step.")
@option("--max-lr", type=click.FloatRange(0, min_open=True), default=10.0, default_text=shown(10.0),
        help="Learning rate of the last step (the test stops early once the loss diverges).")
@option("--method", type=click.Choice(["valley", "steepest", "minimum"]), default="valley",
              help="How the suggestion is picked: the loss's longest valley (fastai), its steepest descent, "
                   "or a tenth of the rate at its minimum.")
@option("--out", default="lr_find.png", type=click.Path(dir_okay=False),
              help="PNG of loss against learning rate with the suggestion marked (numbers beside it as .json).")
@option("--json", "as_json", is_flag=True, help="Print the suggestion and the curve as JSON.")
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
    from tfl.training.api import lr_find as run_lr_find
    from tfl.training.lr_finder import describe

    result = run_lr_find(cfg, stage=stage, out=out, min_lr=min_lr, max_lr=max_lr, steps=steps, method=method)
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(describe(result))
    click.echo(f"suggested learning rate: {result.suggestion:.2e}  "
               f"(use --{'lr' if stage == 1 else 'fine-tune-lr'} {result.suggestion:.2g})")
    click.echo(f"plot: {result.plot}")
