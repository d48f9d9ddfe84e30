"""The command group, its error handling and small shared helpers."""

from __future__ import annotations

import functools
import json
import os
import sys

import click

from tfl import __version__


def one_line(e: BaseException) -> str:
    """The first line of an error's message (its class name when it has none)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def is_usage(e: BaseException) -> bool:
    """Whether `e` is a usage error (exit status 2) rather than a failure of the run (exit status 1)."""
    from tfl.errors import UsageError

    return isinstance(e, UsageError)


class TflGroup(click.Group):
    """Turns expected failures into one line: exit 2 for usage, 1 otherwise."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.exceptions.UsageError as e:
            # click prints usage + a blank line + the error; tfl answers every bad input in one line.
            if (ctx.obj or {}).get("debug"):
                raise
            where = f"tfl {e.ctx.info_name}" if e.ctx is not None and e.ctx.parent is not None else "tfl"
            click.echo(f"tfl: error: {one_line(e.format_message())} (see {where} --help)", err=True)
            ctx.exit(e.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (see tfl.interrupts); Interrupted says how to resume
            from tfl.errors import Interrupted

            click.echo(f"tfl: interrupted: {e}" if isinstance(e, Interrupted) else "tfl: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # `tfl backbones | head`: the reader left; exit quietly like other Unix tools.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except Exception as e:  # noqa: BLE001 - the whole point is one line instead of a traceback
            if (ctx.obj or {}).get("debug"):
                raise
            from tfl.errors import TflError
            from tfl.runs import is_disk_full

            if is_disk_full(e) and not isinstance(e, TflError):
                where = f" writing {e.filename}" if getattr(e, "filename", None) else ""
                e = TflError(f"disk full{where} ({getattr(e, 'strerror', None) or one_line(e)}): free some space "
                             "and run the command again (a training run continues with --resume)")
            click.echo(f"tfl: error: {one_line(e)}", err=True)
            if not is_usage(e):
                click.echo("tfl: run with --debug for the full traceback", err=True)
            ctx.exit(2 if is_usage(e) else 1)


class TflOption(click.Option):
    """A click option whose help always ends with its default, like `[default: 20]`.

    `default_text` states the default where the option's own `default` is not
    it: options whose `None` means "the config's value" (the text is then
    built from `tfl.config`), or a default computed at run time ("the
    backbone's"). A plain flag that is off unless given shows `off`.
    `required_text` replaces click's `[required]` where an option is needed
    only in some cases.
    """

    def __init__(self, *args, default_text=None, required_text=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_text = default_text
        self.required_text = required_text

    def get_help_extra(self, ctx):
        extra = super().get_help_extra(ctx)
        if self.default_text is not None:
            extra["default"] = str(self.default_text)
        elif self.is_flag and not self.secondary_opts and self.get_default(ctx, call=False) is False:
            extra["default"] = "off"
        if self.required_text:
            extra["required"] = self.required_text
        return extra


# `@option(...)`: `click.option` with `TflOption`, which every tfl command uses.
option = functools.partial(click.option, cls=TflOption)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}


@click.group(cls=TflGroup, context_settings=CONTEXT)
@option("--debug", is_flag=True, envvar="TFL_DEBUG", help="Show full tracebacks and TensorFlow logs.")
@click.version_option(__version__, prog_name="tfl")
@click.pass_context
def main(ctx, debug):
    """Fine-tune Keras image models in two stages: train a head, then unfreeze the top."""
    ctx.obj = {"debug": debug}
    from tfl.errors import use_cli_names

    use_cli_names()  # messages name --flags, not Python keyword arguments
    ctx.call_on_close(lambda: use_cli_names(False))  # back to Python's words when the command ends

    from tfl import interrupts

    # SIGTERM too stops a command cleanly (exit 130), not in the middle of a write; the handlers are put
    # back when the command ends (the command line may run inside a program, as in the tests).
    ctx.call_on_close(interrupts.install())
    if not debug:
        from tfl import _quiet_import

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")
        _quiet_import.install()  # the start-up lines TF_CPP_MIN_LOG_LEVEL does not reach


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


def quiet_tf() -> None:
    """Silences Python-side TensorFlow and absl warnings (after TF import)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


def read_config_file(path: str):
    """The `TrainConfig` in a `--config` file; a bad one (JSON, keys, value types) is one usage line."""
    from tfl.config import TrainConfig
    from tfl.errors import UsageError

    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return TrainConfig.from_json(f.read())
    except ValueError as e:
        raise UsageError(f"--config {path}: {e}") from None


def fail(msg: str) -> None:
    from tfl.errors import UsageError

    raise UsageError(msg)


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()
