"""ba_net.report.power and ba_net.report.evidence: power of the t-tests against published power tables, an
independent numerical integration and Monte Carlo simulation; the sentences' edge cases; the A/A
control's false-positive rate."""
import math
import re

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as ss

from ba_net.report import evidence as E
from ba_net.report import power as P
from ba_net.report import stats as S
from ba_net.errors import RunStateError

# ------------------------------------------------------------------- independent references


def one_sample_power(d, n, alpha=0.05):
    """Power of the two-sided one-sample (paired) t-test at effect size d (mean / sd) with n
    observations, by integrating the normal tail over the chi-square of the sample variance:
    T = (Z + d sqrt(n)) / sqrt(V / df). No noncentral t involved."""
    df = n - 1
    c = ss.t.ppf(1 - alpha / 2, df)

    def f(v):
        k = c * math.sqrt(v / df)
        return (ss.norm.sf(k - d * math.sqrt(n)) + ss.norm.cdf(-k - d * math.sqrt(n))) * ss.chi2.pdf(v, df)

    return integrate.quad(f, 0, math.inf, limit=200, epsabs=1e-11)[0]


def is_smallest_n(d, n):
    """Whether ``n`` (>= 2) is the smallest number of observations at which the paired test at effect
    size d has power 0.8: power(n) >= 0.8 > power(n - 1), by the integral above (power grows with n,
    so two integrals decide it where a search from 2 upwards takes n)."""
    return n >= 2 and one_sample_power(d, n) >= 0.8 and (n == 2 or one_sample_power(d, n - 1) < 0.8)


# Published sample sizes for power 0.8 at two-sided alpha 0.05 (G*Power; Cohen 1988, tables 2.4.1):
# one-sample / paired t-test by effect size d, and two-sample t-test per group (equal SDs).
PAIRED_N = {1.0: 10, 0.8: 15, 0.5: 34}
TWO_SAMPLE_N = {1.0: 17, 0.8: 26, 0.5: 64}


def test_published_sample_sizes_confirmed_by_independent_integration():
    for d, n in PAIRED_N.items():
        assert is_smallest_n(d, n), d  # the published figures, confirmed here without nct
        assert P.seeds_needed(d, P.Noise("paired", (1.0,))) == n, d
        assert P.seeds_needed(0.01 * d, P.Noise("paired", (0.01,))) == n, d  # scale-free
    for d, n in TWO_SAMPLE_N.items():  # Welch with equal SDs and seeds: Student's figures
        assert P.seeds_needed(d, P.Noise("welch", (1.0, 1.0))) == n, d
    for d, n in ((1.0, 10), (0.5, 34), (0.3, 7), (1.4, 3)):  # nct against the integral, where both are finite
        assert P.t_test_power(d * math.sqrt(n), n - 1) == pytest.approx(one_sample_power(d, n), abs=1e-7)


def test_min_detectable_effect_has_power_08_by_independent_integration():
    for n in (2, 3, 5, 10):
        mde = P.min_detectable_effect(P.Noise("paired", (0.02,)), n)
        assert one_sample_power(mde / 0.02, n) == pytest.approx(0.8, abs=1e-6), n
    assert P.noncentrality_for_power(1e6) == pytest.approx(ss.norm.ppf(0.975) + ss.norm.ppf(0.8), abs=1e-4)


def _rejection_rate(rng, effect, sds, ns, n_sim=20000):
    if len(sds) == 1:
        d = rng.normal(effect, sds[0], size=(n_sim, ns[0]))
        p = ss.ttest_1samp(d, 0.0, axis=1).pvalue
    else:
        a = rng.normal(effect, sds[0], size=(n_sim, ns[0]))
        b = rng.normal(0.0, sds[1], size=(n_sim, ns[1]))
        p = ss.ttest_ind(a, b, axis=1, equal_var=False).pvalue
    return float(np.mean(p < 0.05))


@pytest.mark.parametrize("method,sds,ns", [("paired", (0.004,), (3,)), ("paired", (0.01,), (5,)),
                                           ("welch", (0.01, 0.01), (4, 4)), ("welch", (0.005, 0.02), (3, 5)),
                                           ("welch", (0.01, 0.03), (2, 6))])
