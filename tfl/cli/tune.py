"""`tfl tune`: Keras Tuner search over the two-stage recipe."""

from __future__ import annotations

import datetime
import os

import click

from tfl.cli._common import echo_json, fail, main, option, quiet_tf, read_config_file
from tfl.cli.train import build_config, data_options, train_options
from tfl.config import MONITORS
from tfl.tuning.space import PARAMS


def _list_params() -> None:
    from tfl.tuning import space as _search_space

    click.echo("Tunable hyperparameters (default search; others keep the base config's value):")
    for p in _search_space.PARAMS.values():
        click.echo(f"  {p.name:<20} {_search_space.describe(p.default):<24} {p.help}")
    click.echo("\nSPEC: LO..HI[:log][:step=S] (range), A,B,C (choice) or V (fixed); "
               "e.g. --search lr=1e-4..1e-2:log --search unfreeze=0,20,40,80 --fix dropout=0.2")


@main.command(short_help="Search the two-stage recipe's hyperparameters (Keras Tuner).")
@data_options
@train_options
@option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default_text="none (tfl's defaults)",
        help="Base config.json of every trial (e.g. of an earlier run); options given override it.")
@option("--search", "search", multiple=True, metavar="NAME=SPEC",
        default_text=", ".join(n for n, p in PARAMS.items() if p.default is not None) + " (see --list-params)",
        help="Search NAME over SPEC: LO..HI[:log][:step=S] or A,B,C (repeatable).")
@option("--fix", "fix", multiple=True, metavar="NAME=VALUE", default_text="none",
        help="Do not search NAME; use VALUE (repeatable).")
@option("--tuner", type=click.Choice(["random", "grid", "bayesian", "hyperband"]), default="random",
              help="Search algorithm (Hyperband spends stage-2 epochs up to --fine-tune-epochs).")
@option("--max-trials", type=click.IntRange(1), default_text="10 (a resumed search: its own)",
        help="Most trials (Hyperband may end sooner).")
@option("--executions-per-trial", type=click.IntRange(1), default=1,
              help="Runs per trial (different seeds), scores averaged.")
@option("--objective", type=click.Choice(list(MONITORS)), default="val_accuracy",
        help="Validation metric of the model each trial keeps after stage 2; val_macro_f1, val_micro_f1 and "
             "val_map need --multi-label (scored at the thresholds each trial chooses on validation).")
@option("--max-time", metavar="DURATION", default_text="no limit",
        help="Time budget (900, 900s, 15m, 2h): then the trial in progress is scored as it stands and the "
             "search ends.")
@option("--hyperband-factor", type=click.IntRange(2), default=3,
        help="Hyperband's reduction factor: each round keeps the best 1/FACTOR of its trials and trains them "
             "FACTOR times longer.")
@option("--out", type=click.Path(file_okay=False), default_text="runs/tune-<date>-<time>", help="Search folder.")
@option("--resume", "resume_dir", type=click.Path(file_okay=False), metavar="DIR", default_text="none (a new search)",
        help="Continue the interrupted search in DIR (completed trials are kept).")
@option("--overwrite", is_flag=True, help="Replace an existing search folder.")
@option("--chief", metavar="HOST:PORT", default_text="none (a search on this machine)",
        help="Serve the search to workers at HOST:PORT (runs no trial).")
@option("--worker", metavar="HOST:PORT", default_text="none (a search on this machine)",
        help="Run trials for the chief at HOST:PORT.")
@option("--tuner-id", default_text="$KERASTUNER_TUNER_ID, else worker-<host>-<pid>",
        help="This worker's id (reuse it to restart a worker on its unfinished trial).")
@option("--cpu-replicas", type=click.IntRange(1), default_text="none (the CPU is one device)",
        help="Split the CPU into N devices (MirroredStrategy replicas without GPUs).")
@option("--verbose", "keras_verbose", is_flag=True, help="Show Keras' per-epoch lines inside trials.")
@option("--list-params", is_flag=True, help="List the tunable hyperparameters and the ranges searched.")
@option("--json", "as_json", is_flag=True, help="Print the trials as JSON instead of a table.")
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
