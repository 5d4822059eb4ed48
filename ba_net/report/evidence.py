"""What a comparison of seeds shows: the t-test of :mod:`ba_net.report.stats`, its power
(:mod:`ba_net.report.power`) and one plain sentence, computed from the numbers; and the A/A control, which
compares two halves of one model's seeds to show the size of pure seed noise.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Optional

from ba_net.errors import RunStateError
from ba_net.report.power import ALPHA, MAX_SEEDS, POWER, Noise, min_detectable_effect, seeds_needed
from ba_net.report.stats import TTest, compare_seeds

MIN_AA_SEEDS = 4


@dataclass(frozen=True)
class Evidence:
    """A model against a baseline (or one half of seeds against the other): the test, the smallest
    difference detectable at these seed counts (``mde``) and the seeds per model needed to detect
    the observed difference (None: zero difference, or more than ``MAX_SEEDS``), both at
    ``alpha`` and ``power``; ``sentence`` says it in words."""

    name: str
    test: TTest
    n_seeds: tuple  # (model, baseline)
    mde: Optional[float]
    seeds_needed: Optional[int]
    sentence: str
    alpha: float = ALPHA
    power: float = POWER

    def as_dict(self) -> dict:
        out = asdict(self)
        out["test"] = asdict(self.test)
        return out


def _noise(values: dict, baseline: dict, test: TTest) -> Optional[Noise]:
    """The seed noise the test saw, or None when it could not run."""
    if test.p_value is None:
        return None
    if test.method == "paired":
        return Noise("paired", (statistics.stdev(values[s] - baseline[s] for s in sorted(values)),))
    return Noise("welch", (statistics.stdev(values.values()), statistics.stdev(baseline.values())))


def evaluate(name: str, values: dict, baseline: dict, alpha: float = ALPHA, power: float = POWER) -> Evidence:
    """``values`` against ``baseline`` (each {seed: metric}) with the test :func:`compare_seeds`
    picks, its power, and the sentence."""
    test = compare_seeds(values, baseline)
    noise = _noise(values, baseline, test)
    n = (len(values), len(baseline))
    mde = needed = None
    if noise is not None:
        mde = min_detectable_effect(noise, n[0], None if noise.method == "paired" else n[1], alpha, power)
        needed = seeds_needed(test.delta, noise, alpha, power) if abs(test.delta) > 1e-12 else None
    return Evidence(name, test, n, mde, needed, sentence(name, test, n, mde, needed, alpha, power), alpha, power)


# ------------------------------------------------------------------------------ in words

def pp(v: float) -> str:
    """A difference of accuracy fractions in signed percentage points (two significant digits
    below 0.005 pp, so a tiny difference does not read as 0)."""
    x = 100 * v
    if abs(x) <= 1e-10:
        return "0.00 pp"
    return f"{x:+.2f} pp" if abs(x) >= 0.005 else f"{x:+.2g} pp"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3g}"


def _seeds(test: TTest, n: tuple) -> str:
    if test.method == "paired" or n[0] == n[1]:
        return f"{n[0]} seed{'s' if n[0] != 1 else ''}" + (" each" if test.method == "welch" else "")
    return f"{n[0]} and {n[1]} seeds"


def sentence(name: str, test: TTest, n: tuple, mde, needed, alpha: float = ALPHA, power: float = POWER) -> str:
    """The conclusion in one sentence, from the numbers only."""
    if test.delta is None:
        return f"{name}: no finished runs on {'both sides' if n == (0, 0) else 'one side'}, nothing to compare."
    delta = pp(test.delta)
    if test.method == "none":
        return (f"{name}: {delta} with {_seeds(test, n)}: one seed shows no seed noise, so no "
                f"test is possible; more seeds are needed (at least 2 per model, more for a useful test).")
    if test.p_value is None:
        same = "every seed gave the same difference" if test.method == "paired" else \
            "each model gave the same accuracy in every seed"
        return (f"{name}: {delta} over {_seeds(test, n)}, but {same} (zero variance), so no t-test is possible; "
                f"more seeds are needed to measure the seed noise.")
    head = f"{name}: {delta} [{pp(test.ci95[0])[:-3]}, {pp(test.ci95[1])[:-3]}], {_p(test.p_value)}"
    detect = f"the smallest difference detectable with {_seeds(test, n)} at power {power:g} is {100 * mde:.2f} pp"
    if test.p_value < alpha:
        return f"{head}: distinguishable from seed noise with {_seeds(test, n)} (alpha {alpha:g}); {detect}."
    if needed is None and abs(test.delta) <= 1e-12:
        more = "the observed difference is 0, which no number of seeds would detect"
    elif needed is None:
        more = f"more than {MAX_SEEDS:,} seeds per model would be needed to detect {delta}"
    else:
        more = f"about {needed} seeds per model would be needed to detect {delta}"
    return (f"{head}: not distinguishable from seed noise with {_seeds(test, n)} ({detect}); {more} "
            f"(alpha {alpha:g}, power {power:g}).")


# ---------------------------------------------------------------------------- A/A control

def aa_halves(values: dict, model: str) -> tuple:
    """One model's {seed: metric} split by seed order into a first and a second half (the second
    gets the extra seed of an odd count); RunStateError below ``MIN_AA_SEEDS`` seeds."""
    if len(values) < MIN_AA_SEEDS:
        raise RunStateError(f"--aa {model} needs at least {MIN_AA_SEEDS} finished seeds to split into two halves; "
                            f"{model} has {len(values)}")
    seeds = sorted(values)
    k = len(seeds) // 2
    return {s: values[s] for s in seeds[:k]}, {s: values[s] for s in seeds[k:]}


def _seed_list(seeds) -> str:
    return ", ".join(str(s) for s in seeds)


def aa_control(values: dict, model: str, alpha: float = ALPHA, power: float = POWER) -> Evidence:
    """The first half of ``model``'s seeds against the second (Welch: the halves share no seed)."""
    first, second = aa_halves(values, model)
    name = f"A/A {model} seeds {_seed_list(first)} vs seeds {_seed_list(second)}"
    return evaluate(name, first, second, alpha, power)


__all__ = ["Evidence", "MIN_AA_SEEDS", "aa_control", "aa_halves", "evaluate", "pp", "sentence"]
