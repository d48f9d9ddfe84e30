"""The tuning search space: hyperparameters of the two-stage recipe, their
default ranges, and the `NAME=SPEC` overrides of `tfl tune --search/--fix`.

A spec is one of::

    LO..HI            a range, sampled uniformly (`1e-4..1e-2`, `16..64`)
    LO..HI:log        a range sampled log-uniformly
    LO..HI:step=S     a range with a step (with `:log`, S is a factor: 1e-5..1e-2:log:step=10)
    A,B,C             a choice (`0,20,40,80`, `adam,sgd`)
    V                 a single value: fixed (same as `--fix NAME=V`)

This module imports neither TensorFlow nor Keras Tuner, so the command line
can check specs before anything heavy loads; `declare` turns a `Param` into a
Keras Tuner hyperparameter.
"""

from __future__ import annotations

import dataclasses
import re
import typing

from tfl.errors import UsageError

Value = typing.Union[int, float, str]


@dataclasses.dataclass(frozen=True)
class Range:
    """A numeric range `lo..hi`, optionally log-sampled and stepped."""

    lo: float
    hi: float
    log: bool = False
    step: typing.Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Choice:
    """A finite list of values (the first is the default)."""

    values: typing.Tuple[Value, ...]


@dataclasses.dataclass(frozen=True)
class Fixed:
    """One value, not searched."""

    value: Value


