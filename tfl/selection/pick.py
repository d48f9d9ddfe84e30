"""`tfl pick`: rank backbones on the user's own data, cheaply, and recommend one.

Each candidate is scored the way stage 1 sees it: its pooled ImageNet
features of the training and validation images (the first, plain copy, no
augmentation), computed once through the `ActivationStore`, and a linear
probe trained on the training features and scored on the validation split
(`tfl.selection.probe`). Its latency is measured on this machine at batch 1
and at a batch, and its parameters and weights file size are read.

The rule (also written into `pick.json`): among the candidates within the
constraints (`max_latency_ms` on batch-1 latency, `max_params`), those tied
with the best count as equals and the fastest of them at batch 1 wins. Tied
means within `TIE` (1 point) or `TIE_STDERR` (1) standard error of the best
twice: on the validation probe, and on the estimate from all labelled images
(the probe's leave-one-out accuracy on the training features pooled with its
validation accuracy). See `tfl.selection.rule` for the rule and what it was measured on, and
`tfl.selection.result` for what is returned.

Candidates are tried cheapest (fewest parameters) first. One whose ImageNet
weights cannot be had here, or whose feature pass would not fit the time
budget, is skipped with one line saying why.
"""

from __future__ import annotations

import os
import shlex
import time
import typing

from tfl._logging import log
from tfl.errors import UsageError, WeightsUnavailableError
from tfl.selection import candidates as _candidates
from tfl.selection import rule as _rule
from tfl.selection.result import Candidate, PickResult


def _load(data, seed, options):
    from tfl.config import DataConfig
    from tfl.data.loading import ImageData, load_data

    if isinstance(data, ImageData):
        return data
    if not isinstance(data, (str, DataConfig)):
        raise UsageError("pick: data must be a source string (folder:PATH, csv:PATH, tfds:NAME), a DataConfig "
                         "or an ImageData")
    return load_data(data, seed=seed, **options)


