"""The stage plan: what each stage trains on, decided once from config, model and memory budget."""

import pytest

from tfl.config import TrainConfig
from tfl.errors import UsageError


@pytest.fixture(scope="module")
def model_and_blocks():
    from tfl.models import backbones
    from tfl.models import classifier as model_lib

    cfg = TrainConfig()
    cfg.model.backbone, cfg.model.weights, cfg.model.image_size = "mobilenet_025", None, 64
    model = model_lib.build_model(cfg.model, 3, seed=0)
    return model, backbones.block_ids("mobilenet_025", model_lib.backbone_of(model))


def _plan(model_and_blocks, budget=10**9, **changes):
    from tfl.training import plan as plan_lib

    cfg = TrainConfig()
    cfg.model.backbone, cfg.model.image_size = "mobilenet_025", 64  # ImageNet weights in the config; the model
    # itself needs none. `--unfreeze auto` (the default) is resolved by the Trainer before it plans: 2 blocks here.
    cfg.stage2.unfreeze = "2blocks"
    for key, value in changes.items():
        obj, attr = ((cfg.stage2, key[len("stage2_"):]) if key.startswith("stage2_") else
                     (cfg.model, key) if key == "weights" else (cfg, key))
        setattr(obj, attr, value)
    model, block_ids = model_and_blocks
    return plan_lib.make_plan(cfg, model, block_ids, num_train=100, num_val=20, feature_dim=256,
                              memory_budget=budget)


def test_unresolved_auto_depth_is_refused_by_the_plan(model_and_blocks):
    with pytest.raises(UsageError, match="auto is decided by the run"):
        _plan(model_and_blocks, stage2_unfreeze="auto")


def test_default_plan_trains_stage2_on_the_activations_stage1_keeps(model_and_blocks):
    plan1, plan2 = _plan(model_and_blocks)
    assert (plan1.inputs, plan1.copies, plan1.lr.kind, plan1.lr.high) == ("features", 8, "fixed", 3e-3)
    assert plan1.split is not None  # stage 1's pass keeps the cut's activations...
    assert plan2.inputs == "activations" and plan2.split is plan1.split
    assert plan2.kept_copies == 8 and plan2.copies == 8  # ... and stage 2 takes them
    assert plan2.unfrozen and min(plan2.unfrozen) == plan2.split.first
    assert not plan2.uses_layer_groups


@pytest.mark.parametrize("changes, why", [
    ({"stage2_lr": "1e-5..1e-3"}, "layer groups"),
    ({"stage2_gradual": True}, "layer groups"),
    ({"stage2_unfreeze": "all"}, "nothing below"),
])
def test_layer_groups_or_a_cut_at_the_input_train_stage2_on_images(model_and_blocks, changes, why):
    plan1, plan2 = _plan(model_and_blocks, **changes)
    assert plan2.inputs == "images" and plan2.split is None and plan2.copies == 1
    assert why in plan2.reason
    assert plan1.split is None  # nothing to keep for stage 2


def test_a_small_memory_budget_sends_stage2_to_images(model_and_blocks):
    _, fits = _plan(model_and_blocks, budget=10**9)
    _, tight = _plan(model_and_blocks, budget=1)
    assert fits.inputs == "activations" and tight.inputs == "images"
    assert "memory budget" in tight.reason


def test_without_pretrained_weights_one_stage_trains_everything_on_images(model_and_blocks):
    plan1, plan2 = _plan(model_and_blocks, weights=None)
    assert (plan1.inputs, plan1.copies, plan1.split) == ("images", 1, None) and "from scratch" in plan1.reason
    assert plan2.epochs == 0


def test_too_many_blocks_is_a_usage_error_before_training(model_and_blocks):
    with pytest.raises(UsageError, match="has only"):
        _plan(model_and_blocks, stage2_unfreeze="99blocks")
