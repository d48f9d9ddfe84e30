"""`tfl report` (HTML report of a run or search)."""

from __future__ import annotations

import click

from tfl.cli._common import main, quiet_tf


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Report folder (default RUN/report).")
@click.option("--data", help="Score on this data source instead of the run's own.")
@click.option("--split", default="val", show_default=True, help="val, train or test.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--mistakes", "max_mistakes", type=click.IntRange(0), default=16, show_default=True,
              help="How many of the most confident mistakes to show.")
def report(run, out, data, split, batch_size, max_mistakes):
    """Write RUN/report/index.html: curves, confusion matrix, per-class scores, mistakes.

    RUN is a run folder (every training writes its report; this regenerates
    it) or a `tfl tune` search folder (a page of its trials). The page is
    offline: PNG images beside it, each with its numbers in a JSON file.

    \b
    Example:
      tfl report runs/photos
    """
    quiet_tf()
    from tfl.reports.report import report as write_report

    path = write_report(run, out, data=data, split=split, batch_size=batch_size, max_mistakes=max_mistakes)
    click.echo(path)
