"""tfl.config: the option value types (LearningRate, Unfreeze), is_minimized, JSON, validate, overrides."""

import json

import pytest

from tfl import config as config_lib
from tfl.config import LearningRate, TrainConfig, Unfreeze, is_minimized, parse_lr

FORMS = "a number such as 1e-3, auto, or a range such as 1e-5..1e-3"


# -- LearningRate / parse_lr ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [
    (3e-3, LearningRate("fixed", 3e-3, 3e-3)),
    (1, LearningRate("fixed", 1.0, 1.0)),
    ("1e-3", LearningRate("fixed", 1e-3, 1e-3)),
    (" 5E-4 ", LearningRate("fixed", 5e-4, 5e-4)),
    ("auto", LearningRate("auto", None, None)),
    ("AUTO", LearningRate("auto", None, None)),
    ("1e-5..1e-3", LearningRate("range", 1e-5, 1e-3)),
    (" 1e-5..1e-3 ", LearningRate("range", 1e-5, 1e-3)),
])
def test_learning_rate_forms(value, expected):
    lr = LearningRate.parse(value)
    assert lr == expected
    assert parse_lr(value) == (expected.kind, expected.low, expected.high)


def test_a_fixed_rate_is_a_float_even_from_an_int():
    assert type(LearningRate.parse(1).high) is float


@pytest.mark.parametrize("value,message", [
    (0, "stage2.lr must be > 0, got 0"),
    (-1e-3, "stage2.lr must be > 0, got -0.001"),
    ("0", "stage2.lr must be > 0, got 0.0"),
    (True, f"stage2.lr 'True' is not {FORMS}"),
    ("fast", f"stage2.lr 'fast' is not {FORMS}"),
    ("a..b", f"stage2.lr 'a..b' is not {FORMS}"),
    ("1..2..3", f"stage2.lr '1..2..3' is not {FORMS}"),
    ("1e-3..1e-5", "stage2.lr range '1e-3..1e-5' needs 0 < LOW < HIGH"),
    ("0..1e-3", "stage2.lr range '0..1e-3' needs 0 < LOW < HIGH"),
    ("1e-3..1e-3", "stage2.lr range '1e-3..1e-3' needs 0 < LOW < HIGH"),
])
def test_bad_learning_rates_are_one_line_naming_the_option(value, message):
    with pytest.raises(ValueError) as info:
        LearningRate.parse(value, "stage2.lr")
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_parse_lr_names_lr_by_default():
    with pytest.raises(ValueError, match=r"^lr must be > 0, got -1$"):
        parse_lr(-1)


def test_stage_properties_parse_their_fields():
    stage = config_lib.StageConfig(lr="1e-5..1e-3", unfreeze="30%")
    assert stage.learning_rate == LearningRate("range", 1e-5, 1e-3)
    assert stage.unfreeze_spec == Unfreeze("fraction", fraction=0.3)


# -- Unfreeze ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,expected", [
    ("all", Unfreeze("all")),
    (" ALL ", Unfreeze("all")),
    ("none", Unfreeze("none")),
    ("0", Unfreeze("none")),
    (0, Unfreeze("none")),
    ("", Unfreeze("none")),
    ("20", Unfreeze("layers", count=20)),
    (20, Unfreeze("layers", count=20)),
    ("0.3", Unfreeze("fraction", fraction=0.3)),
    (0.3, Unfreeze("fraction", fraction=0.3)),
    ("30%", Unfreeze("fraction", fraction=0.3)),
    ("100%", Unfreeze("fraction", fraction=1.0)),
    ("2blocks", Unfreeze("blocks", count=2)),
    ("1 block", Unfreeze("blocks", count=1)),
    ("3b", Unfreeze("blocks", count=3)),
])
def test_unfreeze_forms(spec, expected):
    assert Unfreeze.parse(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("-1", "--unfreeze '-1' is not auto, all, none, N layers, a fraction (0.3, 30%) or Nblocks"),
    ("top", "--unfreeze 'top' is not auto, all, none, N layers, a fraction (0.3, 30%) or Nblocks"),
    ("2.5blocks", "--unfreeze '2.5blocks' is not auto, all, none, N layers, a fraction (0.3, 30%) or Nblocks"),
    ("1.5", "--unfreeze 1.5: a fraction must be between 0 and 1"),
    ("150%", "--unfreeze 150%: a fraction must be between 0 and 1"),
])
def test_bad_unfreeze_specs_are_one_line(spec, message):
    with pytest.raises(ValueError) as info:
        Unfreeze.parse(spec)
    assert str(info.value) == message


