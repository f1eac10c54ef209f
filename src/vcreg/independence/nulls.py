"""Null distributions of n * HSIC_b for the all-pairs test, and which one each pair gets.

Under H0 (x independent of y) the statistic's distribution conditional on the two marginals is
its *permutation* distribution: n * HSIC_b = sum_kl lambda_k mu_l w_kl^2 with lambda, mu the
eigenvalues of the centred kernel matrices / n and w_kl = sqrt(n) u_k' P v_l for a uniformly
random permutation P of the rows (u_k, v_l the unit eigenvectors). The **spectral null** treats
the w_kl as independent N(0, 1) (Gretton et al. 2009) and takes its tail by a saddlepoint
approximation. That is accurate while each w_kl is close to Gaussian *at the tail level the
multiple-testing correction needs* (p ~ alpha / m, e.g. 2.4e-8 for 2.1 M pairs), and it is not
when both columns put their kernel mass on a few rows (sparse ReLU units, rare binary values,
single spikes): their w_kl are sums over the few rows where both are active, far from Gaussian.

**The measured criterion** (:func:`spectral_tail_error`). The permutation distribution of
w_kl has skewness g_k h_l / sqrt(n) and excess kurtosis e_k f_l / n (Pitman 1937), where g, e
(h, f) are the skewness and excess kurtosis of the entries of sqrt(n) u_k (sqrt(n) v_l) --
measured from each column's kernel eigenvectors. The first Edgeworth terms of the two-sided tail
P(w^2 > z^2) change it by the factor 1 + E with
E = z (max(kurt, 0) He3(z) / 24 + skew^2 He5(z) / 72), He the Hermite polynomials, z^2 the
chi-square(1) quantile at the level needed. Each (k, l) term enters with the weight
exp(-(z^2 / 2)(w_11 / w_kl - 1)) by which its eigenvalue product w_kl = lambda_k mu_l reaches
the tail relative to the largest one. A pair keeps the spectral null when the sum of E over its
top SHAPE_TOP x SHAPE_TOP terms is at most EDGEWORTH_TOL (tail within ~1.5x of the truth).
Checked against exact hypergeometric tails for binary pairs (n = 300 ... 2000): E predicts
the measured error factors 7 / 19 / 1.9 where they are 8.8 / 20 / 1.2.

**The exact null** of the other pairs (:func:`exact_bound_pvalue`): with x0 the most frequent
value of x, A its other rows (k of them), phi'_a = phi(x_a) - phi(x0) and s = sum_A phi'_a,
n sqrt(HSIC_b) = || sum_{a in A cap B} phi'_a psi'_a^T - s_x s_y^T / n ||_F (H removes the
constant feature), which depends on the permutation only through the rows where both are active.
Writing phi'_a = mean_A + delta_a, the norm is at most
|M - k_x k_y / n| |mean_x| |mean_y| + |mean_x| E_M + D_M |mean_y| + S_M with M the number of
rows active in both -- hypergeometric (n, k_x, k_y) under permutation -- and D_M, E_M, S_M the
sums of the M largest deviation norms (and of their sorted products). So
p = P(f(M) >= observed) over the hypergeometric law is a valid p-value at *every* threshold
(exact, not asymptotic; equal to the permutation p-value of the overlap for binary columns).

**Not tested** (Tarone 1990): a pair whose exact null cannot reach the corrected threshold --
its smallest attainable p-value, the least hypergeometric probability of the support, is above
alpha / K -- is left out of the family, so it does not dilute the others; K is the smallest
number with #{pairs that can reach alpha / K} <= K. Valid because the selection depends only on
the marginals, which a permutation leaves unchanged. Such pairs are counted, never dropped
silently (``not_tested`` in :func:`vcreg.independence.pairwise_hsic_test`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from scipy.special import gammaln, ndtr
from torch import Tensor

from vcreg.independence.kernels import _pivoted_cholesky

SPECTRAL_TOP = 8  # eigenvalues kept per column for the spectral null
SHAPE_TOP = 4  # eigenvectors per column whose skewness / kurtosis enter the criterion
NULL_RANK_TOL = 1e-3  # pivoted-Cholesky residual of the null's per-column factors
EDGEWORTH_TOL = 0.5  # predicted relative tail error above which the spectral null is corrected
EDGEWORTH_MAX = 10.0  # ... above which no asymptotic correction is trusted
EDGEWORTH_SAFETY = 2.0  # a corrected p-value is p (1 + EDGEWORTH_SAFETY * E)
SPECTRAL, CORRECTED, EXACT = 0, 1, 2  # the null a pair gets
PAIR_BLOCK = 2**16 // SPECTRAL_TOP**2  # pairs per block: cache-sized (3.4x faster than 2**22)

REASON_CONSTANT = "a constant column"
REASON_UNREACHABLE = (
    "exact null cannot reach the corrected threshold (few informative rows; Tarone)"
)


@dataclass
class ColumnProfiles:
    """Per-column ingredients of the pair nulls (see the module docs).

    ``moments`` (3, d): mean K, mean K^2, mean squared row mean (gamma null); ``eig`` (d,
    SPECTRAL_TOP): top eigenvalues of H K H / n, descending; ``trace`` (d,): tr(H K H) / n;
    ``skew``, ``kurt`` (d, SHAPE_TOP): skewness and excess kurtosis of sqrt(n) times the top
    unit eigenvectors' entries."""

    moments: Tensor
    eig: Tensor
    trace: Tensor
    skew: np.ndarray
    kurt: np.ndarray


