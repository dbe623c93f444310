"""Daily demand forecasts: classic models, vectorised over every series at once.

Each (sku, location) is one series of daily net demand. Series are classified the
Syntetos-Boylan way on their observed days (ADI = days per selling day, CV² of the
sizes of the sales): `smooth`, `erratic` (ADI < 1.32), `intermittent`, `lumpy`
(ADI >= 1.32; CV² split at 0.49). Regular sellers are forecast by simple exponential
smoothing of the level, with a day-of-week profile (`ses_weekly:<alpha>`, ETS(A,N,M)-like)
or without (`ses:<alpha>`), by its damped-trend variant (`holt_weekly`) or by the
seasonal naive; intermittent ones by Croston with the Syntetos-Boylan correction
(`croston_sba`), TSB (`tsb`) or a slow flat SES. Every candidate of a class is scored by
a rolling-origin backtest (`FOLDS` origins, each forecasting `FOLD_DAYS` ahead from a
fit up to it; absolute errors scaled by the series' naive error, as MASE). A series takes
the class's best model over all its series, or its own best where that did
`SWITCH_MARGIN` better in its own backtest. Croston's, TSB's and Holt's smoothing
parameters are chosen per series on the in-sample one-step error; SES's alpha is part of
the model's name, so the weeks-ahead backtest chooses it (one-step error favours alphas
that chase noise).

Why not statsforecast (measured here, 2 cores shared with other work, 2026-11-28): it
installs 470 MB (pandas, pyarrow, fugue, statsmodels), `import statsforecast.models`
took 27-40 s, and per series AutoETS took 0.35 s on 26 weeks of daily data and AutoARIMA
20 s. Ten thousand series fitted four times each (three backtest folds and the final
fit) would take hours, against a two-minute budget. The same model family written as
NumPy recurrences over a (series x days) matrix fits all series in one pass per day of
history, so the nightly job's cost is reading the ledger, not fitting.

Days out of stock (and days before a series' first movement) are not zero demand: they
are masked, imputed for fitting with the series' own day-of-week mean over its observed
days, and left out of every error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

HORIZON_DAYS = 56
FOLDS = 3
FOLD_DAYS = 28
SEASON = 7
PROFILE_WEEKS = 8
PROFILE_SHRINK_UNITS = 40.0
ADI_CUT = 1.32
CV2_CUT = 0.49

DemandClass = Literal["smooth", "erratic", "intermittent", "lumpy", "none"]
SES_ALPHAS = (0.02, 0.05, 0.1, 0.2)
REGULAR_MODELS = (
    *(f"ses_weekly:{a}" for a in SES_ALPHAS),
    *(f"ses:{a}" for a in SES_ALPHAS),
    "holt_weekly",
    "seasonal_naive",
)
INTERMITTENT_MODELS = ("croston_sba", "tsb", "ses:0.02", "ses:0.05")
# A series leaves its class's best model only for one that did this much better in its
# own backtest: three 28-day folds of one series are noisy, and picking the best of a
# dozen on noise loses more than it wins (measured on the generated history).
SWITCH_MARGIN = 0.2
HOLT_PARAMS = ((0.05, 0.01), (0.1, 0.02), (0.2, 0.05))
HOLT_PHI = 0.9
CROSTON_ALPHAS = (0.05, 0.1, 0.2, 0.3)
TSB_PARAMS = tuple((a, b) for a in (0.1, 0.2) for b in (0.02, 0.05, 0.1))


# ---------------------------------------------------------------------------- preparing
def impute(y: Array, observed: Mask) -> Array:
    """`y` with every unobserved day replaced by the series' mean of its weekday's
    observed days (its overall observed mean when that weekday was never observed)."""
    out = y.copy()
    n, t = y.shape
    obs_sum = np.where(observed, y, 0.0).sum(axis=1)
    obs_cnt = observed.sum(axis=1)
    overall = np.divide(obs_sum, obs_cnt, out=np.zeros(n), where=obs_cnt > 0)
    for d in range(SEASON):
        cols = np.arange(t - 1 - d, -1, -SEASON)  # days sharing a weekday, counted from the end
        yy, oo = y[:, cols], observed[:, cols]
        cnt = oo.sum(axis=1)
        mean = np.where(cnt > 0, np.where(oo, yy, 0.0).sum(axis=1) / np.maximum(cnt, 1), overall)
        out[:, cols] = np.where(oo, yy, mean[:, None])
    return out


def classify(y: Array, observed: Mask) -> list[DemandClass]:
    """Syntetos-Boylan class of each series over its observed days."""
    out: list[DemandClass] = []
    for row, obs in zip(y, observed, strict=True):
        sizes = row[obs & (row > 0)]
        days = int(obs.sum())
        if sizes.size == 0:
            out.append("none")
            continue
        adi = days / sizes.size
        mean = sizes.mean()
        cv2 = float(sizes.var() / (mean * mean)) if mean > 0 else 0.0
        if adi < ADI_CUT:
            out.append("smooth" if cv2 < CV2_CUT else "erratic")
        else:
            out.append("intermittent" if cv2 < CV2_CUT else "lumpy")
    return out


def weekly_profile(y: Array) -> Array:
    """Multiplicative day-of-week factors (n, 7) from the last `PROFILE_WEEKS` weeks,
    column j the factor of the weekday of day t - 7 + j; 1 where a series sold nothing."""
    t = y.shape[1]
    weeks = min(PROFILE_WEEKS, t // SEASON)
    if weeks == 0:
        return np.ones((y.shape[0], SEASON))
    tail = y[:, t - weeks * SEASON :].reshape(y.shape[0], weeks, SEASON).mean(axis=1)
    level = tail.mean(axis=1, keepdims=True)
    prof: Array = np.divide(tail, level, out=np.ones_like(tail), where=level > 0)
    # Shrunk towards flat by how little was sold: a slow seller's eight weeks are noise,
    # a fast seller's are its week (weight units / (units + PROFILE_SHRINK_UNITS)).
    units = level * weeks * SEASON
    weight = units / (units + PROFILE_SHRINK_UNITS)
    out: Array = weight * prof + (1 - weight)
    return out


def _tile(prof: Array, t: int, h: int) -> Array:
    """The profile laid over days t..t+h-1 (prof[:, j] is weekday of day t - 7 + j)."""
    idx = (np.arange(h) + t - (t - SEASON)) % SEASON
    return prof[:, idx]


def _season_index(t: int) -> npt.NDArray[np.int64]:
    """Profile column of each day 0..t-1 (the profile is anchored at day t - 7)."""
    return (np.arange(t) - (t - SEASON)) % SEASON


# ---------------------------------------------------------------------------- models
def seasonal_naive(y: Array, h: int) -> Array:
    last = y[:, -SEASON:]
    return np.tile(last, (1, h // SEASON + 1))[:, :h]


def ses(y: Array, h: int, *, alphas: tuple[float, ...] = SES_ALPHAS, weekly: bool = True) -> Array:
    """Simple exponential smoothing of demand divided by its weekday factor (`weekly`)
    or of demand itself; per series the alpha of `alphas` with the least one-step
    squared error (the registry gives each alpha its own model, so the backtest, which
    scores weeks ahead, chooses it)."""
    n, t = y.shape
    prof = weekly_profile(y) if weekly else np.ones((n, SEASON))
    season = prof[:, _season_index(t)]
    x = y / season
    a = np.array(alphas)[:, None]
    level = np.repeat(x[:, : SEASON * 2].mean(axis=1)[None, :], len(alphas), axis=0)
    sse = np.zeros((len(alphas), n))
    for i in range(t):
        err = x[:, i] - level
        sse += (err * season[:, i]) ** 2
        level = level + a * err
    best = sse.argmin(axis=0)
    lvl = level[best, np.arange(n)]
    out: Array = np.maximum(lvl[:, None] * _tile(prof, t, h), 0.0)
    return out


def holt_weekly(y: Array, h: int) -> Array:
    """Damped-trend (phi `HOLT_PHI`) smoothing of the de-seasonalised demand."""
    n, t = y.shape
    prof = weekly_profile(y)
    season = prof[:, _season_index(t)]
    x = y / season
    p = np.array(HOLT_PARAMS)
    a, b = p[:, 0:1], p[:, 1:2]
    k = len(HOLT_PARAMS)
    first = x[:, :SEASON].mean(axis=1)
    second = x[:, SEASON : 2 * SEASON].mean(axis=1) if t >= 2 * SEASON else first
    level = np.repeat(first[None, :], k, axis=0)
    trend = np.repeat(((second - first) / SEASON)[None, :], k, axis=0)
    sse = np.zeros((k, n))
    for i in range(t):
        pred = level + HOLT_PHI * trend
        err = x[:, i] - pred
        sse += (err * season[:, i]) ** 2
        new_level = pred + a * err
        trend = HOLT_PHI * trend + b * (new_level - level - HOLT_PHI * trend)
        level = new_level
    best = sse.argmin(axis=0)
    cols = np.arange(n)
    lvl, tr = level[best, cols], trend[best, cols]
    steps = np.cumsum(HOLT_PHI ** np.arange(1, h + 1))
    path = lvl[:, None] + tr[:, None] * steps[None, :]
    out: Array = np.maximum(path * _tile(prof, t, h), 0.0)
    return out


def _intermittent_init(y: Array) -> tuple[Array, Array]:
    pos = y > 0
    cnt = pos.sum(axis=1)
    size = np.divide(np.where(pos, y, 0).sum(axis=1), cnt, out=np.zeros(y.shape[0]), where=cnt > 0)
    prob = cnt / y.shape[1]
    return size, prob


def croston_sba(y: Array, h: int) -> Array:
    """Croston's method with the Syntetos-Boylan bias correction (1 - alpha/2)."""
    n, t = y.shape
    size0, prob0 = _intermittent_init(y)
    a = np.array(CROSTON_ALPHAS)[:, None]
    k = len(CROSTON_ALPHAS)
    size = np.repeat(size0[None, :], k, axis=0)
    interval = np.repeat(np.where(prob0 > 0, 1 / np.maximum(prob0, 1e-9), 1.0)[None, :], k, axis=0)
    since = np.ones((k, n))
    sse = np.zeros((k, n))
    for i in range(t):
        yi = y[:, i]
        sse += (yi - (1 - a / 2) * size / interval) ** 2
        hit = np.broadcast_to(yi > 0, (k, n))
        size = np.where(hit, size + a * (yi - size), size)
        interval = np.where(hit, interval + a * (since - interval), interval)
        since = np.where(hit, 1.0, since + 1)
    best = sse.argmin(axis=0)
    cols = np.arange(n)
    rate = (1 - a[best, 0] / 2) * size[best, cols] / interval[best, cols]
    return np.repeat(rate[:, None], h, axis=1)