def pick(data, *, candidates=None, family: typing.Optional[str] = None, image_size: typing.Optional[int] = None,
         budget=None, max_latency_ms: typing.Optional[float] = None, max_params: typing.Optional[int] = None,
         out: typing.Optional[str] = None, batch_size: int = 32, seed: int = 42,
         max_images: int = _candidates.MAX_TRAIN_IMAGES, pooling: str = "avg", tie: float = _rule.TIE,
         tie_stderr: float = _rule.TIE_STDERR, store=None, engine: str = "auto",
         **data_options) -> PickResult:
    """Ranks backbones on `data` by a linear probe on their frozen features, with latency and size.

    Args:
        data: a source (`folder:PATH`, `csv:PATH`, `tfds:NAME`), a
            `DataConfig` or a loaded `ImageData` (single-label).
        candidates: backbone names (list or comma-separated); default
            `tfl.selection.candidates.DEFAULT_CANDIDATES`.
        family: instead of `candidates`, every backbone of this family.
        image_size: input side for every candidate (default: each one's own).
        budget: time for the whole pick (seconds, or `"10m"`, `"90s"`);
            candidates whose feature pass would not fit are skipped.
        max_latency_ms: most batch-1 milliseconds per image on this machine.
        max_params: most backbone parameters.
        out: folder for `pick.json`, `pick.png` and `index.html` (None: none).
        batch_size: batch of the feature pass and of the throughput figure.
        seed: seed of the subsample.
        max_images: larger training sets are scored on a class-balanced
            subsample of this many images (and half as many validation images).
        pooling: `avg` or `max`, as the head will pool.
        tie: probe accuracies within this of the best count as tied.
        tie_stderr: ... or within this many standard errors of the best
            probe's accuracy, when that is wider.
        store: the `ActivationStore` to compute features through (the winner's
            stay in it, for a run that trains it); default a memory-only one.
        engine: what runs the feature passes and the latency timings: `auto`
            (LiteRT when ai-edge-litert is installed, as `tfl predict`),
            `litert` or `keras` (TensorFlow); see `tfl.selection.engine`.
        **data_options: `DataConfig` fields for loading a source (`val_split`, ...).

    Returns:
        A `PickResult`.

    Raises:
        UsageError: multi-label data, unknown candidates, or constraints
            that no candidate meets (one line).
        TflError: no candidate could be scored (every one skipped).

    Examples:
        >>> result = tfl.pick("folder:hymenoptera_data", candidates="mobilenet_025,mobilenet_v2", out="pick")
        >>> result.chosen
        'mobilenet_v2'
    """
    from tfl.serving import engines
    from tfl.tuning.space import parse_duration

    t0 = time.monotonic()
    engines.resolve(engine)  # an unknown engine, or litert without its package: one line before any work
    names = _candidates.resolve(candidates, family)
    budget_s = parse_duration(budget, "--budget")
    if max_latency_ms is not None and max_latency_ms <= 0:
        raise UsageError(f"--max-latency-ms {max_latency_ms:g} must be more than 0")
    if max_params is not None and max_params <= 0:
        raise UsageError(f"--max-params {max_params} must be more than 0")
    if pooling not in ("avg", "max"):
        raise UsageError(f"pooling '{pooling}' is not avg or max")
    full = _load(data, seed, data_options)
    if full.multi_label:
        raise UsageError(f"{full.source} gives images several labels: tfl pick scores single-label data")
    sub, subsampled = _candidates.subsample(full, max_images, seed)
    if subsampled:
        log.info(f"pick: scoring on a class-balanced subsample of {len(sub.train)} train / {len(sub.val)} val "
                 f"images (of {len(full.train)} / {len(full.val)})")
    if store is None:
        from tfl.training.activations import ActivationStore

        store = ActivationStore(cache_dir=None)
    rows, caches = [], {}
    for i, name in enumerate(names):
        row, cache = _try(name, i, len(names), sub, image_size, batch_size, pooling, store, budget_s, t0,
                          max_latency_ms, max_params, engine)
        rows.append(row)
        if cache is not None:
            caches[name] = cache
    chosen, why = _rule.decide(rows, tie, max_latency_ms, max_params, tie_stderr)
    size_opt = f" --image-size {image_size}" if image_size else ""
    source = full.source
    command = (f"tfl train --data {shlex.quote(source)} --backbone {chosen}{size_opt}" if chosen else "")
    ranked = sorted((r for r in rows if r.status == "scored"), key=lambda r: (-r.accuracy, r.batch1_ms))
    for rank, r in enumerate(ranked, 1):
        r.rank = rank
    _rule.mark_pareto(ranked)
    others = [r for r in rows if r.status != "scored"]
    res = PickResult(chosen=chosen, why=why, command=command, candidates=ranked + others,
                     rule=_rule.RULE.format(tie=tie, tie_stderr=tie_stderr), source=source, num_train=len(sub.train),
                     num_val=len(sub.val),
                     subsampled=subsampled, constraints={"max_latency_ms": max_latency_ms, "max_params": max_params,
                                                         "budget_seconds": budget_s},
                     seconds=time.monotonic() - t0, image_size=image_size,
                     features=caches.get(chosen))
    if res.features is not None:
        store.remember(res.features)
    if out:
        from tfl.reports.pick import write_pick

        res.out_dir = out
        write_pick(res, out)
    return res


def _try(name, i, n, data, image_size, batch_size, pooling, store, budget_s, t0, max_latency_ms, max_params,
         engine):
    """(Candidate, its FeatureCache or None): one candidate measured and, when it may be, scored."""
    from tfl.models import backbones

    spec = backbones.get_backbone(name)
    size = int(image_size or spec.default_size)
    row = Candidate(name, size)
    start = time.monotonic()
    params = backbones.stats(spec).get("params")
    where = f"pick {i + 1}/{n} {name} ({size} px)"
    if size < spec.min_size:
        row.status, row.reason = "skipped", f"{size} px is below its minimum of {spec.min_size}"
    elif max_params is not None and params is not None and params > max_params:
        row.status, row.params = "over_params", params
        row.reason = f"{params:,} parameters, more than --max-params {max_params:,}"
    elif budget_s is not None and time.monotonic() - t0 >= budget_s:
        row.status, row.reason = "skipped", f"the --budget of {budget_s:.0f}s is spent"
    else:
        row.reason = _candidates.weights_missing(name, size) or ""
        row.status = "skipped" if row.reason else "scored"
    if row.status != "scored":
        log.info(row.skip_line())
        return row, None
    try:
        return _measure_and_score(row, spec, where, data, batch_size, pooling, store, budget_s, t0,
                                  max_latency_ms, start, engine)
    except WeightsUnavailableError as e:  # a download that failed
        row.status, row.reason = "skipped", str(e).split(": put ")[0]
        log.info(row.skip_line())
        return row, None


