"""`tfl check`: the data checks that `tfl train` runs, on their own and in full."""

from __future__ import annotations

import click

from tfl.cli._common import echo_json, main
from tfl.cli.train import table_options


@main.command()
@click.option("--data", "source", required=True, metavar="SOURCE",
              help="folder:PATH (PATH/train/<class>/*.jpg and PATH/val/...), csv:PATH (a table of image paths "
                   "and labels) or tfds:NAME[/CONFIG].")
@table_options
@click.option("--backbone", default="mobilenet_025", show_default=True,
              help="Backbone whose input size decides which images are too small.")
@click.option("--image-size", type=click.IntRange(16, 2048), help="Model input side (default: the backbone's).")
@click.option("--val-split", help="Validation split (folder name, csv split value, or tfds split).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="tfds data directory.")
@click.option("--class-weight", type=click.Choice(["balanced", "none"]), default="none", show_default=True,
              help="The class weighting training will use.")
@click.option("--strict", is_flag=True, help="Refuse the data if any file is unusable (as tfl train --strict).")
@click.option("--multi-label", is_flag=True,
              help="Check for tfl train --multi-label: images may have several labels (else one each).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(source, backbone, image_size, val_split, data_dir, class_weight, strict, multi_label, as_json,
          **table):
    """Check a dataset before training: classes, splits, bad files or rows, duplicates, imbalance.

    Prints one line per problem. Exits 0 when training can use the data
    (unusable files are skipped, as tfl train does), 2 when it cannot.

    \b
    Example:
      tfl check --data folder:photos --backbone efficientnet_b0
      tfl check --data csv:photos/tags.csv --label-delimiter ' ' --multi-label
    """
    from tfl.data import checks

    report = checks.check_data(source, backbone=backbone, image_size=image_size,
                               class_weight=None if class_weight == "none" else class_weight,
                               val_split=val_split, data_dir=data_dir, strict=strict, multi_label=multi_label,
                               **table)
    if as_json:
        echo_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)
