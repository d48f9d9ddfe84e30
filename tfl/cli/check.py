"""`tfl check`: the data checks that `tfl train` runs, on their own and in full."""

from __future__ import annotations

import click

from tfl.cli._common import echo_json, main, option
from tfl.cli.train import DATA_DIR_DEFAULT, DATA_HELP, DEFAULTS, VAL_SPLIT_DEFAULT, table_options


@main.command(short_help="Check a dataset: classes, splits, bad files, imbalance.")
@option("--data", "source", required=True, metavar="SOURCE", help=DATA_HELP)
@table_options
@option("--backbone", default=DEFAULTS.model.backbone,
              help="Backbone whose input size decides which images are too small.")
@option("--image-size", type=click.IntRange(16, 2048), default_text="the backbone's (see tfl backbones)",
        help="Model input side in pixels.")
@option("--val-split", metavar="NAME", default_text=VAL_SPLIT_DEFAULT,
        help="Validation split: a folder name under PATH, a csv split value, or a tfds split.")
@option("--data-dir", type=click.Path(file_okay=False), default_text=DATA_DIR_DEFAULT,
        help="Where tfds datasets are prepared.")
@option("--class-weight", type=click.Choice(["balanced", "none"]), default="none", show_default=True,
              help="The class weighting training will use.")
@option("--strict", is_flag=True, help="Refuse the data if any file is unusable (as tfl train --strict).")
@option("--multi-label", is_flag=True,
        help="Check for tfl train --multi-label: images may have several labels (else one each).")
@option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
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