def tsb(y: Array, h: int) -> Array:
    """Teunter-Syntetos-Babai: the probability of a sale decays every day without one,
    so a SKU that stopped selling is forecast down (Croston would keep its old rate)."""
    n, t = y.shape
    size0, prob0 = _intermittent_init(y)
    p = np.array(TSB_PARAMS)
    a_size, a_prob = p[:, 0:1], p[:, 1:2]
    k = len(TSB_PARAMS)
    size = np.repeat(size0[None, :], k, axis=0)
    prob = np.repeat(prob0[None, :], k, axis=0)
    sse = np.zeros((k, n))
    for i in range(t):
        yi = y[:, i]
        sse += (yi - prob * size) ** 2
        hit = yi > 0
        prob = prob + a_prob * (hit - prob)
        size = np.where(hit, size + a_size * (yi - size), size)
    best = sse.argmin(axis=0)
    cols = np.arange(n)
    rate = prob[best, cols] * size[best, cols]
    return np.repeat(rate[:, None], h, axis=1)


def velocity(y: Array, h: int, window: int = 28) -> Array:
    """The service's earlier method: the mean of the last `window` days, flat."""
    rate = y[:, -window:].mean(axis=1)
    return np.repeat(rate[:, None], h, axis=1)


MODELS: dict[str, Callable[[Array, int], Array]] = {
    **{f"ses_weekly:{a}": partial(ses, alphas=(a,), weekly=True) for a in SES_ALPHAS},
    **{f"ses:{a}": partial(ses, alphas=(a,), weekly=False) for a in SES_ALPHAS},
    "seasonal_naive": seasonal_naive,
    "holt_weekly": holt_weekly,
    "croston_sba": croston_sba,
    "tsb": tsb,
}


