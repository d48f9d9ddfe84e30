"""`tfl backbones`: the registry as a table."""

from __future__ import annotations

import click

from tfl.cli._common import echo_json, main, option


@main.command("backbones", short_help="List the backbones: parameters, sizes, blocks, local weights.")
@option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
@option("--family", default_text="all", help="Only this family (e.g. efficientnet, resnet).")
def backbones_command(as_json, family):
    """List the backbones: parameters, default size, blocks, local ImageNet weights."""
    from tfl.models import backbones

    rows = []
    for spec in backbones.list_backbones():
        if family and spec.family != family:
            continue
        stats = backbones.stats(spec)
        rows.append({"name": spec.name, "family": spec.family, "params": stats.get("params"),
                     "default_size": spec.default_size, "min_size": spec.min_size, "blocks": stats.get("blocks"),
                     "preprocess": spec.preprocess or "inside model",
                     "imagenet_local": backbones.imagenet_weights_cached(spec)})
    if as_json:
        echo_json(rows)
        return
    click.echo(f"{'name':<34} {'params':>8} {'size':>5} {'min':>4} {'blocks':>6}  {'preprocess':<13} imagenet")
    for r in rows:
        params = f"{r['params'] / 1e6:.1f}M" if r["params"] else "?"
        click.echo(f"{r['name']:<34} {params:>8} {r['default_size']:>5} {r['min_size']:>4} {r['blocks'] or '?':>6}  "
                   f"{r['preprocess']:<13} {'local' if r['imagenet_local'] else 'download'}")
    click.echo(f"{len(rows)} backbones")