def test_monte_carlo_rejects_at_the_mde_with_power_08(method, sds, ns):
    """Experiments simulated at the computed MDE (scipy's own t-tests, a fixed seed) reject 80 % of
    the time, within 4 simulation standard errors (0.011 for 20,000 experiments)."""
    noise = P.Noise(method, sds)
    mde = P.min_detectable_effect(noise, *ns)
    rate = _rejection_rate(np.random.default_rng(20240515), mde, sds, ns)
    assert abs(rate - 0.8) < 4 * math.sqrt(0.8 * 0.2 / 20000), (rate, mde)
    assert P.power_at(mde, noise, *ns) == pytest.approx(0.8, abs=1e-9)


def test_welch_power_is_not_the_noncentral_t_at_few_seeds():
    """At 4 + 4 seeds the noncentral t with the true df claims 0.80 where Welch's test reaches 0.76
    (the simulation above confirms the exact value)."""
    nc_mde = math.sqrt(2 / 4) * P.noncentrality_for_power(6)
    assert P.welch_power(nc_mde, 1.0, 1.0, 4, 4) == pytest.approx(0.756, abs=0.002)
    rate = _rejection_rate(np.random.default_rng(7), nc_mde, (1.0, 1.0), (4, 4))
    assert abs(rate - 0.756) < 0.012


# -------------------------------------------------------------------------------- sentences

BASE = {0: 0.71, 1: 0.74, 2: 0.69, 3: 0.73}


def test_sentences_state_the_numbers():
    ns = {0: 0.715, 1: 0.735, 2: 0.70, 3: 0.732}  # differences +0.5, -0.5, +1.0, +0.2 pp
    ev = E.evaluate("ba vs base", ns, BASE)
    d = [ns[s] - BASE[s] for s in BASE]
    sd = np.std(d, ddof=1)
    need = ev.seeds_needed
    assert is_smallest_n(np.mean(d) / sd, need) and ev.test.method == "paired"  # independent: the integral, not nct
    lo, hi = ev.test.ci95
    assert ev.sentence == (f"ba vs base: +0.30 pp [{100 * lo:+.2f}, {100 * hi:+.2f}], p = {ev.test.p_value:.3g}: "
                           f"not distinguishable from seed noise with 4 seeds (the smallest difference detectable "
                           f"with 4 seeds at power 0.8 is {100 * ev.mde:.2f} pp); about {need} seeds per model would "
                           f"be needed to detect +0.30 pp (alpha 0.05, power 0.8).")
    assert one_sample_power(ev.mde / sd, 4) == pytest.approx(0.8, abs=1e-6)
    d = [0.0008, -0.0002, 0.0006, 0.0]  # a small difference (+0.03 pp), d = 0.70
    small = E.evaluate("ba vs base", {s: BASE[s] + d[s] for s in BASE}, BASE)
    assert is_smallest_n(np.mean(d) / np.std(d, ddof=1), small.seeds_needed) and small.seeds_needed > 4
    assert f"about {small.seeds_needed} seeds per model would be needed to detect +0.03 pp" in small.sentence
    sig = E.evaluate("ba vs base", {0: 0.72, 1: 0.752, 2: 0.70, 3: 0.741}, BASE)
    assert re.fullmatch(r"ba vs base: \+1\.08 pp \[\+0\.9\d, \+1\.2\d\], p < 0\.001: distinguishable from seed "
                        r"noise with 4 seeds \(alpha 0\.05\); the smallest difference detectable with 4 seeds at "
                        r"power 0\.8 is 0\.\d\d pp\.", sig.sentence), sig.sentence
    welch = E.evaluate("w vs base", {5: 0.70, 6: 0.78, 7: 0.74}, BASE)
    assert "with 3 and 4 seeds" in welch.sentence and welch.test.method == "welch"


