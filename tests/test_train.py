"""The real two-stage recipe on real photos with real ImageNet weights."""

import numpy as np

from tfl.models import backbones
from tfl.models import classifier as model_lib
from tfl.runs import RunFolder


def test_two_stage_run_reaches_the_accuracy_goal(trained_run):
    assert trained_run.class_names == ["ants", "bees"]
    assert trained_run.stage1["val_accuracy"] > 0.75
    assert trained_run.val_accuracy >= 0.83
    # The better stage is kept, never a worse one.
    assert trained_run.val_accuracy >= trained_run.stage1["val_accuracy"]


def test_run_folder_holds_everything_to_reuse_the_run(trained_run):
    run = RunFolder(trained_run.run_dir)
    cfg = run.read_config()
    assert cfg.model.backbone == "mobilenet_025" and cfg.model.weights == "imagenet"
    assert run.read_class_names() == ["ants", "bees"]
    history = run.read_history()
    assert len(history["stage1"]["val_accuracy"]) == cfg.stage1.epochs
    assert len(history["stage2"]["val_accuracy"]) == cfg.stage2.epochs
    metrics = run.read_metrics()
    assert metrics["best_stage"] in (1, 2) and metrics["num_train"] == 244
    assert run.read_state()["finished"] is True
    assert run.is_trained()


def test_stage2_changed_exactly_the_unfrozen_layers_and_no_batchnorm_statistics(trained_run):
    """Compare the trained backbone with a fresh copy of the ImageNet backbone."""
    run = RunFolder(trained_run.run_dir)
    unfrozen = set(run.read_state()["stage2"]["unfrozen_layers"])
    assert unfrozen
    trained = model_lib.backbone_of(trained_run.model)
    fresh = backbones.build_backbone("mobilenet_025", 224, "imagenet")
    changed, bn_layers = set(), 0
    for a, b in zip(trained.layers, fresh.layers):
        if type(a).__name__ == "InputLayer":  # Keras numbers input names per session
            continue
        assert a.name == b.name
        if model_lib.is_batchnorm(a):
            bn_layers += 1
            for wa, wb in zip(a.weights, b.weights):  # gamma, beta, moving mean, moving variance
                np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=f"{a.name}/{wa.name} changed")
        if any(not np.array_equal(wa.numpy(), wb.numpy()) for wa, wb in zip(a.weights, b.weights)):
            changed.add(a.name)
    assert bn_layers > 10
    if trained_run.best_stage == 2:
        assert changed == unfrozen
    else:
        assert changed == set()
