"""`--backbone auto`: `tfl train` and `tfl tune` pick the backbone first, on the run's own data.

`auto` tries the pick's default candidates; `auto:A,B,C` tries those.

The pick (`tfl.selection.pick`) runs with the run's image size (each
candidate's own when none is given), batch size, seed and pooling, through
the run's `ActivationStore`: the winner's plain features and validation
features stay in it, so the run's stage 1 computes only the augmented
copies. The run folder keeps the ranking (`RUN/pick/`: `pick.json`,
`pick.png`, `index.html`) and `state.json` says which backbone won and why
(`tfl info RUN` shows it); `config.json` names the winner, so `--resume`
trains it without picking again.
"""

from __future__ import annotations

import os

from tfl._logging import log
from tfl.errors import UsageError

AUTO = "auto"


def is_auto(backbone) -> bool:
    """`auto`, or `auto:A,B,C` (the pick's candidates)."""
    if not isinstance(backbone, str):
        return False
    text = backbone.strip().lower()
    return text == AUTO or text.startswith(AUTO + ":")


def candidates(backbone: str):
    """The candidates of `auto:A,B,C` (`None` for plain `auto`: the pick's default list)."""
    _, _, names = backbone.strip().partition(":")
    return names or None


def check(cfg) -> None:
    """Raises a one-line `UsageError` when `--backbone auto` cannot work with the rest of `cfg`."""
    from tfl.selection.candidates import resolve

    try:
        resolve(candidates(cfg.model.backbone))  # unknown names fail here, before any data is read
    except UsageError as e:
        raise UsageError(f"--backbone {cfg.model.backbone}: {str(e).replace('--candidates: ', '')}") from None
    if cfg.model.weights != "imagenet":
        raise UsageError("--backbone auto compares backbones by their ImageNet features: use --weights imagenet "
                         f"(not {cfg.model.weights or 'none'}) or name a backbone")
    if cfg.model.head.multi_label:
        raise UsageError("--backbone auto scores single-label data: name a backbone for --multi-label")


def choose(cfg, data, store, out: str, what: str = "run") -> dict:
    """Runs the pick for `cfg` on `data`, sets `cfg.model.backbone` to the winner; returns the record to keep.

    Args:
        cfg: the run's (or search's) `TrainConfig`; its backbone is set here.
        data: the loaded `ImageData`.
        store: the `ActivationStore` the run will train through (None: a memory-only one).
        out: the folder of the pick's page and `pick.json` (`RUN/pick/`).
        what: `run` or `search`, for the log line.

    Returns:
        `{"auto": winner, "why": ..., "rule": ..., "page": OUT/index.html, "ranking": [...], "skipped": [...]}`
        for the folder's state.
    """
    from tfl.selection.pick import pick

    check(cfg)
    log.info(f"--backbone auto: ranking the candidates on {data.source} before the {what}")
    result = pick(data, candidates=candidates(cfg.model.backbone), image_size=cfg.model.image_size,
                  batch_size=cfg.data.batch_size, seed=cfg.seed, pooling=cfg.model.head.pooling, store=store, out=out)
    cfg.model.backbone = result.chosen
    log.info(f"--backbone auto chose {result.why}")
    page = os.path.join(os.path.basename(os.path.normpath(out)), "index.html")  # relative to the run folder
    return {"auto": result.chosen, "why": result.why, "rule": result.rule, "page": page,
            "seconds": round(result.seconds, 1),
            "ranking": [{"name": c.name, "accuracy": c.accuracy, "batch1_ms": c.batch1_ms} for c in result.scored],
            "skipped": [c.skip_line() for c in result.candidates if c.status != "scored"]}