# ---------------------------------------------------------------------------- selection
@dataclass(frozen=True, slots=True)
class Fitted:
    """The chosen model of every series, its forecast and its backtest errors.

    `rmse` is the daily root mean squared error of the chosen model over the backtest
    (the forecast error that sizes safety stock); `mase` its mean absolute error scaled
    by the in-sample error of the weekly naive forecast; `mae` unscaled; `nan` where a
    series had no observed day in its backtest.
    """

    demand_class: list[DemandClass]
    model: list[str]
    forecast: Array
    mae: Array
    rmse: Array
    mase: Array


def naive_scale(y: Array, observed: Mask) -> Array:
    """In-sample mean absolute error of the weekly naive forecast (MASE's denominator);
    the one-day naive's where weekly differences are all zero, else nan."""
    scales = []
    for lag in (SEASON, 1):
        both = observed[:, lag:] & observed[:, :-lag]
        diff = np.where(both, np.abs(y[:, lag:] - y[:, :-lag]), 0.0)
        cnt = both.sum(axis=1)
        scales.append(np.divide(diff.sum(axis=1), cnt, out=np.zeros(y.shape[0]), where=cnt > 0))
    weekly, daily = scales
    out = np.where(weekly > 0, weekly, np.where(daily > 0, daily, np.nan))
    return out


