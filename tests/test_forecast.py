"""Forecast models and their selection on synthetic series with known shapes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from inventory_cache import forecast as F

DAYS = 364
WEEK = np.array([1.0, 1.0, 1.0, 1.2, 1.5, 2.0, 0.3])


def weekly(rate: float, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lam = rate * np.tile(WEEK, DAYS // 7)[None, :].repeat(n, axis=0)
    return rng.poisson(lam).astype(float)


def sparse(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ((rng.random((n, DAYS)) < 0.08) * rng.poisson(2.0, (n, DAYS)) + 0).astype(float)


def test_a_regular_weekly_seller_gets_a_seasonal_model_and_an_intermittent_one_croston_or_tsb() -> (
    None
):
    y = np.vstack([weekly(6.0, 20), sparse(20)])
    observed = np.ones_like(y, dtype=bool)

    fitted = F.fit(y, observed)

    assert set(fitted.demand_class[:20]) == {"smooth"}
    assert {m.split(":")[0] for m in fitted.model[:20]} <= {"ses_weekly", "holt_weekly"}
    assert set(fitted.demand_class[20:]) <= {"intermittent", "lumpy"}
    # the class's model is Croston's or TSB; a series may leave it only for a clearly better
    # one of the intermittent candidates
    assert Counter(fitted.model[20:]).most_common(1)[0][0] in ("croston_sba", "tsb")
    assert set(fitted.model[20:]) <= set(F.INTERMITTENT_MODELS)
    assert fitted.forecast.shape == (40, F.HORIZON_DAYS)
    # the weekly shape survives into the forecast: day 6 of the pattern (x2.0) over day 7 (x0.3)
    week = fitted.forecast[:20, :7].mean(axis=0)
    pattern_day = (np.arange(7) + DAYS) % 7
    assert week[pattern_day.tolist().index(5)] > 4 * week[pattern_day.tolist().index(6)]
    # an intermittent forecast is the mean rate, not a zero
    assert fitted.forecast[20:].mean() == pytest.approx(0.08 * 2.0, rel=0.35)
    assert np.all(np.isfinite(fitted.rmse)) and np.all(fitted.mase > 0)


def test_a_series_that_never_sold_is_forecast_zero() -> None:
    y = np.zeros((1, DAYS))

    fitted = F.fit(y, np.ones_like(y, dtype=bool))

    assert (fitted.demand_class, fitted.model) == (["none"], ["zero"])
    assert not fitted.forecast.any()


def test_out_of_stock_days_are_imputed_not_read_as_zero_demand() -> None:
    y = weekly(5.0, 1)
    observed = np.ones_like(y, dtype=bool)
    y[0, -56:-7] = 0.0  # seven weeks sold out: nothing could be sold
    observed[0, -56:-7] = False

    masked = F.fit(y, observed).forecast.mean()
    naive = F.fit(y, np.ones_like(y, dtype=bool)).forecast.mean()

    assert masked == pytest.approx(5.0 * WEEK.mean(), rel=0.15)
    assert naive < 0.6 * masked


def test_classes_split_at_adi_132_and_cv2_049() -> None:
    steady = np.full((1, 70), 3.0)
    jumpy = np.tile([1.0, 9.0], 35)[None, :]
    rare = np.zeros((1, 70))
    rare[0, ::5] = 3.0
    rare_jumpy = np.zeros((1, 70))
    rare_jumpy[0, ::5] = np.tile([1.0, 12.0], 7)

    y = np.vstack([steady, jumpy, rare, rare_jumpy])

    assert F.classify(y, np.ones_like(y, dtype=bool)) == [
        "smooth",
        "erratic",
        "intermittent",
        "lumpy",
    ]


def test_impute_fills_each_missing_day_with_its_weekday_mean() -> None:
    y = np.tile(np.arange(7, dtype=float), 3)[None, :]
    observed = np.ones_like(y, dtype=bool)
    observed[0, [3, 11]] = False
    y[0, [3, 11]] = 0.0

    out = F.impute(y, observed)

    assert out[0, 3] == 3.0 and out[0, 11] == 4.0


def test_backtest_counts_only_observed_days_and_mase_scales_by_the_weekly_naive() -> None:
    y = np.tile([2.0, 4.0, 2.0, 4.0, 2.0, 4.0, 2.0], 20)[None, :]
    observed = np.ones_like(y, dtype=bool)
    observed[0, -3:] = False

    sse, sae, cnt = F.backtest_errors("seasonal_naive", y, observed)

    assert cnt[0] == 3 * 28 - 3
    assert sse[0] == 0.0 and sae[0] == 0.0
    # weekly differences are all 0, so the one-day naive scales: six steps of 2 a week, one of 0
    assert F.naive_scale(y, observed)[0] == pytest.approx(12 / 7, rel=0.01)
