"""The recipes in recipes/: their help, their configuration layering, the index, and real runs."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from helpers import REPO

RECIPES = os.path.join(REPO, "recipes")
NAMES = ["tf_flowers", "cats_vs_dogs", "beans", "oxford_iiit_pet", "oxford_flowers102", "caltech101",
         "eurosat", "food101", "folder"]


def _load(name):
    """Imports recipes/<name>.py as its own module (its `import _recipe` finds recipes/)."""
    if RECIPES not in sys.path:
        sys.path.insert(0, RECIPES)
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", os.path.join(RECIPES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _script(name, *args, timeout=600):
    return subprocess.run([sys.executable, os.path.join(RECIPES, f"{name}.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_the_recipe_set_is_complete():
    scripts = {f[:-3] for f in os.listdir(RECIPES) if f.endswith(".py") and not f.startswith("_")}
    assert scripts - {"quickstart"} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_recipe_help_names_its_choices_and_source(name):
    module = _load(name)
    recipe = module.RECIPE
    result = CliRunner().invoke(module.main, ["--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    text = result.output
    for part in ("Backbone:", "Schedule:", "Expected:", "Why:", "--data SOURCE", "--fine-tune-epochs",
                 "--print-config", "Recipe defaults:"):
        assert part in text, f"{name} --help lacks {part}"
    for value in (recipe.backbone, recipe.data, recipe.image_size and f"{recipe.image_size} px"):
        if value:
            assert str(value) in text, f"{name} --help does not name {value}"
    assert recipe.expected and recipe.source
    if recipe.data:
        assert re.search(r"https://|arXiv", module.__doc__), f"{name} cites no source"


def test_recipes_run_as_scripts():
    proc = _script("beans", "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "efficientnet_b0" in proc.stdout and "https://huggingface.co/blog/fine-tune-vit" in proc.stdout


def test_options_override_the_recipe_which_overrides_tfl_defaults():
    module = _load("tf_flowers")
    result = CliRunner().invoke(module.main, ["--print-config", "--backbone", "mobilenet_025", "--epochs", "2",
                                              "--weights", "none", "--data", "folder:/photos"])
    assert result.exit_code == 0, result.output
    cfg = json.loads(result.output)
    assert cfg["model"]["backbone"] == "mobilenet_025" and cfg["model"]["weights"] is None  # options
    assert cfg["data"]["source"] == "folder:/photos" and cfg["stage1"]["epochs"] == 2
    assert cfg["model"]["image_size"] == 224 and cfg["stage2"]["epochs"] == 10  # the recipe's
    assert cfg["stage2"]["unfreeze"] == "all"
    assert cfg["data"]["batch_size"] == 32  # tfl's default
    default = json.loads(CliRunner().invoke(module.main, ["--print-config"]).output)
    assert default["data"]["source"] == "tfds:tf_flowers" and default["model"]["backbone"] == "mobilenet_v2_035"


def test_folder_recipe_needs_data():
    result = CliRunner().invoke(_load("folder").main, ["--print-config"])
    assert result.exit_code == 2 and "--data is required" in result.output


def test_readme_index_matches_the_recipes():
    from tfl.config import TrainConfig

    with open(os.path.join(RECIPES, "README.md"), encoding="utf-8") as f:
        rows = [line for line in f if line.startswith("| [")]
    by_name = {re.match(r"\| \[`?([\w.]+?)(?:\.py)?`?\]", row).group(1): row for row in rows}
    assert set(by_name) == set(NAMES)
    for name in NAMES:
        recipe = _load(name).RECIPE
        cells = [c.strip() for c in by_name[name].split("|")[1:-1]]
        assert (recipe.backbone or TrainConfig().model.backbone) in cells[2], name
        assert str(recipe.image_size or 224) in cells[3], name


def _small_copy(src, dst, per_class_train=40, per_class_val=20):
    """A smaller copy of a train/val class-folder dataset (the shared data is read-only)."""
    for split, n in (("train", per_class_train), ("val", per_class_val)):
        for cls in sorted(os.listdir(os.path.join(src, split))):
            os.makedirs(os.path.join(dst, split, cls))
            for f in sorted(os.listdir(os.path.join(src, split, cls)))[:n]:
                shutil.copy(os.path.join(src, split, cls, f), os.path.join(dst, split, cls, f))


def test_folder_recipe_trains_a_local_copy_end_to_end(hymenoptera, tmp_path):
    data, out = tmp_path / "ants_bees", tmp_path / "run"
    _small_copy(hymenoptera, data)
    proc = _script("folder", "--data", f"folder:{data}", "--epochs", "1", "--fine-tune-epochs", "1",
                   "--image-size", "96", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"kept stage [12]: val_accuracy 0\.\d{4}", proc.stdout)
    assert f"report: {out / 'report' / 'index.html'}" in proc.stdout
    with open(out / "config.json", encoding="utf-8") as f:
        cfg = json.load(f)
    assert cfg["data"]["source"] == f"folder:{data}" and cfg["model"]["image_size"] == 96
    with open(out / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    assert metrics["num_train"] == 80 and metrics["num_val"] == 40 and metrics["stage2"]["epochs"] == 1
    assert os.path.isfile(out / "model.keras") and os.path.isfile(out / "report" / "confusion_matrix.png")


def test_tfds_recipe_runs_on_the_offline_builder(tmp_path):
    out = tmp_path / "run"
    # In this process (the folder recipe's test covers the script as a subprocess): the recipe's own
    # backbone, mobilenet_v2_035, with its real ImageNet weights (../shared); only the run is checked, not
    # learning. Stage 2 is skipped: tracing a fully unfrozen MobileNetV2 costs a minute on 2 cores, and the
    # folder recipe's test already runs a stage 2.
    result = CliRunner().invoke(_load("tf_flowers").main, [
        "--data", "tfds:tfl_shapes/small", "--data-dir", str(tmp_path / "tfds"),
        "--image-size", "64", "--epochs", "1", "--fine-tune-epochs", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "expected: 93.6% top-1" in result.output
    with open(out / "config.json", encoding="utf-8") as f:
        cfg = json.load(f)
    assert cfg["model"]["backbone"] == "mobilenet_v2_035" and cfg["stage2"]["unfreeze"] == "all"
    with open(out / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    assert (metrics["num_train"], metrics["num_val"]) == (160, 48) and metrics["best_stage"] == 1
    assert os.path.isfile(out / "report" / "index.html")
    with open(out / "class_names.json", encoding="utf-8") as f:
        assert json.load(f) == ["circle", "square", "triangle", "star"]
