"""`tfl report` (HTML report of a run or search)."""

from __future__ import annotations

import click

from tfl.cli._common import main, option, quiet_tf
from tfl.reports import MAX_MISTAKES


@main.command(short_help="Write the HTML report of a run or a search (RUN/report).")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@option("--out", type=click.Path(file_okay=False), default_text="RUN/report", help="Report folder.")
@option("--data", metavar="SOURCE", default_text="the run's own data",
        help="Score on this data source (folder:PATH or tfds:NAME with the run's classes) instead.")
@option("--split", default="val", help="The split scored: val, train or test.")
@option("--batch-size", type=click.IntRange(1), default=32, help="Prediction batch size.")
@option("--mistakes", "max_mistakes", type=click.IntRange(0), default=MAX_MISTAKES,
        help="How many of the most confident mistakes to draw (the page counts them all).")
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
