"""tfl.tuning.space: `--search`/`--fix` specs, the default search space, durations and value formatting."""

import pytest

from tfl.errors import UsageError
from tfl.tuning import space
from tfl.tuning.space import Choice, Fixed, Range, SearchSpace, format_value, parse_duration, parse_spec


@pytest.mark.parametrize("name,spec,domain", [
    ("lr", "1e-4..1e-2", Range(1e-4, 1e-2)),
    ("lr", "1e-4..1e-2:log", Range(1e-4, 1e-2, log=True)),
    ("lr", " 1e-4..1e-2:LOG ", Range(1e-4, 1e-2, log=True)),
    ("lr", "1e-4..1e-2:log:linear", Range(1e-4, 1e-2, log=False)),
    ("dropout", "0.0..0.5:step=0.1", Range(0.0, 0.5, step=0.1)),
    ("lr", "1e-5..1e-2:log:step=10", Range(1e-5, 1e-2, log=True, step=10.0)),
    ("batch_size", "16..64:step=16", Range(16, 64, step=16)),
    ("unfreeze", "0,20,40", Choice(("0", "20", "40"))),
    ("unfreeze", "2blocks, all", Choice(("2blocks", "all"))),
    ("dense_units", "128,256,", Choice((128, 256))),
    ("optimizer", "adam,sgd", Choice(("adam", "sgd"))),
    ("optimizer", "adam", Fixed("adam")),
    ("dropout", "0.2", Fixed(0.2)),
    ("batch_size", "32", Fixed(32)),
    ("backbone", "mobilenet_025", Fixed("mobilenet_025")),
])
def test_spec_forms(name, spec, domain):
    parsed = parse_spec(name, spec)
    assert parsed == domain
    assert type(parsed) is type(domain)


def test_int_parameters_get_ints():
    domain = parse_spec("batch_size", "16..64:step=16")
    assert all(type(v) is int for v in (domain.lo, domain.hi, domain.step))
    assert type(parse_spec("dense_units", "128,256").values[0]) is int
    assert type(parse_spec("dropout", "0..1").lo) is float


TUNABLE = ("lr, fine_tune_lr, unfreeze, dense_layers, dense_units, dropout, optimizer, fine_tune_optimizer, "
           "weight_decay, label_smoothing, batch_size, backbone, image_size, epochs, fine_tune_epochs, warmup_epochs")


@pytest.mark.parametrize("name,spec,message", [
    ("lrr", "1", f"--search lrr: unknown hyperparameter (did you mean lr?); tunable: {TUNABLE}"),
    ("zzzz", "1", f"--search zzzz: unknown hyperparameter; tunable: {TUNABLE}"),
    ("optimizer", "a..b", "--search optimizer=a..b: optimizer takes a list of values (A,B,C), not a range"),
    ("lr", "1e-2..1e-4", "--search lr=1e-2..1e-4: the range must go from low to high"),
    ("lr", "1..2:cubic", "--search lr=1..2:cubic: unknown flag ':cubic' (use :log, :linear or :step=S)"),
    ("dropout", "0..0.5:log", "--search dropout=0..0.5:log: a :log range must be above 0"),
    ("lr", "1e-5..1e-2:log:step=0.5",
     "--search lr=1e-5..1e-2:log:step=0.5: step must be > 0 (> 1, a factor, with :log)"),
    ("dropout", "0..1:step=0", "--search dropout=0..1:step=0: step must be > 0 (> 1, a factor, with :log)"),
    ("batch_size", "16.5..64", "--search batch_size=16.5..64: '16.5' is not a whole number"),
    ("lr", "x..1", "--search lr=x..1: 'x' is not a number"),
    ("dense_units", "128,128", "--search dense_units=128,128: repeated values"),
    ("optimizer", "adam,adagrad", "--search optimizer=adam,adagrad: 'adagrad' is not one of adam, adamw, sgd, rmsprop"),
    ("optimizer", " ", "--search optimizer= : empty value"),
])
def test_bad_specs_are_one_usage_line(name, spec, message):
    with pytest.raises(UsageError) as info:
        parse_spec(name, spec)
    assert str(info.value) == message


def test_an_unknown_backbone_suggests_close_names():
    with pytest.raises(UsageError) as info:
        parse_spec("backbone", "resnet5", "--fix")
    assert str(info.value).startswith("--fix backbone=resnet5: unknown backbone 'resnet5'; did you mean: resnet50")