# Ten layers in four blocks: stem (0), block 1 (1-3), block 2 (4-6), block 3 (7-9).
BLOCKS = [0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


@pytest.mark.parametrize("spec,expected", [
    ("all", list(range(10))),
    ("none", []),
    ("3", [7, 8, 9]),
    ("10", list(range(10))),
    ("0.3", [7, 8, 9]),
    ("30%", [7, 8, 9]),
    ("0.0", []),
    ("1.0", list(range(10))),
    ("1blocks", [7, 8, 9]),
    ("2blocks", [4, 5, 6, 7, 8, 9]),
    ("4blocks", list(range(10))),
])
def test_layer_indices(spec, expected):
    assert Unfreeze.parse(spec).layer_indices(10, BLOCKS) == expected


def test_a_fraction_rounds_to_whole_layers():
    assert Unfreeze.parse("0.3").layer_indices(7, [0] * 7) == [5, 6]  # 0.3 * 7 = 2.1 -> 2 layers


def test_more_layers_than_the_backbone_has():
    with pytest.raises(ValueError) as info:
        Unfreeze.parse("11").layer_indices(10, BLOCKS)
    assert str(info.value) == "--unfreeze 11: the backbone has 10 layers; use 0..10 or 'all'"


def test_more_blocks_than_the_backbone_has():
    with pytest.raises(ValueError) as info:
        Unfreeze.parse("5blocks").layer_indices(10, BLOCKS)
    assert str(info.value) == "--unfreeze 5blocks: the backbone has only 4 blocks"


# -- is_minimized --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric,minimized", [
    ("val_loss", True), ("loss", True), ("val_accuracy", False), ("val_auc", False), ("accuracy", False),
])
def test_is_minimized(metric, minimized):
    assert is_minimized(metric) is minimized


# -- TrainConfig JSON ----------------------------------------------------------------------------------------
def test_json_round_trip_of_every_level():
    cfg = TrainConfig()
    cfg.data.source = "folder:/data/photos"
    cfg.data.val_split = None
    cfg.model.image_size = 160
    cfg.model.head.dense = [128, 32]
    cfg.stage2.lr = "1e-5..1e-3"
    cfg.stage2.patience = 3
    cfg.class_weight = "balanced"
    text = cfg.to_json()
    back = TrainConfig.from_json(text)
    assert back == cfg
    assert isinstance(back.model.head, config_lib.HeadConfig)
    d = json.loads(text)
    assert d["model"]["head"]["dense"] == [128, 32]
    assert d["stage2"]["lr"] == "1e-5..1e-3" and d["stage2"]["patience"] == 3
    assert list(d) == sorted(d)  # sorted keys: config.json diffs cleanly


def test_the_defaults_are_the_measured_recipe():
    cfg = TrainConfig()
    assert (cfg.stage1.epochs, cfg.stage1.lr, cfg.stage1.schedule) == (20, 3e-3, "cosine")
    stage2 = cfg.stage2
    assert (stage2.epochs, stage2.lr, stage2.unfreeze, stage2.warmup_epochs) == (10, 5e-4, "auto", 1.0)
    assert cfg.to_dict()["stage2"]["unfreeze"] == "auto"


@pytest.mark.parametrize("path,key,message", [
    ((), "sead", "unknown TrainConfig keys: sead"),
    (("model",), "bakcbone", "unknown ModelConfig keys: bakcbone"),
    (("model", "head"), "droput", "unknown HeadConfig keys: droput"),
    (("stage2",), "unfreez", "unknown StageConfig keys: unfreez"),
])
def test_unknown_keys_are_named(path, key, message):
    d = TrainConfig().to_dict()
    node = d
    for p in path:
        node = node[p]
    node[key] = 1
    with pytest.raises(ValueError) as info:
        TrainConfig.from_dict(d)
    assert str(info.value) == message


# -- validate ------------------------------------------------------------------------------------------------
def test_the_default_config_is_valid():
    config_lib.validate(TrainConfig())  # raises on failure


@pytest.mark.parametrize("setting,value,message", [
    ("stage1.optimizer", "adagrad", "stage1.optimizer 'adagrad' is not one of adam, adamw, sgd, rmsprop"),
    ("stage2.schedule", "step", "stage2.schedule 'step' is not one of constant, cosine"),
    ("stage2.epochs", -1, "stage2.epochs must be >= 0, got -1"),
    ("stage2.lr", "fast", f"stage2.lr 'fast' is not {FORMS}"),
    ("stage1.lr", 0.0, "stage1.lr must be > 0, got 0.0"),
    ("stage2.unfreeze", "top", "--unfreeze 'top' is not auto, all, none, N layers, a fraction (0.3, 30%) or Nblocks"),
    ("stage1.gradual", True,
     "stage1.gradual: gradual unfreezing is for stage 2 (stage 1 trains the head only)"),
    ("stage1.lr", "1e-5..1e-3",
     "stage1.lr '1e-5..1e-3': a LOW..HIGH range is for stage 2 (--fine-tune-lr); stage 1 trains the head only"),
    ("model.head.pooling", "min", "head pooling 'min' is not avg or max"),
    ("model.head.dropout", 1.0, "dropout must be in [0, 1), got 1.0"),
    ("class_weight", "inverse", "class_weight 'inverse' is not None or 'balanced'"),
    ("data.batch_size", 0, "batch size must be >= 1, got 0"),
    ("data.val_fraction", 1.0, "val_fraction must be in (0, 1), got 1.0"),
])
def test_validate_refuses_in_one_line(setting, value, message):
    cfg = TrainConfig()
    *parents, leaf = setting.split(".")
    obj = cfg
    for p in parents:
        obj = getattr(obj, p)
    setattr(obj, leaf, value)
    with pytest.raises(ValueError) as info:
        config_lib.validate(cfg)
    assert str(info.value) == message


