"""The `tfl` command line, run for real in subprocesses."""

import json
import os
import subprocess
import sys
import time

from helpers import REPO, run_tfl


def test_help_is_fast_and_does_not_import_tensorflow():
    code = "import sys, tfl.cli; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    t = time.time()
    out = run_tfl("--help").stdout
    assert time.time() - t < 5
    for command in ("train", "evaluate", "predict", "info", "backbones"):
        assert command in out


def test_backbones_lists_at_least_30():
    out = run_tfl("backbones").stdout
    lines = [line for line in out.splitlines() if line.startswith(("mobilenet", "efficientnet", "resnet"))]
    assert len(out.strip().splitlines()) >= 32
    assert any(line.startswith("mobilenet_025 ") and "local" in line for line in lines)
    rows = json.loads(run_tfl("backbones", "--json").stdout)
    assert len(rows) >= 30 and {"name", "params", "default_size", "blocks", "imagenet_local"} <= set(rows[0])


def test_train_predict_evaluate_info_on_tfds_data(tmp_path):
    data_dir = str(tmp_path / "tfds")
    run = str(tmp_path / "run")
    proc = run_tfl("train", "--data", "tfds:tfl_shapes/small", "--data-dir", data_dir, "--weights", "none",
                   "--image-size", "32", "--epochs", "2", "--fine-tune-epochs", "1", "--out", run)
    assert "stage 1: val_accuracy" in proc.stdout and f"run folder: {run}" in proc.stdout
    assert os.path.exists(os.path.join(run, "model.keras"))
    info = json.loads(run_tfl("info", run, "--json").stdout)
    assert info["class_names"] == ["circle", "square", "triangle", "star"]
    assert info["state"]["finished"] is True
    again = run_tfl("train", "--data", "tfds:tfl_shapes/small", "--out", run, check=False)
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr


def test_predict_and_evaluate_a_real_run(trained_run, hymenoptera):
    val_bee = os.path.join(hymenoptera, "val", "bees")
    image = os.path.join(val_bee, sorted(os.listdir(val_bee))[0])
    out = run_tfl("predict", trained_run.run_dir, image).stdout.strip().split("\t")
    assert out[0] == image and out[1] in ("ants", "bees") and 0.5 <= float(out[2]) <= 1.0
    results = json.loads(run_tfl("predict", trained_run.run_dir, os.path.join(hymenoptera, "val"), "--json").stdout)
    assert len(results) == 153 and {"path", "label", "probability"} <= set(results[0])
    correct = sum(r["label"] == os.path.basename(os.path.dirname(r["path"])) for r in results)
    metrics = json.loads(run_tfl("evaluate", trained_run.run_dir, "--json").stdout)
    assert metrics["num_images"] == 153
    assert abs(metrics["accuracy"] - correct / 153) < 1e-9
    assert abs(metrics["accuracy"] - trained_run.val_accuracy) < 0.01
    assert sum(map(sum, metrics["confusion_matrix"])) == 153
    text = run_tfl("evaluate", trained_run.run_dir).stdout
    assert "confusion matrix" in text and "precision" in text
    info = run_tfl("info", trained_run.run_dir).stdout  # what each stage trained on, and why
    assert "plan:       stage 1 on features, 8 copies: the head trains on cached pooled features" in info
    assert "plan:       stage 2 on activations" in info


def test_errors_are_one_line_with_exit_codes(tmp_path):
    bad = run_tfl("train", "--data", "folder:/nonexistent/x", "--out", str(tmp_path / "r"), check=False)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("tfl: error:") and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    unknown = run_tfl("train", "--data", "tfds:tfl_shapes/small", "--backbone", "mobilnet_025", "--weights",
                      "none", "--out", str(tmp_path / "r2"), check=False)
    assert unknown.returncode == 2 and "mobilenet_025" in unknown.stderr


# -- help texts: every option explained with its default, every command summarised in full ----------------------
def _commands():
    """(`tfl CMD`, command, its click context) for the group and each of its commands."""
    from tfl.cli import main

    root = main.make_context("tfl", [], resilient_parsing=True)  # with the group's context settings
    yield "tfl", main, root
    for name, command in sorted(main.commands.items()):
        yield f"tfl {name}", command, command.make_context(name, [], parent=root, resilient_parsing=True)


def _options():
    """(where, option, help text as --help prints it, the bracket at its end) of every option but --help/--version."""
    import re

    import click

    for where, command, ctx in _commands():
        for param in command.get_params(ctx):
            if not isinstance(param, click.Option) or (param.is_eager and not param.expose_value):  # --help, --version
                continue
            text = param.get_help_record(ctx)[1]
            bracket = re.search(r"\[([^\[\]]*)\]$", text)
            yield where, param, text, bracket.group(1) if bracket else ""