def _measure_and_score(row, spec, where, data, batch_size, pooling, store, budget_s, t0, max_latency_ms, start,
                       engine):
    from tfl.config import HeadConfig, ModelConfig
    from tfl.models import backbones
    from tfl.models import classifier as model_lib
    from tfl.selection import engine as _engine
    from tfl.selection import latency, probe
    from tfl.training import activations

    cfg = ModelConfig(backbone=spec.name, weights="imagenet", image_size=row.image_size, augment=False,
                      head=HeadConfig(pooling=pooling))
    model = model_lib.build_model(cfg, data.num_classes)
    row.params = int(model_lib.backbone_of(model).count_params())
    path = backbones.imagenet_weights_path(spec, row.image_size)
    row.weights_mb = os.path.getsize(path) / 1e6 if path else None
    # Timed through what the feature pass below then runs (the traced function, or its LiteRT model), so the
    # backbone is traced once, not twice: its preprocessing, backbone and pooling (the head, one dense layer,
    # adds well under a millisecond).
    runner, row.engine = _engine.feature_runner(activations.extractors(model)[0], row.image_size, engine,
                                                spec.name)
    lat = latency.measure(runner, row.image_size, batch_size, batch=False)
    row.batch1_ms, row.batch_size = lat.batch1_ms, batch_size
    log.info(f"{where}: {row.params / 1e6:.2f}M parameters, {lat.batch1_ms:.1f} ms per image at batch 1")
    if max_latency_ms is not None and lat.batch1_ms > max_latency_ms:
        row.status = "over_latency"
        row.reason = f"{lat.batch1_ms:.1f} ms per image at batch 1, over --max-latency-ms {max_latency_ms:g}"
        row.seconds = time.monotonic() - start
        log.info(f"{where}: {row.reason}; not scored")
        return row, None
    images = len(data.train) + len(data.val)
    if budget_s is not None:
        # The feature pass at TensorFlow's batch-1 rate's better half (batches run faster per image; LiteRT's
        # batches run at about its batch-1 rate), plus the probe's few seconds.
        need = images * lat.batch1_ms / 1000 * (0.6 if row.engine == "keras" else 1.0) + 5
        left = budget_s - (time.monotonic() - t0)
        if need > left:
            row.status = "skipped"
            row.reason = (f"its feature pass needs about {need:.0f}s for {images} images and {max(left, 0):.0f}s "
                          "of the --budget are left")
            row.seconds = time.monotonic() - start
            log.info(row.skip_line())
            return row, None
    _decoded(data, row.image_size, batch_size)
    t = time.monotonic()
    cache = store.features(model, data, row.image_size, batch_size, copies=1, plain=runner)
    row.feature_seconds = 0.0 if cache.reused else time.monotonic() - t
    # Throughput at the batch size: the feature pass itself, timed (its images are decoded already).
    row.batch_ms = (1000 * row.feature_seconds / images if not cache.reused else
                    latency.measure(runner, row.image_size, batch_size).batch_ms)
    r = probe.linear_probe(cache.train[0], cache.train_labels, cache.val, cache.val_labels, data.num_classes)
    row.accuracy, row.stderr, row.l2, row.loo_accuracy = r.accuracy, r.stderr, r.l2, r.cv_accuracy
    n_train, n_val = len(cache.train_labels), r.num_val
    row.pooled = (r.cv_accuracy * n_train + r.accuracy * n_val) / (n_train + n_val)
    row.pooled_stderr = (row.pooled * (1 - row.pooled) / (n_train + n_val)) ** 0.5
    row.seconds = time.monotonic() - start
    log.info(f"{where}: linear probe accuracy {r.accuracy:.4f} ± {r.stderr:.3f} on {r.num_val} validation images "
             f"(ridge L2 {r.l2:.2g} x n, chosen by leave-one-out on train); {row.seconds:.0f}s")
    return row, cache


def _decoded(data, image_size: int, batch_size: int) -> None:
    """Decodes both splits at `image_size` into their memory cache (when they fit) before a timed pass, so
    the pass times the backbone, not the JPEG decoder; candidates of the same size share the decoded images."""
    from tfl import _memory

    for split in (data.train, data.val):
        # The whole memory budget: the pick's (sub)sample is bounded, and its candidates all read it.
        if len(split) * image_size * image_size * 3 * 4 <= _memory.budget_bytes():  # else each pass decodes
            for _ in split.dataset(image_size, batch_size, cache=True):
                pass