def test_stage1_unfreeze_is_not_checked():
    cfg = TrainConfig()
    cfg.stage1.unfreeze = "top"  # stage 1 never unfreezes: its unfreeze field is unused
    config_lib.validate(cfg)


# -- apply_overrides -----------------------------------------------------------------------------------------
def test_overrides_reach_nested_fields_and_return_a_copy():
    base = TrainConfig()
    cfg = config_lib.apply_overrides(base, data="folder:x", batch_size=8, dropout=0.5, fine_tune_lr="auto",
                                     unfreeze="3blocks", gradual_unfreeze=True, seed=7, monitor="val_loss")
    assert cfg.data.source == "folder:x" and cfg.data.batch_size == 8
    assert cfg.model.head.dropout == 0.5
    assert cfg.stage2.lr == "auto" and cfg.stage2.unfreeze == "3blocks" and cfg.stage2.gradual is True
    assert cfg.seed == 7 and cfg.monitor == "val_loss"
    assert base == TrainConfig()  # the argument is left alone


def test_none_leaves_a_field_alone_and_none_text_sets_none():
    cfg = config_lib.apply_overrides(TrainConfig(), lr=None, epochs=None, weights="None", class_weight="none")
    assert cfg.stage1.lr == TrainConfig().stage1.lr and cfg.stage1.epochs == TrainConfig().stage1.epochs
    assert cfg.model.weights is None and cfg.class_weight is None


@pytest.mark.parametrize("key", ["bogus", "model", "stage2", "head"])
def test_unknown_override_keys(key):
    with pytest.raises(TypeError) as info:
        config_lib.apply_overrides(TrainConfig(), **{key: 1})
    assert str(info.value) == f"unknown option {key!r}"


# -- values outside their types (config.json from elsewhere) --------------------------------------------
@pytest.mark.parametrize("path,value,message", [
    (("stage1", "epochs"), "ten", "stage1.epochs must be an integer, got 'ten'"),
    (("stage1", "epochs"), 3.0, "stage1.epochs must be an integer, got 3.0"),
    (("stage1", "epochs"), True, "stage1.epochs must be an integer, got True"),
    (("data", "strict"), 1, "data.strict must be true or false, got 1"),
    (("model", "weights"), 5, "model.weights must be a string or null, got 5"),
    (("model", "image_size"), "224", "model.image_size must be an integer or null, got '224'"),
    (("model", "head", "dense"), [64, "x"], "model.head.dense must be a list of integers, got [64, 'x']"),
    (("model", "head", "dense"), "64,32", "model.head.dense must be a list of integers, got '64,32'"),
    (("stage2", "lr"), None, "stage2.lr must be a number or a string, got None"),
    (("stage2", "lr"), [1e-3], "stage2.lr must be a number or a string, got [0.001]"),
    (("model", "head"), "linear", "model.head must be a JSON object, got 'linear'"),
    (("label_smoothing",), {"a": 1}, "label_smoothing must be a number, got {'a': 1}"),
])
def test_values_outside_their_types_are_one_line_naming_the_field(path, value, message):
    d = TrainConfig().to_dict()
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError) as info:
        TrainConfig.from_dict(d)
    assert str(info.value) == message


@pytest.mark.parametrize("path,value", [
    (("stage1", "lr"), 1), (("stage1", "lr"), "auto"), (("model", "head", "dropout"), 0),
    (("model", "weights"), None), (("model", "image_size"), None), (("model", "head", "dense"), []),
])
def test_values_inside_their_types_load(path, value):
    d = TrainConfig().to_dict()
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert TrainConfig.from_dict(d).to_dict() == d


def test_bad_json_and_a_non_object_are_one_line():
    with pytest.raises(ValueError, match=r"^not valid JSON \(Expecting"):
        TrainConfig.from_json('{"seed": 1,')
    with pytest.raises(ValueError, match=r"^TrainConfig must be a JSON object, got \[\]"):
        TrainConfig.from_json("[]")


def test_validate_checks_types_of_configs_built_in_python():
    cfg = TrainConfig()
    cfg.stage2.epochs = 2.5
    with pytest.raises(ValueError, match=r"^stage2.epochs must be an integer, got 2.5$"):
        config_lib.validate(cfg)