Fold = tuple[Array, Array, Mask]  # (imputed history up to the origin, actual, observed)


def folds_of(
    y: Array, observed: Mask, *, folds: int = FOLDS, fold_days: int = FOLD_DAYS
) -> list[Fold]:
    """The rolling origins t - folds*fold_days, ..., t - fold_days, each history imputed
    once for every model scored on it."""
    t = y.shape[1]
    out = []
    for f in range(folds, 0, -1):
        origin = t - f * fold_days
        if origin < 2 * SEASON:
            continue
        end = origin + fold_days
        history = impute(y[:, :origin], observed[:, :origin])
        out.append((history, y[:, origin:end], observed[:, origin:end]))
    return out


def backtest_errors(
    name: str, y: Array, observed: Mask, *, folds: list[Fold] | None = None
) -> tuple[Array, Array, Array]:
    """(sum of squared errors, sum of absolute errors, observed days) of model `name` per
    series over the rolling origins (`folds_of`)."""
    n = y.shape[0]
    sse, sae, cnt = np.zeros(n), np.zeros(n), np.zeros(n)
    for history, actual, obs in folds if folds is not None else folds_of(y, observed):
        fc = MODELS[name](history, actual.shape[1])
        err = np.where(obs, fc - actual, 0.0)
        sse += (err**2).sum(axis=1)
        sae += np.abs(err).sum(axis=1)
        cnt += obs.sum(axis=1)
    return sse, sae, cnt


def fit(y: Array, observed: Mask, h: int = HORIZON_DAYS) -> Fitted:
    """Classify every series, backtest its class's candidates, forecast with the best:
    the class's best over all its series, unless the series' own best beat that by
    `SWITCH_MARGIN` in its backtest (errors scaled by the series' naive error)."""
    n = y.shape[0]
    classes = classify(y, observed)
    model = ["zero"] * n
    forecast = np.zeros((n, h))
    mae = np.full(n, np.nan)
    rmse = np.full(n, np.nan)
    scale = naive_scale(y, observed)
    labels = np.array(classes)
    for cls in ("smooth", "erratic", "intermittent", "lumpy"):
        rows = np.flatnonzero(labels == cls)
        if rows.size == 0:
            continue
        names = REGULAR_MODELS if cls in ("smooth", "erratic") else INTERMITTENT_MODELS
        yy, oo = y[rows], observed[rows]
        folds = folds_of(yy, oo)
        scores = [backtest_errors(name, yy, oo, folds=folds) for name in names]
        sse = np.stack([sc[0] for sc in scores])
        sae = np.stack([sc[1] for sc in scores])
        s = scale[rows]
        scaled = np.divide(sae, s, out=np.zeros_like(sae), where=np.isfinite(s) & (s > 0))
        default = int(scaled.sum(axis=1).argmin())
        own = scaled.argmin(axis=0)
        cols = np.arange(rows.size)
        best = np.where(scaled[own, cols] < (1 - SWITCH_MARGIN) * scaled[default], own, default)
        filled = impute(yy, oo)
        for m, name in enumerate(names):
            sel = best == m
            if not sel.any():
                continue
            idx = rows[sel]
            forecast[idx] = MODELS[name](filled[sel], h)
            c = scores[m][2][sel]
            mae[idx] = np.divide(sae[m][sel], c, out=np.full(c.size, np.nan), where=c > 0)
            rmse[idx] = np.sqrt(np.divide(sse[m][sel], c, out=np.full(c.size, np.nan), where=c > 0))
            for i in idx:
                model[i] = name
    mase = np.divide(mae, scale, out=np.full(n, np.nan), where=np.isfinite(scale) & (scale > 0))
    return Fitted(classes, model, forecast, mae, rmse, mase)
