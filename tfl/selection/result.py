"""What a pick measured and recommends: one `Candidate` per backbone, the `PickResult`, and its table."""

from __future__ import annotations

import dataclasses
import typing


@dataclasses.dataclass
class Candidate:
    """One backbone of a pick and what was measured on it.

    Args:
        name: registry name.
        image_size: the input side it was scored at.
        status: `scored`, `skipped` (no weights, no time, too small an
            image), `over_latency` or `over_params` (outside the constraints:
            measured, not scored).
        reason: why it was not scored.
        params: backbone parameters.
        weights_mb: size of its ImageNet weights file (MB), when local.
        batch1_ms: latency of one image per call (ms): its preprocessing, backbone and pooling.
        batch_ms: time per image at `batch_size` images per call (ms).
        engine: what ran its feature pass and latency timings (`litert` or
            `keras`).
        accuracy: linear-probe accuracy on the validation split.
        stderr: its standard error.
        loo_accuracy: the probe's leave-one-out accuracy on the training
            features (at its chosen L2).
        pooled: `loo_accuracy` and `accuracy` pooled over all the images
            scored (training and validation): the estimate with the smaller
            standard error, `pooled_stderr`.
        l2: the probe's L2 penalty (chosen by leave-one-out accuracy on train).
        feature_seconds: time of its feature pass (0 when reused).
        seconds: time spent on it in all.
        pareto: on the accuracy/latency Pareto front of the scored candidates.
        rank: 1 for the best probe accuracy (scored candidates only).
    """

    name: str
    image_size: int
    status: str = "scored"
    reason: str = ""
    params: typing.Optional[int] = None
    weights_mb: typing.Optional[float] = None
    batch1_ms: typing.Optional[float] = None
    batch_ms: typing.Optional[float] = None
    batch_size: typing.Optional[int] = None
    engine: typing.Optional[str] = None
    accuracy: typing.Optional[float] = None
    stderr: typing.Optional[float] = None
    loo_accuracy: typing.Optional[float] = None
    pooled: typing.Optional[float] = None
    pooled_stderr: typing.Optional[float] = None
    l2: typing.Optional[float] = None
    feature_seconds: typing.Optional[float] = None
    seconds: float = 0.0
    pareto: bool = False
    rank: typing.Optional[int] = None

    def skip_line(self) -> str:
        return f"skipped {self.name}: {self.reason}"


@dataclasses.dataclass
class PickResult:
    """What `pick` returns (and `pick.json` holds).

    Args:
        chosen: the recommended backbone (None when none was scored).
        why: one line: why it won, by the rule.
        command: the command that trains it.
        candidates: every candidate, scored ones best first, then the others.
        rule: the recommendation rule in words.
        source: the data source.
        num_train, num_val: images the probes were trained and scored on.
        subsampled: the data was larger and a class-balanced subsample was used.
        constraints: the constraints given (`max_latency_ms`, `max_params`, `budget_seconds`).
        seconds: time of the whole pick.
        out_dir: the folder with `pick.json`, `pick.png` and `index.html` (None: not written).
        features: the chosen backbone's `FeatureCache` (not serialised).
    """

    chosen: typing.Optional[str]
    why: str
    command: str
    candidates: typing.List[Candidate]
    rule: str
    source: str
    num_train: int
    num_val: int
    subsampled: bool
    constraints: dict
    seconds: float
    image_size: typing.Optional[int] = None
    out_dir: typing.Optional[str] = None
    features: typing.Any = dataclasses.field(default=None, repr=False)

    @property
    def scored(self) -> typing.List[Candidate]:
        return [c for c in self.candidates if c.status == "scored"]

    def get(self, name: str) -> Candidate:
        return next(c for c in self.candidates if c.name == name)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "features"}
        d["candidates"] = [dataclasses.asdict(c) for c in self.candidates]
        d["split"] = "val"
        return d

    def table(self, skipped: bool = True) -> str:
        """The ranking as the terminal shows it: scored candidates best first, then one line per other.

        Args:
            skipped: also the one line of each candidate skipped or over
                `max_params` (`tfl pick` leaves them out: its log said them
                as they happened).
        """
        head = (f"{'rank':>4}  {'backbone':<20} {'size':>4}  {'probe acc':>9} {'± se':>6} {'loo+val':>7}  "
                f"{'batch-1 ms':>10} {'ms/img':>7}  {'params':>7} {'file MB':>7}  {'s':>5}")
        lines = [head]
        for c in self.scored:
            mark = "*" if c.name == self.chosen else " "
            lines.append(f"{c.rank:>3}{mark}  {c.name:<20} {c.image_size:>4}  {c.accuracy:>9.4f} {c.stderr:>6.3f} "
                         f"{_acc(c.pooled):>7}  "
                         f"{c.batch1_ms:>10.1f} {c.batch_ms:>7.2f}  {_millions(c.params):>7} "
                         f"{_mb(c.weights_mb):>7}  {c.seconds:>5.0f}")
        for c in self.candidates:
            if c.status == "over_latency":
                lines.append(f"   -  {c.name:<20} {c.image_size:>4}  {'':>9} {'':>6} {'':>7}  {c.batch1_ms:>10.1f} "
                             f"{'-':>7}  {_millions(c.params):>7} {_mb(c.weights_mb):>7}  "
                             f"{c.seconds:>5.0f}  over --max-latency-ms")
        if skipped:
            lines += [c.skip_line() for c in self.candidates if c.status in ("skipped", "over_params")]
        data = f"{self.num_train} train / {self.num_val} val images" + (" (class-balanced subsample)"
                                                                          if self.subsampled else "")
        ran = sorted({_ENGINES.get(c.engine, c.engine) for c in self.candidates if c.engine})
        timed = f"; passes and latency through {' and '.join(ran)}" if ran else ""
        lines.append(f"scored on {self.source}: {data}; probe accuracy on the validation split (loo+val: its "
                     f"leave-one-out accuracy on train pooled with it){timed}; "
                     f"{self.seconds:.0f}s in all")
        if self.chosen:
            lines.append(f"recommended: {self.why}")
            lines.append(f"train it: {self.command}")
        return "\n".join(lines)


_ENGINES = {"litert": "LiteRT (XNNPACK)", "keras": "TensorFlow"}


def _acc(x) -> str:
    return "?" if x is None else f"{x:.4f}"


def _millions(n) -> str:
    return "?" if n is None else f"{n / 1e6:.2f}M"


def _mb(x) -> str:
    return "?" if x is None else f"{x:.1f}"
