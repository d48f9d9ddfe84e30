"""`tfl tune`: Keras Tuner search over the two-stage recipe."""

from __future__ import annotations

import datetime
import os

import click

from tfl.cli._common import echo_json, fail, main, quiet_tf, read_config_file
from tfl.cli.train import build_config, data_options, train_options


def _list_params() -> None:
    from tfl.tuning import space as _search_space

    click.echo("Tunable hyperparameters (default search; others keep the base config's value):")
    for p in _search_space.PARAMS.values():
        click.echo(f"  {p.name:<20} {_search_space.describe(p.default):<24} {p.help}")
    click.echo("\nSPEC: LO..HI[:log][:step=S] (range), A,B,C (choice) or V (fixed); "
               "e.g. --search lr=1e-4..1e-2:log --search unfreeze=0,20,40,80 --fix dropout=0.2")


@main.command()
@data_options
@train_options
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="Base config.json for every trial (e.g. of an earlier run); options override it.")
@click.option("--search", "search", multiple=True, metavar="NAME=SPEC",
              help="Search NAME over SPEC: LO..HI[:log][:step=S] or A,B,C (repeatable; see --list-params).")
@click.option("--fix", "fix", multiple=True, metavar="NAME=VALUE", help="Do not search NAME; use VALUE (repeatable).")
@click.option("--tuner", type=click.Choice(["random", "grid", "bayesian", "hyperband"]), default="random",
              show_default=True, help="Search algorithm (Hyperband spends stage-2 epochs up to --fine-tune-epochs).")
@click.option("--max-trials", type=click.IntRange(1), help="Most trials. Default 10.")
@click.option("--executions-per-trial", type=click.IntRange(1), default=1, show_default=True,
              help="Runs per trial (different seeds), scores averaged.")
@click.option("--objective", type=click.Choice(["val_accuracy", "val_loss"]), default="val_accuracy",
              show_default=True, help="Validation metric of the model each trial keeps after stage 2.")
@click.option("--max-time", metavar="DURATION", help="Time budget (900, 900s, 15m, 2h): then stop cleanly.")
@click.option("--hyperband-factor", type=click.IntRange(2), default=3, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="Search folder (default runs/tune-<time>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Continue the interrupted search in DIR (completed trials are kept).")
@click.option("--overwrite", is_flag=True, help="Replace an existing search folder.")
@click.option("--chief", metavar="HOST:PORT", help="Serve the search to workers at HOST:PORT (runs no trial).")
@click.option("--worker", metavar="HOST:PORT", help="Run trials for the chief at HOST:PORT.")
@click.option("--tuner-id", help="This worker's id (reuse it to restart a worker on its unfinished trial).")
@click.option("--cpu-replicas", type=click.IntRange(1), help="Split the CPU into N devices (MirroredStrategy "
              "replicas without GPUs).")
@click.option("--verbose", "keras_verbose", is_flag=True, help="Show Keras' per-epoch lines inside trials.")
@click.option("--list-params", is_flag=True, help="List the tunable hyperparameters and their default ranges.")
@click.option("--json", "as_json", is_flag=True, help="Print the trials as JSON instead of a table.")
def tune(config_file, search, fix, tuner, max_trials, executions_per_trial, objective, max_time, hyperband_factor,
         out, resume_dir, overwrite, chief, worker, tuner_id, cpu_replicas, keras_verbose, list_params, as_json,
         **opts):
    """Search learning rates, unfreeze depth, head and more with Keras Tuner.

    Every trial runs the two-stage recipe; the best run is kept as DIR/best.

    \b
    Examples:
      tfl tune --data folder:photos --tuner hyperband --max-trials 6 --out runs/search
      tfl tune --data folder:photos --search lr=1e-4..1e-2:log --search unfreeze=0,20,40,80 --fix dropout=0.2
      tfl tune --resume runs/search
      tfl tune --data folder:photos --chief chief-host:8000 --out runs/search     # then, on each worker:
      tfl tune --data folder:photos --worker chief-host:8000 --out runs/search
    """
    if list_params:
        _list_params()
        return
    from tfl.tuning import distributed as _distributed
    from tfl.tuning import space as _search_space

    searched = _search_space.parse_assignments(search, "--search")
    fixed = _search_space.parse_assignments(fix, "--fix")
    _search_space.parse_duration(max_time)
    role = _distributed.configure(chief, worker, tuner_id)
    cfg = None
    if resume_dir:
        out = resume_dir
    else:
        base = None
        if config_file:
            base = read_config_file(config_file)
        cfg = build_config(base, **opts)
        if not opts.get("data") and not config_file:
            fail("--data is required (folder:PATH or tfds:NAME), or --resume DIR")
        out = out or os.path.join("runs", f"tune-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    if role != "worker":  # a folder another search writes is refused at once, before TensorFlow loads
        from tfl.runs import FolderLock

        FolderLock.check(out, "search folder")
    if cpu_replicas:
        from tfl.training.strategy import split_cpu

        split_cpu(cpu_replicas)
    quiet_tf()
    from tfl.tuning.search import format_trials
    from tfl.tuning.search import tune as run_search

    result = run_search(cfg, out, search=searched, fix=fixed, tuner=tuner, max_trials=max_trials,
                        executions_per_trial=executions_per_trial, objective=objective, max_time=max_time,
                        hyperband_factor=hyperband_factor, resume=bool(resume_dir), overwrite=overwrite,
                        verbose=2 if keras_verbose else 0)
    if role == "worker":
        click.echo(f"worker {os.environ.get(_distributed.TUNER_ID)}: ran {len(result.trials)} trial(s): "
                   + ", ".join(t["trial_id"] for t in result.trials))
        return
    if as_json:
        echo_json(result.trials)
        return
    click.echo(format_trials(result.trials, result.objective))
    if result.stopped_by_time:
        click.echo("search stopped by --max-time")
    if result.best_trial_id is None:
        click.echo(f"no trial completed; search folder: {out}")
        return
    click.echo(f"best: trial {result.best_trial_id}  {result.objective} {result.best_score:.4f}")
    click.echo(f"best hyperparameters: {os.path.join(out, 'best_hyperparameters.json')}")
    click.echo(f"best run: {result.best_run_dir or '(on its worker; see best_config.json)'}")
