"""What every recipe shares: the `tfl train` options and a run over the Python API.

A recipe is a `Recipe` (its dataset, backbone, image size and schedule)
turned into a click command by `Recipe.command(__doc__)`. The command takes
every option of `tfl train` (`--data folder:PATH` to run on a local copy,
`--backbone`, `--epochs`, ...); options given override the recipe's choices,
which override tfl's defaults.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing

import click

from tfl.cli.train import build_config, data_options, train_options


@dataclasses.dataclass
class Recipe:
    """One dataset's fine-tuning recipe.

    Args:
        name: recipe name (also the default run folder `runs/<name>`).
        data: default `--data` source (a tfds name, or `None` when the
            recipe needs `--data`).
        backbone: backbone registry name.
        image_size: input side in pixels.
        epochs: stage 1 epochs (head on the frozen backbone).
        fine_tune_epochs: stage 2 epochs.
        unfreeze: stage 2 unfreeze spec (`None`: tfl's default).
        expected: the published result this recipe should reach, or `""`.
        source: where `expected` comes from.
        extra: other `tfl.fine_tune` shortcuts (`batch_size`, `dropout`, ...).

    Examples:
        >>> r = Recipe("beans", "tfds:beans", "efficientnet_b0", 224, 10, 10)
        >>> r.config(epochs=2).stage1.epochs
        2
    """

    name: str
    data: typing.Optional[str]
    backbone: typing.Optional[str]
    image_size: typing.Optional[int]
    epochs: typing.Optional[int]
    fine_tune_epochs: typing.Optional[int]
    unfreeze: typing.Optional[str] = None
    expected: str = ""
    source: str = ""
    extra: dict = dataclasses.field(default_factory=dict)

    def defaults(self) -> dict:
        """The recipe's choices as `tfl.fine_tune` shortcuts (unset ones left out)."""
        choices = dict(data=self.data, backbone=self.backbone, image_size=self.image_size, epochs=self.epochs,
                       fine_tune_epochs=self.fine_tune_epochs, unfreeze=self.unfreeze, **self.extra)
        return {k: v for k, v in choices.items() if v is not None}

    def config(self, **opts):
        """The `TrainConfig` of this recipe with command-line options `opts` applied over it."""
        from tfl.config import TrainConfig, apply_overrides

        return build_config(apply_overrides(TrainConfig(), **self.defaults()), **opts)

    def command(self, doc: str) -> click.Command:
        """The recipe's click command; `doc` (the script's docstring) is its help."""
        shown = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in self.defaults().items())

        @click.command(cls=_OneLineErrors, help=doc, epilog=f"\b\nRecipe defaults:\n  {shown}",
                       context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
        @data_options
        @train_options
        @click.option("--out", default=os.path.join("runs", self.name), show_default=True,
                      type=click.Path(file_okay=False), help="Run folder.")
        @click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
        @click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
        @click.option("--print-config", is_flag=True, help="Print the configuration as JSON and exit.")
        def main(out, overwrite, resume, print_config, **opts):
            cfg = self.config(**opts)
            if self.data is None and not opts.get("data"):
                raise click.UsageError("--data is required: folder:PATH (class folders) or tfds:NAME")
            if print_config:
                click.echo(cfg.to_json())
                return
            self.run(cfg, out, overwrite=overwrite, resume=resume)

        return main

    def run(self, cfg, out: str, overwrite: bool = False, resume: bool = False):
        """Trains `cfg` into `out` and prints both stages' results next to the expected one."""
        import tfl
        from tfl.cli import quiet_tf
        from tfl.errors import use_cli_names

        tfl.quiet_tensorflow()  # TensorFlow's start-up lines
        quiet_tf()
        use_cli_names()  # a recipe is a command: its messages name --flags
        try:
            result = tfl.fine_tune(cfg, out=out, overwrite=overwrite, resume=resume)
        finally:
            use_cli_names(False)  # the recipe may run inside a Python program (its tests do)
        for stage, m in (("stage 1", result.stage1), ("stage 2", result.stage2)):
            if m:
                click.echo(f"{stage}: val_accuracy {m.get('val_accuracy', float('nan')):.4f} "
                           f"(best epoch {m['best_epoch']} of {m['epochs']})")
            else:
                click.echo(f"{stage}: skipped")
        click.echo(f"kept stage {result.best_stage}: val_accuracy {result.val_accuracy:.4f}")
        if self.expected:
            click.echo(f"expected: {self.expected} ({self.source})")
        click.echo(f"report: {os.path.join(result.run_dir, 'report', 'index.html')}")
        click.echo(f"run folder: {result.run_dir}")
        return result


class _OneLineErrors(click.Command):
    """Expected failures as one line, as `tfl` prints them: exit 2 for usage, 1 otherwise."""

    def invoke(self, ctx):
        from tfl.cli import is_usage, one_line

        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # noqa: BLE001 - one line instead of a traceback, like `tfl`
            if os.environ.get("TFL_DEBUG"):
                raise
            click.echo(f"{os.path.basename(sys.argv[0])}: error: {one_line(e)}", err=True)
            ctx.exit(2 if is_usage(e) else 1)