Domain = typing.Union[Range, Choice, Fixed]


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyperparameter of the recipe.

    Args:
        name: the name used in `--search NAME=...` and in the results.
        kind: `float`, `int` or `str` (the type of its values).
        help: what it changes.
        default: the domain searched when the user says nothing; `None`
            means it keeps the base configuration's value unless searched.
    """

    name: str
    kind: str
    help: str
    default: typing.Optional[Domain] = None


PARAMS: typing.Dict[str, Param] = {p.name: p for p in (
    Param("lr", "float", "stage 1 (head) learning rate", Range(1e-3, 3e-2, log=True)),
    Param("fine_tune_lr", "float", "stage 2 (fine-tuning) peak learning rate", Range(1e-5, 1e-3, log=True)),
    Param("unfreeze", "str", "stage 2: layers or blocks of the backbone to train (0, 20, 0.3, 2blocks, all)",
          Choice(("2blocks", "0", "1blocks", "4blocks"))),
    Param("dense_layers", "int", "hidden dense layers in the head (0: a linear head)", Choice((0, 1))),
    Param("dense_units", "int", "width of the hidden dense layers (when dense_layers > 0)", Choice((256, 128, 512))),
    Param("dropout", "float", "head dropout", Range(0.0, 0.5, step=0.1)),
    Param("optimizer", "str", "optimizer of both stages (adam, adamw, sgd, rmsprop)"),
    Param("fine_tune_optimizer", "str", "optimizer of stage 2 only"),
    Param("weight_decay", "float", "weight decay of both stages"),
    Param("label_smoothing", "float", "label smoothing of the loss"),
    Param("batch_size", "int", "global batch size"),
    Param("backbone", "str", "backbone name (see `tfl backbones`)"),
    Param("image_size", "int", "input side in pixels"),
    Param("epochs", "int", "stage 1 epochs"),
    Param("fine_tune_epochs", "int", "stage 2 epochs (Hyperband sets it per round)"),
    Param("warmup_epochs", "float", "stage 2 warm-up epochs"),
)}

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


def _number(text: str, kind: str, what: str):
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what}: '{text}' is not a number") from None
    if kind == "int":
        if value != int(value):
            raise UsageError(f"{what}: '{text}' is not a whole number")
        return int(value)
    return value


def _value(text: str, kind: str, what: str) -> Value:
    text = text.strip()
    if kind == "str":
        if not text:
            raise UsageError(f"{what}: empty value")
        return text
    return _number(text, kind, what)


def parse_spec(name: str, spec: str, option: str = "--search") -> Domain:
    """Parses the `SPEC` of `NAME=SPEC` into a domain, one clear line on error."""
    param = param_named(name, option)
    what = f"{option} {name}={spec}"
    spec = str(spec).strip()
    if ".." in spec:
        if param.kind == "str":
            raise UsageError(f"{what}: {name} takes a list of values (A,B,C), not a range")
        bounds, *flags = spec.split(":")
        lo_text, _, hi_text = bounds.partition("..")
        lo, hi = _value(lo_text, param.kind, what), _value(hi_text, param.kind, what)
        if not lo < hi:
            raise UsageError(f"{what}: the range must go from low to high")
        log, step = False, None
        for flag in flags:
            flag = flag.strip().lower()
            if flag == "log":
                log = True
            elif flag == "linear":
                log = False
            elif flag.startswith("step="):
                step = _number(flag[5:], param.kind, what)
            else:
                raise UsageError(f"{what}: unknown flag ':{flag}' (use :log, :linear or :step=S)")
        if log and lo <= 0:
            raise UsageError(f"{what}: a :log range must be above 0")
        if step is not None and (step <= 0 or (log and step <= 1)):
            raise UsageError(f"{what}: step must be > 0 (> 1, a factor, with :log)")
        return Range(lo, hi, log, step)
    if "," in spec:
        values = tuple(_value(v, param.kind, what) for v in spec.split(",") if v.strip())
        if len(set(values)) != len(values):
            raise UsageError(f"{what}: repeated values")
        for v in values:
            _check_value(param, v, what)
        return Choice(values)
    value = _value(spec, param.kind, what)
    _check_value(param, value, what)
    return Fixed(value)


def _check_value(param: Param, value: Value, what: str) -> None:
    if param.name in ("optimizer", "fine_tune_optimizer") and value not in OPTIMIZERS:
        raise UsageError(f"{what}: '{value}' is not one of {', '.join(OPTIMIZERS)}")
    if param.name == "backbone":
        from tfl.models import backbones

        try:
            backbones.get_backbone(value)
        except backbones.UnknownBackboneError as e:
            raise UsageError(f"{what}: {e}") from None


def param_named(name: str, option: str = "--search") -> Param:
    if name not in PARAMS:
        import difflib

        close = difflib.get_close_matches(name, list(PARAMS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"{option} {name}: unknown hyperparameter{hint}; tunable: {', '.join(PARAMS)}")
    return PARAMS[name]


def parse_assignments(items: typing.Iterable[str], option: str) -> typing.Dict[str, str]:
    """`["lr=1e-4..1e-2:log", ...]` -> `{"lr": "1e-4..1e-2:log"}` (specs checked)."""
    out = {}
    for item in items:
        name, sep, spec = str(item).partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not spec.strip():
            raise UsageError(f"{option} '{item}' is not NAME=SPEC (e.g. {option} lr=1e-4..1e-2:log)")
        parse_spec(name, spec, option)
        out[name] = spec.strip()
    return out


@dataclasses.dataclass
class SearchSpace:
    """The domains of a search: the defaults with the user's overrides.

    Args:
        search: `{name: spec}` to search (replacing the default range).
        fix: `{name: value}` not to search.

    Examples:
        >>> space = SearchSpace({"unfreeze": "0,20,40,80"}, {"dropout": "0.2"})
        >>> space.domains()["dropout"]
        Fixed(value=0.2)
    """

    search: typing.Dict[str, str] = dataclasses.field(default_factory=dict)
    fix: typing.Dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        both = set(self.search) & set(self.fix)
        if both:
            raise UsageError(f"--search and --fix both name {', '.join(sorted(both))}: choose one")
        # Python callers may give a list of choices ([0, 20, 40]) or a plain value (0.2).
        self.search = {k: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
                       for k, v in self.search.items()}
        self.fix = {k: str(v) for k, v in self.fix.items()}
        self._domains = self.domains()  # checks every spec now

    def domains(self) -> typing.Dict[str, Domain]:
        """`{name: domain}` of every hyperparameter that is searched or fixed, in `PARAMS` order."""
        out = {}
        for name, param in PARAMS.items():
            if name in self.fix:
                domain = parse_spec(name, self.fix[name], "--fix")
                if not isinstance(domain, Fixed):
                    raise UsageError(f"--fix {name}={self.fix[name]}: give one value")
                out[name] = domain
            elif name in self.search:
                out[name] = parse_spec(name, self.search[name], "--search")
            elif param.default is not None:
                out[name] = param.default
        for name in list(self.search) + list(self.fix):
            param_named(name)
        return out

    def to_dict(self) -> dict:
        return {"search": dict(self.search), "fix": dict(self.fix)}


def declare(hp, name: str, domain: Domain):
    """Declares `name` on Keras Tuner's `HyperParameters` `hp`; returns its value."""
    kind = PARAMS[name].kind
    if isinstance(domain, Fixed):
        return hp.Fixed(name, domain.value)
    if isinstance(domain, Choice):
        if kind == "str":
            return hp.Choice(name, list(domain.values), ordered=False)
        # Numeric choices are ordered (Bayesian optimisation uses the order); the first given is the default.
        return hp.Choice(name, sorted(domain.values), ordered=True, default=domain.values[0])
    sampling = "log" if domain.log else "linear"
    if kind == "int":
        step = int(domain.step) if domain.step else (None if domain.log else 1)
        return hp.Int(name, int(domain.lo), int(domain.hi), step=step, sampling=sampling)
    return hp.Float(name, float(domain.lo), float(domain.hi), step=domain.step, sampling=sampling)


def describe(domain: typing.Optional[Domain]) -> str:
    """A short human form of a domain, as a spec."""
    if domain is None:
        return "(not searched)"
    if isinstance(domain, Fixed):
        return f"{domain.value}"
    if isinstance(domain, Choice):
        return ",".join(str(v) for v in domain.values)
    text = f"{domain.lo:g}..{domain.hi:g}" + (":log" if domain.log else "")
    return text + (f":step={domain.step:g}" if domain.step else "")


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if (value == 0 or 1e-3 <= abs(value) < 1e4) else f"{value:.2e}"
    return str(value)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)


def parse_duration(text, option: str = "--max-time") -> typing.Optional[float]:
    """`90`, `90s`, `15m`, `2h` -> seconds."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = _DURATION.match(str(text))
        if not m:
            raise UsageError(f"{option} '{text}' is not a duration such as 900, 900s, 15m or 2h")
        unit = (m.group(2) or "s").lower()[0]
        seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]
    if seconds <= 0:
        raise UsageError(f"{option} must be more than 0 seconds")
    return seconds
