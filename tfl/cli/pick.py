"""`tfl pick`: rank backbones on the user's data and recommend one."""

from __future__ import annotations

import datetime
import os

import click

from tfl.cli._common import echo_json, fail, main, option, quiet_tf
from tfl.cli.train import build_config, data_options


def _count(ctx, param, value):
    """A count such as 3000000, 3.5M or 500k."""
    if value is None:
        return None
    text = str(value).strip().lower().replace(",", "").replace("_", "")
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:], 1)
    try:
        number = float(text[:-1] if scale != 1 else text) * scale
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a count such as 3000000, 3.5M or 500k") from None
    if number <= 0:
        raise click.BadParameter(f"'{value}' must be more than 0")
    return int(number)


@main.command(short_help="Rank backbones on your data and recommend one.")
@data_options(required_text="required")
@option("--candidates", metavar="A,B,C", default_text="mobilenet_025, mobilenet_v2_035, mobilenet_075, "
        "mobilenet_v2, mobilenet_v3_large, efficientnet_v2_b0, convnext_tiny",
        help="Backbones to compare (see tfl backbones).")
@option("--family", metavar="NAME", default_text="none", help="Compare every backbone of this family instead "
        "(e.g. mobilenet, mobilenet_v2, efficientnet).")
@option("--image-size", type=click.IntRange(16, 2048), default_text="each backbone's own",
        help="Square input side of every candidate.")
@option("--budget", metavar="DURATION", default_text="no limit",
        help="Time for the whole pick (90s, 10m, 1h): candidates run cheapest first, and one whose feature pass "
             "would not fit is skipped.")
@option("--max-latency-ms", type=float, metavar="MS", default_text="no limit",
        help="Recommend only backbones at most this slow per image at batch 1 on this machine.")
@option("--max-params", callback=_count, metavar="N", default_text="no limit",
        help="Recommend only backbones with at most N parameters (3.5M, 500k).")
@option("--max-images", type=click.IntRange(10), default=2000,
        help="Larger training sets are scored on a class-balanced subsample of this many images (and half as many "
             "validation images).")
@option("--batch-size", type=click.IntRange(1), default=32, help="Batch of the feature pass and of the "
        "throughput figure.")
@option("--pooling", type=click.Choice(["avg", "max"]), default="avg", help="Global pooling of the features.")
@option("--engine", type=click.Choice(["auto", "keras", "litert"]), default="auto",
        help="What runs the feature passes and times latency: litert (LiteRT with XNNPACK, about 3x faster on CPU: "
             "pip install 'tfl[litert]'), keras (TensorFlow), or auto (litert when installed, as tfl predict).")
@option("--seed", type=int, default=42, help="Seed of the subsample and of a held-out validation split.")
@option("--out", type=click.Path(file_okay=False), default_text="runs/pick-<date>-<time>",
        help="Folder for pick.json, pick.png and index.html.")
@option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def pick(candidates, family, image_size, budget, max_latency_ms, max_params, max_images, batch_size, pooling,
         engine, seed, out, as_json, **opts):
    """Rank backbones on your own data and recommend one.

    Each candidate with ImageNet weights here gets its frozen pooled features
    computed once, a linear probe trained on them (scored on the validation
    split), its latency measured on this machine (through LiteRT when it is
    installed, as tfl predict runs it) and its size read. The best
    probe accuracy within the constraints wins; candidates within 1 point (or
    one standard error, when wider) of the best both on the validation split
    and on the estimate from all labelled images (leave-one-out on train
    pooled with val) count as tied, and the fastest of those wins.

    \b
    Examples:
      tfl pick --data folder:photos
      tfl pick --data folder:photos --candidates mobilenet_v2,mobilenet_075 --max-latency-ms 20
    """
    from tfl.tuning.space import parse_duration

    if not opts.get("data"):
        fail("--data is required (folder:PATH, csv:PATH or tfds:NAME)")
    parse_duration(budget, "--budget")  # a bad duration fails before TensorFlow loads
    data = build_config(None, **opts).data
    out = out or os.path.join("runs", f"pick-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    quiet_tf()
    from tfl.selection.pick import pick as run_pick

    result = run_pick(data, candidates=candidates, family=family, image_size=image_size, budget=budget,
                      max_latency_ms=max_latency_ms, max_params=max_params, out=out, batch_size=batch_size,
                      seed=seed, max_images=max_images, pooling=pooling, engine=engine)
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(result.table(skipped=False))  # the log said each skip, in one line, as it happened
    click.echo(f"page: {os.path.join(out, 'index.html')}")