def test_every_option_has_a_description_and_shows_its_default():
    problems = []
    for where, param, text, bracket in _options():
        name = f"{where} {param.opts[0]}"
        if not (param.help or "").strip():
            problems.append(f"{name}: no description")
        default = [item[len("default: "):] for item in bracket.split("; ") if item.startswith("default: ")]
        if not default and "required" not in bracket:
            problems.append(f"{name}: no default shown (help: {text!r})")
        elif default and default[0].strip() in ("", "None", "()"):
            problems.append(f"{name}: default shown as {default[0]!r}")
        body = text[: len(text) - len(bracket) - 2] if bracket else text
        if "default" in body.lower().replace("default search", ""):
            problems.append(f"{name}: a default typed into the description instead of shown: {body!r}")
    assert not problems, "\n".join(problems)
    assert len({(w, p.name) for w, p, _, _ in _options()}) > 100  # the walk reached every command's options


def _shown_default(where, opt):
    for w, param, _, bracket in _options():
        if w == where and opt in param.opts:
            return next(item[len("default: "):] for item in bracket.split("; ") if item.startswith("default: "))
    raise AssertionError(f"{where} has no option {opt}")


def test_the_defaults_shown_are_the_config_defaults():
    """`tfl train --help` states tfl.config's defaults (an option left out keeps the config's value)."""
    from tfl.config import TrainConfig

    cfg = TrainConfig()
    expected = {"--backbone": cfg.model.backbone, "--weights": cfg.model.weights, "--epochs": cfg.stage1.epochs,
                "--fine-tune-epochs": cfg.stage2.epochs, "--unfreeze": cfg.stage2.unfreeze,
                "--lr": cfg.stage1.lr, "--fine-tune-lr": cfg.stage2.lr, "--optimizer": cfg.stage1.optimizer,
                "--fine-tune-optimizer": cfg.stage2.optimizer, "--schedule": cfg.stage2.schedule,
                "--warmup": cfg.stage2.warmup_epochs, "--batch-size": cfg.data.batch_size,
                "--dropout": cfg.model.head.dropout, "--dense": cfg.model.head.dense or None,
                "--pooling": cfg.model.head.pooling, "--augment": cfg.model.augment,
                "--label-smoothing": cfg.label_smoothing, "--class-weight": cfg.class_weight,
                "--multi-label": cfg.model.head.multi_label, "--mixed-precision": cfg.mixed_precision,
                "--xla": cfg.jit_compile, "--strategy": cfg.strategy, "--seed": cfg.seed, "--strict": cfg.data.strict,
                "--gradual-unfreeze": cfg.stage2.gradual, "--patience": cfg.stage1.patience}
    for opt, value in expected.items():
        shown = _shown_default("tfl train", opt).split()[0].rstrip(",")
        if isinstance(value, bool):
            assert shown == ("on" if value else "off"), (opt, shown, value)
        elif value is None:
            assert shown in ("none", "off"), (opt, shown)
        elif isinstance(value, (int, float)):
            assert float(shown) == value, (opt, shown, value)
        else:
            assert shown == value, (opt, shown, value)
    assert "cosine" in _shown_default("tfl train", "--lr")
    assert "warm-up" in _shown_default("tfl train", "--fine-tune-lr")
    assert f"{cfg.data.val_fraction:.0%}" in _shown_default("tfl train", "--val-split")
    from tfl.reports.report import MAX_MISTAKES

    assert _shown_default("tfl report", "--mistakes") == str(MAX_MISTAKES)


def test_data_help_names_both_folder_layouts():
    data = next(text for where, param, text, _ in _options() if where == "tfl train" and "--data" in param.opts)
    for part in ("PATH/train", "directly under PATH", "stratified", "without folder:", "tfds:NAME"):
        assert part in data, part


def test_command_summaries_are_whole_in_tfl_help():
    """Each command's summary in `tfl --help` is a full line, not cut with '...', at 100 and at 80 columns."""
    from tfl.cli import main

    for columns in (100, 80):
        out = run_tfl("--help", env={"COLUMNS": str(columns)}).stdout
        commands = out.split("Commands:\n", 1)[1]
        assert "..." not in commands and "\u2026" not in commands, out
        lines = commands.splitlines()
        assert [line.split()[0] for line in lines] == sorted(main.commands), out  # one line per command
        for line in lines:
            assert len(line) <= columns and len(line.split(None, 1)[1]) > 20, line