def test_the_default_space():
    assert SearchSpace().domains() == {
        "lr": Range(1e-3, 3e-2, log=True),
        "fine_tune_lr": Range(1e-5, 1e-3, log=True),
        "unfreeze": Choice(("2blocks", "0", "1blocks", "4blocks")),
        "dense_layers": Choice((0, 1)),
        "dense_units": Choice((256, 128, 512)),
        "dropout": Range(0.0, 0.5, step=0.1),
    }


def test_overrides_replace_defaults_and_add_parameters_in_params_order():
    domains = SearchSpace({"optimizer": "adam,sgd", "unfreeze": [0, 20]}, {"dropout": 0.2, "batch_size": 16}).domains()
    assert domains["unfreeze"] == Choice(("0", "20"))  # a Python list is a choice
    assert domains["dropout"] == Fixed(0.2)
    assert domains["optimizer"] == Choice(("adam", "sgd"))
    assert domains["batch_size"] == Fixed(16)
    assert list(domains) == ["lr", "fine_tune_lr", "unfreeze", "dense_layers", "dense_units", "dropout",
                             "optimizer", "batch_size"]


def test_to_dict_keeps_the_specs_as_text():
    assert SearchSpace({"unfreeze": [0, 20]}, {"dropout": 0.2}).to_dict() == {
        "search": {"unfreeze": "0,20"}, "fix": {"dropout": "0.2"}}


@pytest.mark.parametrize("search,fix,message", [
    ({"dropout": "0.1..0.3"}, {"dropout": "0.2"}, "--search and --fix both name dropout: choose one"),
    ({}, {"dropout": "0.1..0.3"}, "--fix dropout=0.1..0.3: give one value"),
    ({}, {"dropout": "0.1,0.3"}, "--fix dropout=0.1,0.3: give one value"),
    ({"lr": "1e-2..1e-4"}, {}, "--search lr=1e-2..1e-4: the range must go from low to high"),
])
def test_a_bad_space_fails_when_built(search, fix, message):
    with pytest.raises(UsageError) as info:
        SearchSpace(search, fix)
    assert str(info.value) == message


def test_parse_assignments():
    assert space.parse_assignments(["lr=1e-4..1e-2:log", " fine-tune-lr = 1e-5 "], "--search") == {
        "lr": "1e-4..1e-2:log", "fine_tune_lr": "1e-5"}
    for bad in ("lr", "=1", "lr="):
        with pytest.raises(UsageError) as info:
            space.parse_assignments([bad], "--fix")
        assert str(info.value) == f"--fix '{bad}' is not NAME=SPEC (e.g. --fix lr=1e-4..1e-2:log)"


@pytest.mark.parametrize("domain,text", [
    (Range(1e-4, 1e-2, log=True), "0.0001..0.01:log"),
    (Range(0.0, 0.5, step=0.1), "0..0.5:step=0.1"),
    (Choice((0, 20, 40)), "0,20,40"),
    (Fixed("adam"), "adam"),
    (None, "(not searched)"),
])
def test_describe_gives_a_spec_back(domain, text):
    assert space.describe(domain) == text


@pytest.mark.parametrize("value,text", [
    (0.0, "0"),
    (0.5, "0.5"),
    (1e-3, "0.001"),
    (0.0012345, "0.00123"),
    (-0.25, "-0.25"),
    (1e-4, "1.00e-04"),
    (12345.0, "1.23e+04"),
    (3, "3"),
    ("adam", "adam"),
])
def test_format_value(value, text):
    assert format_value(value) == text


@pytest.mark.parametrize("text,seconds", [
    (None, None), ("", None),
    (90, 90.0), (1.5, 1.5), ("90", 90.0), ("90s", 90.0), (" 10 SEC ", 10.0),
    ("15m", 900.0), ("1.5 min", 90.0), ("2h", 7200.0), ("2 hr", 7200.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text,message", [
    ("0", "--max-time must be more than 0 seconds"),
    (0, "--max-time must be more than 0 seconds"),
    (-5, "--max-time must be more than 0 seconds"),
    ("15d", "--max-time '15d' is not a duration such as 900, 900s, 15m or 2h"),
    ("soon", "--max-time 'soon' is not a duration such as 900, 900s, 15m or 2h"),
    ("-5m", "--max-time '-5m' is not a duration such as 900, 900s, 15m or 2h"),
])
def test_bad_durations(text, message):
    with pytest.raises(UsageError) as info:
        parse_duration(text)
    assert str(info.value) == message