def test_sentences_for_the_edge_cases():
    one = E.evaluate("m vs b", {0: 0.75}, {0: 0.70})
    assert one.sentence.startswith("m vs b: +5.00 pp with 1 seed: one seed shows no seed noise")
    assert "more seeds are needed" in one.sentence and one.mde is None and one.seeds_needed is None
    flat = E.evaluate("m vs b", {0: 0.8, 1: 0.9}, {0: 0.7, 1: 0.8})
    assert "zero variance" in flat.sentence and "more seeds are needed" in flat.sentence and flat.mde is None
    zero = E.evaluate("m vs b", {0: 0.72, 1: 0.73, 2: 0.68, 3: 0.74}, BASE)  # differences +1, -1, -1, +1 pp
    assert zero.test.delta == pytest.approx(0, abs=1e-15) and zero.seeds_needed is None
    assert "m vs b: 0.00 pp [" in zero.sentence
    assert "the observed difference is 0, which no number of seeds would detect" in zero.sentence
    d = [0.0010, -0.0010, 0.0012, -0.0011]  # mean +0.0025 pp, sd 0.11 pp: d = 0.023
    tiny = E.evaluate("m vs b", {s: BASE[s] + d[s] for s in BASE}, BASE)
    assert tiny.seeds_needed is None
    assert "more than 1,000 seeds per model would be needed to detect +0.0025 pp (alpha" in tiny.sentence
    assert one_sample_power(np.mean(d) / np.std(d, ddof=1), 1000) < 0.8  # independent: indeed beyond 1,000
    assert E.evaluate("m vs b", {}, BASE).sentence == "m vs b: no finished runs on one side, nothing to compare."


# ------------------------------------------------------------------------------- A/A control

def test_aa_halves_and_too_few_seeds():
    first, second = E.aa_halves({3: 0.1, 0: 0.2, 9: 0.3, 4: 0.4, 1: 0.5}, "alexnet")
    assert first == {0: 0.2, 1: 0.5} and second == {3: 0.1, 4: 0.4, 9: 0.3}
    with pytest.raises(RunStateError, match=r"^--aa alexnet needs at least 4 finished seeds .*; alexnet has 3$"):
        E.aa_halves({0: 0.1, 1: 0.2, 2: 0.3}, "alexnet")


def test_aa_finds_no_effect_in_one_distribution():
    rng = np.random.default_rng(3)
    values = dict(enumerate(0.70 + 0.01 * rng.standard_normal(8)))
    ev = E.aa_control(values, "alexnet")
    assert ev.name == "A/A alexnet seeds 0, 1, 2, 3 vs seeds 4, 5, 6, 7" and ev.test.method == "welch"
    assert ev.test.p_value > 0.05 and ev.test.ci95[0] < 0 < ev.test.ci95[1]
    assert "not distinguishable from seed noise with 4 seeds each" in ev.sentence
    assert ev.mde == pytest.approx(P.min_detectable_effect(
        P.Noise("welch", (np.std(list(values.values())[:4], ddof=1), np.std(list(values.values())[4:], ddof=1))),
        4, 4), rel=1e-9)


@pytest.mark.parametrize("n_seeds,size", [(4, 0.0234), (8, 0.0411), (20, 0.0485)])
def test_aa_false_positive_rate_is_alpha(n_seeds, size):
    """2,000 simulated A/A splits of seeds from one distribution, tested as the code tests them
    (Welch: the halves share no seed). The rate of p < 0.05 is the Welch test's exact size within
    3 binomial standard errors: about alpha (0.05 +- 0.015) at 10 + 10 seeds, and below it at few
    seeds, where Welch's test is conservative (sizes: the exact integral at effect 0)."""
    assert P.welch_power(0.0, 1.0, 1.0, n_seeds // 2, n_seeds - n_seeds // 2) == pytest.approx(size, abs=1e-4)
    rng = np.random.default_rng(11 + n_seeds)
    hits = 0
    for _ in range(2000):
        values = dict(enumerate(0.7 + 0.01 * rng.standard_normal(n_seeds)))
        test = S.compare_seeds(*E.aa_halves(values, "m"))
        assert test.method == "welch"
        hits += test.p_value < 0.05
    margin = 3 * math.sqrt(size * (1 - size) / 2000)
    assert abs(hits / 2000 - size) < margin and hits / 2000 < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000), hits
    if n_seeds >= 20:
        assert abs(hits / 2000 - 0.05) < 3 * math.sqrt(0.05 * 0.95 / 2000), hits
