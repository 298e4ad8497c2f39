"""The pure-Python additive Holt-Winters against a statsmodels reference fit on known data.

The reference numbers were produced offline, once, in a throwaway venv (statsmodels is not a
dependency of etl) by this script, with ``known_series`` below copied verbatim::

    from statsmodels.tsa.holtwinters import ExponentialSmoothing
    y = known_series(); m = 24
    first = sum(y[:m]) / m; second = sum(y[m:2 * m]) / m
    model = ExponentialSmoothing(np.array(y), trend="add", seasonal="add", seasonal_periods=m,
        initialization_method="known", initial_level=first,
        initial_trend=(second - first) / m, initial_seasonal=np.array([v - first for v in y[:m]]))
    fixed = model.fit(smoothing_level=0.3, smoothing_trend=0.05, smoothing_seasonal=0.2,
                      optimized=False)            # FIXED_SSE, FIXED_FORECAST = fixed.forecast(24)
    opt = model.fit(optimized=True)              # OPT_SSE, OPT_FORECAST = opt.forecast(24)

(statsmodels 0.15.0, numpy 2). At the horizon h = m (24) statsmodels uses the seasonal term
one period older than the textbook formula (FPP 8.3: s[T + h - m], the term updated by the
last observation); ours follows the book, so that one step is checked against the formula.
statsmodels also bounds the trend weight by the level weight, so our optimum may be lower.
"""

from __future__ import annotations

import itertools
import math

import pytest

from etl import holtwinters as hw

FIXED_SSE = 4298.072150546634
FIXED_FORECAST = (
    115.39540974,
    122.340696708,
    127.672296912,
    130.42049504,
    133.142640887,
    134.008448755,
    135.158200139,
    133.768044047,
    132.344903089,
    129.014039359,
    125.194836465,
    120.307584481,
    112.719378562,
    108.892944028,
    102.542185424,
    101.524367067,
    94.809300422,
    95.112096037,
    95.182212471,
    95.495902893,
    96.996048104,
    100.626322692,
    106.89149583,
    110.246379278,
)
OPT_SSE = 3485.4379649470516
OPT_FORECAST = (
    115.717656209,
    122.310211734,
    128.024564281,
    130.953601919,
    134.173583189,
    135.106618223,
    136.511047351,
    135.067636593,
    133.944139103,
    131.23696768,
    127.738409112,
    123.067656449,
    115.865212462,
    112.108349057,
    105.887516753,
    104.542614424,
    97.709705365,
    97.419368372,
    97.188519137,
    97.57546433,
    99.065624809,
    102.752251674,
    108.92506781,
    112.644129929,
)


def known_series(n: int = 336) -> list[float]:
    """Two weeks of hourly values: level 100, trend 0.05/h, daily sine of amplitude 20 and
    deterministic noise (an LCG) in [-5, 5)."""
    out, x = [], 12345
    for t in range(n):
        x = (1103515245 * x + 12345) % 2**31
        noise = (x / 2**31 - 0.5) * 10.0
        out.append(100.0 + 0.05 * t + 20.0 * math.sin(2 * math.pi * t / 24) + noise)
    return out


def test_fixed_weights_match_statsmodels() -> None:
    """With the same weights and initial state, the recursions give statsmodels' SSE and
    forecasts (to 1e-6) at every horizon but h = m, where the book's formula is used."""
    f = hw.fit(known_series(), 24, params=(0.3, 0.05, 0.2))
    assert f.sse == pytest.approx(FIXED_SSE, rel=1e-12)
    points = hw.forecast(f, 24)
    for p, ref in zip(points[:23], FIXED_FORECAST[:23], strict=True):
        assert p.value == pytest.approx(ref, abs=1e-6)
    assert points[23].value == pytest.approx(f.level + 24 * f.trend + f.season[23])


def test_optimised_fit_is_at_least_as_good_as_statsmodels() -> None:
    """Fitted weights reach statsmodels' SSE (or lower) and forecast within 0.5 % of it."""
    f = hw.fit(known_series(), 24)
    assert f.sse <= OPT_SSE * 1.001
    for p, ref in zip(hw.forecast(f, 23), OPT_FORECAST[:23], strict=True):
        assert p.value == pytest.approx(ref, rel=0.005)


def test_interval_widens_and_contains_the_truth() -> None:
    """The 95 % interval widens with the horizon; the noise-free truth of the next day lies
    inside it at every step."""
    y = known_series(360)
    f = hw.fit(y[:336], 24)
    points = hw.forecast(f, 24)
    widths = [p.high - p.low for p in points]
    assert all(b >= a for a, b in itertools.pairwise(widths))
    for p in points:
        t = 335 + p.step
        truth = 100.0 + 0.05 * t + 20.0 * math.sin(2 * math.pi * t / 24)
        assert p.low <= truth <= p.high


def test_too_short_history_is_refused() -> None:
    """Fewer than two seasons cannot initialise the model: a clear ValueError."""
    with pytest.raises(ValueError, match="at least 48 points"):
        hw.fit([1.0] * 47, 24)
