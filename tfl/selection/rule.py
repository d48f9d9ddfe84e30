"""The pick's recommendation rule: ties judged on two estimates, the fastest of the tied wins; the Pareto front.

Pure arithmetic on the measured `Candidate`s (no TensorFlow), so it is tested alone
(`tests/unit/test_pick_rule.py`).
"""

from __future__ import annotations

from tfl.errors import TflError, UsageError

TIE = 0.01  # accuracies this close to the best count as tied (then the faster one wins)
# ... or this many standard errors of the best one, when that is wider. A validation split of a few hundred
# images cannot tell probes a point or two apart (120 images: one standard error is about 4 points), and
# neither can it tell their full runs apart. So ties are judged twice: on the validation probe, and on the
# estimate from all the labelled images (the probe's leave-one-out accuracy on the training images, pooled
# with its validation accuracy), whose standard error is smaller. A candidate tied on both is as good as the
# best as far as these images can tell, and the fastest such one wins. Measured on the 4 shared datasets
# against full two-stage runs of 4 MobileNets (README, "Choosing the backbone"): 1 standard error picked a
# backbone within 2 points of the best full run on all four, and so did anything from 0.75 to 1.5; half a
# standard error on the validation probe alone picked 2.2 points short on intel_scenes (four probes within
# 0.9 points; the fastest, MobileNet 0.25, trails the others by 2 points on the pooled estimate).
TIE_STDERR = 1.0
RULE = ("among the candidates within the constraints (batch-1 latency <= max_latency_ms, parameters <= "
        "max_params), those tied with the best count as equals: within {tie:g} (or {tie_stderr:g} standard error, "
        "when wider) of the best linear-probe accuracy on the validation split, and of the best estimate from "
        "all labelled images (the probe's leave-one-out accuracy on train pooled with its validation accuracy); "
        "the fastest of those (batch-1 latency) wins")


def decide(rows, tie, max_latency_ms, max_params, tie_stderr=0.0):
    """(chosen name, why) by the rule; a one-line error when nothing could be chosen."""
    scored = [r for r in rows if r.status == "scored"]
    if not scored:
        over = [r for r in rows if r.status == "over_latency"]
        if over and max_latency_ms is not None and len(over) == len([r for r in rows if r.batch1_ms is not None]):
            fastest = min(over, key=lambda r: r.batch1_ms)
            raise UsageError(f"--max-latency-ms {max_latency_ms:g}: every candidate takes longer on this machine "
                             f"(fastest: {fastest.name}, {fastest.batch1_ms:.1f} ms per image at batch 1); "
                             "raise it or leave it out")
        if max_params is not None and all(r.status == "over_params" for r in rows):
            smallest = min(rows, key=lambda r: r.params or float("inf"))
            raise UsageError(f"--max-params {max_params:,}: every candidate has more (smallest: {smallest.name}, "
                             f"{smallest.params:,}); raise it or leave it out")
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in rows)
        raise TflError(f"no candidate could be scored ({reasons})")
    best = max(scored, key=lambda r: r.accuracy)
    floor = tie
    tie = round(max(floor, tie_stderr * (best.stderr or 0.0)), 4)
    tied = [r for r in scored if r.accuracy >= best.accuracy - tie - 1e-12]
    top = max(scored, key=lambda r: r.pooled)
    tie_pooled = round(max(floor, tie_stderr * (top.pooled_stderr or 0.0)), 4)
    kept = [r for r in tied if r.pooled >= top.pooled - tie_pooled - 1e-12]
    dropped = [r for r in tied if r not in kept]
    tied = kept or [best]  # (the best probe is tied with nothing that is close to the best estimate: it stands)
    chosen = min(tied, key=lambda r: (r.batch1_ms, -r.accuracy))
    dropped = [r for r in dropped if r.batch1_ms < chosen.batch1_ms]  # the faster ones it would have been
    limits = [f"{k.replace('_', '-')} {v:g}" for k, v in (("max_latency_ms", max_latency_ms),
                                                          ("max_params", max_params)) if v is not None]
    within = f" within --{' and --'.join(limits)}" if limits else ""
    if chosen is best or chosen.accuracy >= best.accuracy:
        why = (f"{chosen.name}: the best linear-probe accuracy on the validation split, {chosen.accuracy:.4f}, "
               f"of {len(scored)} candidate{'s' if len(scored) > 1 else ''} scored{within}")
        if len(tied) > 1:
            why += f" (and the fastest of those tied within {tie:g})"
    else:
        pooled = (f", and the best estimate from all labelled images ({top.pooled:.4f})" if top is chosen else
                  f", and within {tie_pooled:g} of the best estimate from all labelled images ({top.name}, "
                  f"{top.pooled:.4f}; its own {chosen.pooled:.4f})")
        speed = (f"and faster: {chosen.batch1_ms:.1f} against {best.batch1_ms:.1f} ms per image at batch 1"
                 if chosen.batch1_ms < best.batch1_ms else
                 f"and the fastest of those tied on both ({chosen.batch1_ms:.1f} ms per image at batch 1)")
        why = (f"{chosen.name}: linear-probe accuracy {chosen.accuracy:.4f} on the validation split, within {tie:g} "
               f"of the best ({best.name}, {best.accuracy:.4f}){pooled}, {speed}{within}")
    if dropped:
        why += ("; faster " + ", ".join(f"{r.name} ({r.pooled:.4f})" for r in dropped)
                + f" trail{'s' if len(dropped) == 1 else ''} the best estimate from all labelled images by more "
                f"than {tie_pooled:g}")
    return chosen.name, why


def mark_pareto(scored) -> None:
    """Marks the candidates no other beats on both accuracy and batch-1 latency."""
    for r in scored:
        r.pareto = not any(o is not r and o.accuracy >= r.accuracy and o.batch1_ms <= r.batch1_ms
                           and (o.accuracy > r.accuracy or o.batch1_ms < r.batch1_ms) for o in scored)