def column_profiles(z: Tensor, sig: Tensor, kernel: str, budget: int) -> ColumnProfiles:
    """Profiles of every column from pivoted-Cholesky factors K_j ~= L_j L_j^T (every entry
    within NULL_RANK_TOL). O(n d r^2) instead of O(n^2 d)."""
    n, d = z.shape
    cc = max(1, min(d, budget // (4 * n * 128 * z.element_size())))
    mom = torch.empty(3, d, dtype=z.dtype, device=z.device)
    eig = torch.zeros(d, SPECTRAL_TOP, dtype=z.dtype, device=z.device)
    skew = np.zeros((d, SHAPE_TOP))
    kurt = np.zeros((d, SHAPE_TOP))
    for c0 in range(0, d, cc):
        sl = slice(c0, min(d, c0 + cc))
        lmat, r, _ = _pivoted_cholesky(z[:, sl], sig[sl], kernel, NULL_RANK_TOL, 128)
        lmat = lmat[:, : int(r.max())].to(z.dtype).transpose(1, 2)  # (c, n, R): used rank only
        colsum = lmat.sum(1)  # (c, R) = L^T 1
        rm = torch.bmm(lmat, colsum[:, :, None])[:, :, 0] / n  # row means of K
        gram = torch.bmm(lmat.transpose(1, 2), lmat)  # L^T L: same nonzero spectrum as K
        mom[0, sl] = colsum.square().sum(1) / n**2
        mom[1, sl] = gram.square().sum((1, 2)) / n**2
        mom[2, sl] = rm.square().mean(1)
        lc = lmat - lmat.mean(1, keepdim=True)  # H L
        ev, vec = torch.linalg.eigh(torch.bmm(lc.transpose(1, 2), lc) / n)
        ev, vec = ev.flip(-1).clamp_min(0), vec.flip(-1)
        k = min(SPECTRAL_TOP, ev.shape[1])
        eig[sl, :k] = ev[:, :k]
        s = min(SHAPE_TOP, ev.shape[1])
        skew[sl, :s], kurt[sl, :s] = _eigvec_shape(lc, vec[:, :, :s], ev[:, :s], n)
    return ColumnProfiles(mom, eig, 1 - mom[0], skew, kurt)


def _eigvec_shape(lc: Tensor, vec: Tensor, ev: Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Skewness and excess kurtosis of the entries of sqrt(n) u for the unit eigenvectors
    u = (H L) v / sqrt(n ev); 0 for a zero eigenvalue (its term has no weight)."""
    u = torch.bmm(lc, vec)  # (c, n, s), column norms^2 = n ev
    scale = (n * ev).clamp_min(1e-300).sqrt()[:, None, :]
    u = u / scale
    ok = (ev > 1e-12 * ev[:, :1].clamp_min(1e-300)).cpu().numpy()
    sk = (math.sqrt(n) * u.pow(3).sum(1)).cpu().numpy()
    ku = (n * u.pow(4).sum(1) - 3).cpu().numpy()
    return np.where(ok, sk, 0.0), np.where(ok, ku, 0.0)


# ----------------------------------------------------------------------------- which null


def tail_z(level: float) -> float:
    """z with P(chi2_1 > z^2) = level."""
    return float(np.sqrt(stats.chi2.isf(level, 1)))


def spectral_tail_error(
    i: np.ndarray, j: np.ndarray, prof: ColumnProfiles, n: int, level: float
) -> np.ndarray:
    """Predicted relative error E of the spectral null's tail at p = ``level`` for the pairs
    (i, j) (module docs): sum over the top SHAPE_TOP^2 eigen-terms (k, l) of
    exp(-(z^2/2)(r - 1)) z_kl (kurt+ He3(z_kl) / 24 + skew^2 He5(z_kl) / 72), r = w_11 / w_kl,
    z_kl = z sqrt(r): a smaller term reaches the tail only at its own, larger z_kl, where its
    non-Gaussian part has grown (a concentrated term can outweigh its exponential discount)."""
    z = tail_z(level)
    lam = prof.eig[:, :SHAPE_TOP].double().cpu().numpy()
    out = np.empty(i.size)
    step = max(1, 2**18 // SHAPE_TOP**2)
    for s0 in range(0, i.size, step):
        a, b = i[s0 : s0 + step], j[s0 : s0 + step]
        w = lam[a, :, None] * lam[b, None, :]
        top = w.max((1, 2), keepdims=True)
        ratio = np.where(w > 0, top / np.where(w > 0, w, 1.0), np.inf)
        zk = z * np.sqrt(np.minimum(ratio, 1e6))
        he3, he5 = zk**3 - 3 * zk, zk**5 - 10 * zk**3 + 15 * zk
        reach = np.exp(-0.5 * z * z * (np.minimum(ratio, 1e6) - 1))
        g2 = (prof.skew[a, :, None] * prof.skew[b, None, :]) ** 2 / n
        ku = np.maximum(prof.kurt[a, :, None] * prof.kurt[b, None, :], 0) / n
        e = zk * (ku * he3 / 24 + g2 * he5 / 72) * reach
        out[s0 : s0 + step] = np.where(np.isfinite(ratio), e, 0.0).sum((1, 2))
    return out


def choose_null(err: np.ndarray, ki: np.ndarray, kj: np.ndarray, n: int) -> np.ndarray:
    """SPECTRAL where the predicted tail error ``err`` <= EDGEWORTH_TOL; otherwise EXACT when
    both columns have a mode covering at least half of the rows (k <= n / 2 rows elsewhere:
    the exact null is informative) or the error exceeds EDGEWORTH_MAX, else CORRECTED."""
    kind = np.full(err.size, SPECTRAL, dtype=np.int8)
    moded = (2 * ki <= n) & (2 * kj <= n)
    off = err > EDGEWORTH_TOL
    kind[off & ~moded] = CORRECTED
    kind[off & (moded | (err > EDGEWORTH_MAX))] = EXACT
    return kind


# ----------------------------------------------------------------------------- spectral null


def saddlepoint_sf(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """P(sum_m w_m chi2_1 > x) per row by the Lugannani-Rice saddlepoint approximation.

    x (P,), w (P, M) >= 0. Cumulant generating function K(t) = -1/2 sum log(1 - 2 w t); the
    saddlepoint t solves K'(t) = x by Newton's method from t0 = (1 - w_max / x) / (2 w_max),
    where K'(t0) >= x: K' is increasing and convex, so Newton from the right decreases
    monotonically to t. Accurate far into the tail for weighted chi-square sums (Kuonen 1999).
    No floating-point warnings: every division is guarded.
    """
    if x.size == 0:
        return np.empty(0)
    mean, var = w.sum(1), 2 * (w * w).sum(1)
    wmax = w.max(1)
    degenerate = wmax <= 0  # no spectrum (a constant column): no test
    w = np.where(degenerate[:, None], 1.0, w)
    wmax = np.where(degenerate, 1.0, wmax)
    # p ~ 1 below the lower clip and ~ 0 (exp(-1e15)) above the upper: no precise root needed
    xs = np.clip(x, 1e-6 * mean, 1e15 * wmax)
    t = (1 - wmax / xs) / (2 * wmax)
    for _ in range(40):
        one = 1 - 2 * w * t[:, None]
        q = w / one
        step = (q.sum(1) - xs) / np.maximum(2 * (q * q).sum(1), 1e-300)
        t = t - step
        if np.all(np.abs(step) <= 1e-10 * np.maximum(np.abs(t), 1e-300)):
            break
    one = 1 - 2 * w * t[:, None]
    kt = -0.5 * np.log(one).sum(1)
    k2 = 2 * ((w / one) ** 2).sum(1)
    r = np.sqrt(np.maximum(2 * (t * xs - kt), 0))
    what = np.where(t < 0, -r, r)
    uhat = t * np.sqrt(k2)
    sd = np.maximum(np.sqrt(var), 1e-300)
    near = (np.abs(x - mean) < 1e-3 * sd) | (np.abs(what) < 1e-8) | (uhat == 0)
    wsafe = np.where(near, 1.0, what)
    usafe = np.where(near, 1.0, uhat)
    tail = np.exp(-np.minimum(what * what / 2, 745.0)) / np.sqrt(2 * np.pi)
    lr = ndtr(-what) + tail * (1 / usafe - 1 / wsafe)
    p = np.where(near, ndtr(-(x - mean) / sd), lr)
    p = np.clip(np.where(x <= 0, 1.0, p), 0.0, 1.0)
    return np.where(degenerate, np.nan, p)


def spectral_pvalues(
    stat: np.ndarray, eig: Tensor, trace: Tensor, i: np.ndarray, j: np.ndarray
) -> np.ndarray:
    """Spectral null p-values of n * HSIC_b = ``stat`` for the pairs (i, j).

    Under H0, n * HSIC_b -> sum_kl lambda_k mu_l z_kl^2 (Gretton et al. 2009). The top
    SPECTRAL_TOP eigenvalues of each column enter the saddlepoint tail; the mean of the
    remaining products (tr_i tr_j - sum lambda sum mu) is subtracted as a constant.
    """
    lam, tr = eig.double().cpu().numpy(), trace.double().cpu().numpy()
    out = np.empty(i.size)
    for s0 in range(0, i.size, PAIR_BLOCK):
        a, b = i[s0 : s0 + PAIR_BLOCK], j[s0 : s0 + PAIR_BLOCK]
        w = (lam[a, :, None] * lam[b, None, :]).reshape(a.size, -1)
        rest = tr[a] * tr[b] - w.sum(1)
        out[s0 : s0 + PAIR_BLOCK] = saddlepoint_sf(
            stat[s0 : s0 + PAIR_BLOCK] - np.maximum(rest, 0), w
        )
    return out


def gamma_pvalues(
    stat: np.ndarray, moments: Tensor, n: int, i: np.ndarray, j: np.ndarray
) -> np.ndarray:
    """Gamma-approximation p-values of n * HSIC_b = ``stat`` (Gretton et al. 2008).

    For d = 2 the moment estimates of Pfister et al. (2018) factorise: null mean
    (1 - a_i)(1 - a_j) / n and variance 2 (n-4)(n-5) / (n(n-1)(n-2)(n-3)) g_i g_j with
    g = b - 2c + a^2 (a = mean K, b = mean K^2, c = mean squared row mean).
    """
    a, b, c = (v.double().cpu().numpy() for v in moments)
    g = b - 2 * c + a * a
    mean = (1 - a[i]) * (1 - a[j]) / n
    var = 2.0 * (n - 4) * (n - 5) / (n * (n - 1.0) * (n - 2) * (n - 3)) * g[i] * g[j]
    ok = (var > 0) & (mean > 0)
    shape = np.where(ok, mean**2 / np.where(ok, var, 1.0), 1.0)
    scale = np.where(ok, n * var / np.where(ok, mean, 1.0), 1.0)
    return np.where(ok, stats.gamma.sf(stat, shape, scale=scale), np.nan)


# ----------------------------------------------------------------------------- exact null


def column_modes(z: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Most frequent value of every column and the number of rows *not* at it, k (d,)."""
    s = np.sort(z.double().cpu().numpy(), axis=0)
    n, d = s.shape
    start = np.vstack([np.ones((1, d), bool), s[1:] != s[:-1]])
    run = np.cumsum(start, 0) - 1 + np.arange(d) * n  # run ids, offset per column
    counts = np.bincount(run.T.ravel(), minlength=n * d).reshape(d, n)
    best = counts.argmax(1)
    first = np.argmax(run == (best + np.arange(d) * n)[None, :], axis=0)
    return s[first, np.arange(d)], n - counts.max(1)


def min_attainable(kx: np.ndarray, ky: np.ndarray, n: int) -> np.ndarray:
    """Smallest p-value the exact null can give: twice the least hypergeometric probability of
    the overlap's support (the law is unimodal, so at one end); 1 for a one-point support."""
    lo, hi = np.maximum(0, kx + ky - n), np.minimum(kx, ky)
    p = np.minimum(np.exp(_log_hyper(lo, n, kx, ky)), np.exp(_log_hyper(hi, n, kx, ky)))
    return np.where(lo == hi, 1.0, np.minimum(1.0, 2 * p))  # x2: the Bonferroni pair


def _log_hyper(m, n, k, kk):
    """log P(M = m) for M ~ Hypergeometric(population n, k marked, kk drawn)."""

    def lc(a, b):
        return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

    return lc(k, m) + lc(n - k, kk - m) - lc(n, kk)


def tarone_keep(always: int, pmin: np.ndarray, alpha: float) -> np.ndarray:
    """Which of the pairs with smallest attainable p-values ``pmin`` stay in the family, beside
    ``always`` pairs that can reach any level: those with pmin <= alpha / K, K the smallest
    number with always + #{pmin <= alpha / K} <= K (Tarone 1990)."""
    srt = np.sort(pmin)
    lo, hi = max(1, always), always + pmin.size
    while lo < hi:  # the condition is monotone in K
        mid = (lo + hi) // 2
        if always + np.searchsorted(srt, alpha / mid, side="right") <= mid:
            hi = mid
        else:
            lo = mid + 1
    return pmin <= alpha / max(lo, 1)


@dataclass
class ActiveTable:
    """Exact-null bookkeeping of a set of columns (module docs), padded to the largest k.

    ``x`` (n, c) the columns, ``x0`` (c,) their modes, ``sigma`` (c,) bandwidths, ``active``
    (n, c) rows away from the mode (k of them per column), ``g`` (n, c) = <phi'_a, s> (0 off the
    active rows), ``ss`` (c,) = ||s||^2, ``mean`` (c,) = ||s / k||, ``dev`` (c, L) the deviation
    norms |phi'_a - s / k| largest first (0-padded) and ``dev_cum`` (c, L + 1) their cumulative
    sums."""

    x: np.ndarray
    x0: np.ndarray
    sigma: np.ndarray
    active: np.ndarray
    k: np.ndarray
    g: np.ndarray
    ss: np.ndarray
    mean: np.ndarray
    dev: np.ndarray
    dev_cum: np.ndarray


def _kernel(diff, sigma, kernel: str):
    if kernel == "gaussian":
        return np.exp(-0.5 * (diff / sigma) ** 2)
    return np.exp(-np.abs(diff) / sigma)


def active_table(x: np.ndarray, x0: np.ndarray, sigma: np.ndarray, kernel: str) -> ActiveTable:
    """:class:`ActiveTable` of the columns of x (n, c): O(k^2) kernel entries per column."""
    n, c = x.shape
    active = x != x0[None, :]
    k = active.sum(0)
    width = int(k.max()) if c else 0
    g = np.zeros((n, c))
    ss, mean = np.zeros(c), np.zeros(c)
    dev = np.zeros((c, width))
    for j in range(c):
        xa = x[active[:, j], j]
        if xa.size == 0:
            continue
        k0 = _kernel(xa - x0[j], sigma[j], kernel)
        kp = _kernel(xa[:, None] - xa[None, :], sigma[j], kernel) - k0[:, None] - k0[None, :] + 1
        gj = kp.sum(1)
        g[active[:, j], j] = gj
        ss[j] = gj.sum()
        m2 = ss[j] / xa.size**2
        mean[j] = math.sqrt(max(m2, 0.0))
        dv = np.sqrt(np.maximum(np.diag(kp) - 2 * gj / xa.size + m2, 0))
        dev[j, : xa.size] = np.sort(dv)[::-1]
    cum = np.concatenate([np.zeros((c, 1)), np.cumsum(dev, 1)], 1)
    return ActiveTable(x, x0, sigma, active, k, g, ss, mean, dev, cum)


def _overlap_sums(t: ActiveTable, i: np.ndarray, j: np.ndarray, kernel: str):
    """Per pair (i, j): M (rows active in both) and n^2 HSIC_b, exactly, from the sums over
    the M common rows: sum_{a, a'} K'_x K'_y - (2/n) sum_a g_x g_y + ||s_x||^2 ||s_y||^2 / n^2."""
    n = t.x.shape[0]
    both = t.active[:, i] & t.active[:, j]  # (n, P)
    m = both.sum(0)
    q, rows = np.nonzero(both.T)  # incidences (pair, common row), grouped by pair
    cross = np.bincount(q, t.g[rows, i[q]] * t.g[rows, j[q]], minlength=i.size)
    first = np.zeros(i.size)
    start = np.r_[0, np.cumsum(m)]
    block = np.r_[0, np.cumsum(m.astype(np.int64) ** 2)]
    lo = 0
    while lo < i.size:  # self-join of each pair's common rows, in chunks of ~4M entries
        hi = int(np.searchsorted(block, block[lo] + 2**22, side="right")) - 1
        hi = max(hi, lo + 1)
        sizes = m[lo:hi].astype(np.int64)
        pair = np.repeat(np.arange(lo, hi), sizes**2)
        local = np.arange(pair.size) - np.repeat(block[lo:hi] - block[lo], sizes**2)
        r1 = rows[start[pair] + local // m[pair]]
        r2 = rows[start[pair] + local % m[pair]]
        prod = _kprime(t, i[pair], r1, r2, kernel) * _kprime(t, j[pair], r1, r2, kernel)
        first[lo:hi] = np.bincount(pair - lo, prod, minlength=hi - lo)
        lo = hi
    s2 = np.maximum(first - 2 / n * cross + t.ss[i] * t.ss[j] / n**2, 0)
    return m, s2


def _kprime(t: ActiveTable, c: np.ndarray, r1: np.ndarray, r2: np.ndarray, kernel: str):
    """<phi'_r1, phi'_r2> of columns c: k(x1 - x2) - k(x1 - x0) - k(x2 - x0) + 1."""
    x1, x2, x0, sg = t.x[r1, c], t.x[r2, c], t.x0[c], t.sigma[c]
    return (
        _kernel(x1 - x2, sg, kernel)
        - _kernel(x1 - x0, sg, kernel)
        - _kernel(x2 - x0, sg, kernel)
        + 1
    )


def exact_pvalues(t: ActiveTable, i: np.ndarray, j: np.ndarray, kernel: str):
    """(p-values, n^2 HSIC_b) of the pairs (i, j) of table columns under the exact null
    (module docs): twice the smaller of the bound's p-value for n * HSIC_b and the two-sided
    p-value of the overlap M itself (co-activation) -- each exact under permutation, so their
    Bonferroni combination is too."""
    n = t.x.shape[0]
    m_obs, s2 = _overlap_sums(t, i, j, kernel)
    kx, ky = t.k[i], t.k[j]
    lo, hi = np.maximum(0, kx + ky - n), np.minimum(kx, ky)
    length = hi - lo + 1
    order = np.argsort(length, kind="stable")
    p = np.empty(i.size)
    c0 = 0
    while c0 < i.size:  # pairs of similar support length together, ~4M entries per chunk
        c1 = c0 + 1
        while c1 < i.size and int(length[order[c1]]) * (c1 - c0 + 1) <= 2**22:
            c1 += 1
        sel = order[c0:c1]
        p[sel] = _bound_block(t, i[sel], j[sel], m_obs[sel], s2[sel], n)
        c0 = c1
    return p, s2


def _bound_block(t, i, j, m_obs, s2, n):
    """The exact-null p-values of a block of pairs (supports padded to the longest)."""
    kx, ky = t.k[i], t.k[j]
    lo, hi = np.maximum(0, kx + ky - n), np.minimum(kx, ky)
    width = int((hi - lo).max()) + 1
    m = lo[:, None] + np.arange(width)[None, :]
    valid = m <= hi[:, None]
    m = np.minimum(m, hi[:, None])
    take = np.take_along_axis
    dx = np.minimum(take(t.dev_cum[i], m, 1), take(t.dev_cum[i], kx[:, None] - m, 1))
    ey = np.minimum(take(t.dev_cum[j], m, 1), take(t.dev_cum[j], ky[:, None] - m, 1))
    top = int(hi.max())
    prod = np.concatenate([np.zeros((i.size, 1)), np.cumsum(t.dev[i, :top] * t.dev[j, :top], 1)], 1)
    ax, ay = t.mean[i][:, None], t.mean[j][:, None]
    f = np.abs(m - (kx * ky / n)[:, None]) * ax * ay + ax * ey + dx * ay + take(prod, m, 1)
    h = np.where(valid, np.exp(_log_hyper(m, n, kx[:, None], ky[:, None])), 0.0)
    reach = f >= (np.sqrt(s2) * (1 - 1e-9) - 1e-12)[:, None]
    p_stat = (h * reach).sum(1)
    at = (m_obs - lo)[:, None]
    col = np.arange(width)[None, :]
    up, down = (h * (col >= at)).sum(1), (h * (col <= at)).sum(1)
    return np.minimum(1.0, 2 * np.minimum(p_stat, 2 * np.minimum(up, down)))
