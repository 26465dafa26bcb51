"""Set-level distances between two sets of features (part of :mod:`inpaint.evaluation`): FID, KID, P-IDS/U-IDS.

Everything here is numpy/scipy, float64 throughout; features come in as float arrays ``[N, D]`` (for the field
metrics: 2048-d Inception pool3 features, extracted elsewhere). The formulas follow the reference
implementations restated in the field-metrics spec (sections 1.4, 2 and 4):

* **FID** (:func:`feature_statistics`, :func:`frechet_distance`, :func:`fid_from_features`): pytorch-fid /
  TTUR. Mean and covariance with ``N - 1`` (``np.cov(rowvar=False)``); ``scipy.linalg.sqrtm(s1 @ s2)``; if that
  is not finite, ``1e-6 * I`` is added to both covariances and the square root is taken again; a complex
  result is accepted (its real part kept) only if no diagonal imaginary part exceeds ``1e-3``. Note that
  stylegan2-ada / MAT divide the covariance by ``N`` instead (their FID differs slightly); clean-fid and
  LaMa differ only in the imaginary-part tolerance.
* **KID** (:func:`kid_from_features`): torch-fidelity's estimator (polynomial kernel, unbiased MMD^2, mean and
  population std over random subsets drawn by ``np.random.RandomState(seed)``, real indices before fake
  indices in each subset). One deliberate difference: torch-fidelity raises when a set is smaller than the
  subset size, whereas clean-fid / stylegan2-ada shrink the subset to the smaller set; we shrink (like the
  latter) and return the subset size actually used so that it can be recorded next to the value. The kernel
  is evaluated in float64 here; torch-fidelity evaluates it in the features' dtype (float32), so values agree
  to float32 precision, not bit for bit.
* **P-IDS / U-IDS** (:func:`ids_from_features`, :func:`linear_svc`): CoModGAN / MAT. A linear SVM is trained
  on all real features (label "real", the positive class) and all fake features (label "fake"); the
  references call ``sklearn.svm.LinearSVC(dual=False)`` with labels ``1`` (real) / ``0`` (fake), so sklearn's
  positive class is ``1`` = real and ``decision_function > 0`` means "classified as real" (a decision of
  exactly 0 is classified as fake). :func:`linear_svc` solves the same strictly convex primal problem as
  liblinear, but to high precision (liblinear stops at ``tol=1e-4``), so results can differ from the
  references only where that early stop moves a decision across a threshold.
"""

from __future__ import annotations

import inspect
import logging
import warnings

import numpy as np
import scipy.linalg

log = logging.getLogger(__name__)

FID_EPS = 1e-6
"""Added to the covariance diagonals when the matrix square root is not finite (pytorch-fid's ``eps``)."""
FID_IMAG_ATOL = 1e-3
"""Largest tolerated |imaginary part| on the diagonal of sqrtm(s1 @ s2) (pytorch-fid's ``atol``)."""

__all__ = [
    "FID_EPS",
    "FID_IMAG_ATOL",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "ids_from_features",
    "kid_from_features",
    "linear_svc",
]


# ---------------------------------------------------------------------------------------------------- helpers


def _as_features(x, name: str, min_rows: int = 1) -> np.ndarray:
    """``x`` as a finite float64 array ``[N, D]`` with ``N >= min_rows``, or a ValueError saying what is wrong."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D] of features, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no feature dimensions (shape {arr.shape})")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples, got {arr.shape[0]}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _same_dim(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{what}: feature dimensions differ ({a.shape[1]} vs {b.shape[1]})")


def _sqrtm_has_legacy_disp() -> bool:
    """True for scipy versions whose ``sqrtm`` has a plain boolean ``disp`` (before its 1.16 deprecation).

    scipy < 1.16: ``sqrtm(A, disp=True, blocksize=64)``; ``disp=False`` returns ``(sqrtA, errest)`` and
    prints nothing. scipy 1.16-1.17: ``disp`` still accepted but deprecated (a sentinel default, a
    DeprecationWarning when passed); without it only the root is returned. scipy >= 1.18: ``disp`` removed.
    """
    try:
        param = inspect.signature(scipy.linalg.sqrtm).parameters.get("disp")
    except (TypeError, ValueError):  # pragma: no cover - signature not introspectable
        return False
    return param is not None and isinstance(param.default, bool)


_LEGACY_DISP = _sqrtm_has_legacy_disp()


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """Principal matrix square root, equivalent to pytorch-fid's ``scipy.linalg.sqrtm(a, disp=False)[0]``.

    Newer scipy warns (LinAlgWarning) on singular / ill-conditioned input; the caller handles a non-finite
    result itself (as the references do), so that warning is silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        if _LEGACY_DISP:
            out = scipy.linalg.sqrtm(a, disp=False)
        else:
            out = scipy.linalg.sqrtm(a)
    if isinstance(out, tuple):  # legacy (root, error estimate)
        out = out[0]
    return np.asarray(out)


# ---------------------------------------------------------------------------------------------------- FID


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (unbiased, divides by ``N - 1``) of ``features [N, D]``, float64.

    Needs ``N >= 2`` (a covariance from one sample is undefined).
    """
    x = _as_features(features, "features", min_rows=2)
    mu = x.mean(axis=0)
    sigma = np.atleast_2d(np.cov(x, rowvar=False))
    return mu, sigma


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed the way pytorch-fid does.

    ``||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr(sqrtm(sigma1 @ sigma2))``. If the square root is not
    finite (typically: singular covariances from fewer samples than dimensions), ``FID_EPS * I`` is added to
    both covariances and it is retried (a warning is logged). If the root comes back complex, the real part
    is used unless some diagonal entry has ``|imag| > FID_IMAG_ATOL``, in which case a ValueError naming the
    largest imaginary component is raised.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.ndim != 1 or mu2.ndim != 1:
        raise ValueError(f"means must be 1-D vectors, got shapes {mu1.shape} and {mu2.shape}")
    if mu1.shape != mu2.shape:
        raise ValueError(f"the two means have different lengths: {mu1.shape} vs {mu2.shape}")
    d = mu1.shape[0]
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if s.shape != (d, d):
            raise ValueError(
                f"{name} must be a [{d}, {d}] covariance to match the means, got shape {s.shape}"
            )
    for name, v in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or infinite values")

    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        log.warning(
            "FID: sqrtm(sigma1 @ sigma2) is not finite (singular product?); adding %g to the covariance "
            "diagonals and retrying",
            FID_EPS,
        )
        offset = np.eye(d) * FID_EPS
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise ValueError(
                "FID: sqrtm(sigma1 @ sigma2) is not finite even after adding eps to the diagonals"
            )
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0.0, atol=FID_IMAG_ATOL):
            largest = float(np.max(np.abs(covmean.imag)))
            raise ValueError(
                f"FID: sqrtm(sigma1 @ sigma2) has a significant imaginary component (largest |imag| = "
                f"{largest:.6g}, tolerance on the diagonal {FID_IMAG_ATOL:g})"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(real, fake) -> float:
    """FID between two feature sets ``[N1, D]`` and ``[N2, D]`` (each needs at least 2 samples).

    A set smaller than the dimension (a test set of a few hundred images in 2048 dimensions) has a covariance of
    rank below ``D``; then the trace term is taken in the samples' space: with centred ``X1``, ``X2``,
    ``Tr sqrt(S1 S2)`` is the sum of the singular values of ``X1 X2^T / sqrt((N1-1)(N2-1))`` (the non-zero
    eigenvalues of ``S1 S2`` are those of ``X1 X2^T X2 X1^T / ((N1-1)(N2-1))``). It is the same number, exact
    where ``sqrtm`` of a singular ``D x D`` product is ill-conditioned, and seconds faster. Sets of at least ``D``
    samples (the published protocols) take pytorch-fid's ``sqrtm`` path (:func:`frechet_distance`)."""
    r = _as_features(real, "real features", min_rows=2)
    f = _as_features(fake, "fake features", min_rows=2)
    _same_dim(r, f, "FID")
    if min(len(r), len(f)) < r.shape[1]:
        mu_r, mu_f = r.mean(axis=0), f.mean(axis=0)
        xr, xf = r - mu_r, f - mu_f
        scale = np.sqrt((len(r) - 1) * (len(f) - 1))
        trace_sqrt = np.linalg.svd(xr @ xf.T / scale, compute_uv=False).sum()
        diff = mu_r - mu_f
        traces = (xr * xr).sum() / (len(r) - 1) + (xf * xf).sum() / (len(f) - 1)
        return float(diff @ diff + traces - 2.0 * trace_sqrt)
    mu_r, sigma_r = feature_statistics(r)
    mu_f, sigma_f = feature_statistics(f)
    return frechet_distance(mu_r, sigma_r, mu_f, sigma_f)


# ---------------------------------------------------------------------------------------------------- KID


def _poly_kernel(a: np.ndarray, b: np.ndarray, degree, gamma: float, coef0: float) -> np.ndarray:
    return (gamma * (a @ b.T) + coef0) ** degree


def _unbiased_mmd2(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD^2: within-set sums drop the diagonal, the cross sum keeps it (torch-fidelity's 'unbiased')."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - np.trace(k_xx)) + (k_yy.sum() - np.trace(k_yy))
    return float(within / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid_from_features(
    real,
    fake,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 2020,
) -> dict[str, float | int]:
    """Kernel Inception Distance (torch-fidelity's estimator) between ``real [N1, D]`` and ``fake [N2, D]``.

    Kernel ``k(x, y) = (gamma * x.y + coef0) ** degree`` with ``gamma = 1 / D`` by default. The subset size
    actually used is ``m = min(N1, N2, subset_size)``: clean-fid and stylegan2-ada shrink it like this,
    torch-fidelity instead refuses sets smaller than ``subset_size`` (with enough samples all three agree).
    A ``np.random.RandomState(seed)`` draws, for each of ``subsets`` subsets, ``m`` real indices and then
    ``m`` fake indices, both without replacement (torch-fidelity's order, with real as its input 1). Each
    subset gives the unbiased MMD^2; returns ``{"mean": ..., "std": ..., "subset_size": m}`` with the mean and
    the population standard deviation (``np.std``) over subsets. KID can be negative for close sets.
    """
    r = _as_features(real, "real features", min_rows=1)
    f = _as_features(fake, "fake features", min_rows=1)
    _same_dim(r, f, "KID")
    if int(subsets) != subsets or subsets < 1:
        raise ValueError(f"KID: subsets must be a positive integer, got {subsets}")
    if int(subset_size) != subset_size or subset_size < 2:
        raise ValueError(f"KID: subset_size must be an integer >= 2, got {subset_size}")
    n_r, n_f = r.shape[0], f.shape[0]
    m = int(min(n_r, n_f, subset_size))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples in each set (got {n_r} real and {n_f} fake)")
    if gamma is None:
        gamma = 1.0 / r.shape[1]

    rng = np.random.RandomState(seed)
    mmds = np.empty(int(subsets), dtype=np.float64)
    for i in range(int(subsets)):
        x = r[rng.choice(n_r, m, replace=False)]
        y = f[rng.choice(n_f, m, replace=False)]
        mmds[i] = _unbiased_mmd2(
            _poly_kernel(x, x, degree, gamma, coef0),
            _poly_kernel(y, y, degree, gamma, coef0),
            _poly_kernel(x, y, degree, gamma, coef0),
        )
    return {"mean": float(np.mean(mmds)), "std": float(np.std(mmds)), "subset_size": m}


# ---------------------------------------------------------------------------------------------------- SVM


def _augmented_gram(x: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """``[x_i, 1]^T [x_i, 1]`` summed over the selected rows (all rows when ``rows`` is None): ``[D+1, D+1]``."""
    xs = x if rows is None else x[rows]
    d = x.shape[1]
    g = np.empty((d + 1, d + 1), dtype=np.float64)
    g[:d, :d] = xs.T @ xs
    col = xs.sum(axis=0)
    g[:d, d] = col
    g[d, :d] = col
    g[d, d] = xs.shape[0]
    return g


class _GramCache:
    """The augmented Gram matrix of the current active set, updated by the rows that entered / left it.

    Near the optimum the active set changes by a few rows per Newton iteration, so the update costs far less
    than rebuilding (``N * D^2``); rounding drift only perturbs the Newton direction, never the gradient, so
    it cannot move the solution.
    """

    def __init__(self, x: np.ndarray):
        self.x = x
        self.rows: np.ndarray | None = None
        self.gram: np.ndarray | None = None

    def get(self, active: np.ndarray) -> np.ndarray:
        if self.rows is not None and self.gram is not None:
            added = active & ~self.rows
            removed = self.rows & ~active
            n_changed = int(added.sum() + removed.sum())
            if n_changed == 0:
                return self.gram
            if n_changed < int(active.sum()) // 2:
                if added.any():
                    self.gram += _augmented_gram(self.x, added)
                if removed.any():
                    self.gram -= _augmented_gram(self.x, removed)
                self.rows = active.copy()
                return self.gram
        self.gram = _augmented_gram(self.x, None if active.all() else active)
        self.rows = active.copy()
        return self.gram


def _spd_solve(a: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``a @ s = rhs`` for a symmetric positive-definite ``a`` (Cholesky, LU as a fallback)."""
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, lower=True, check_finite=False), rhs)
    except np.linalg.LinAlgError:  # pragma: no cover - a >= I in exact arithmetic
        return np.linalg.solve(a, rhs)


def _newton_direction(
    x: np.ndarray, active: np.ndarray, g: np.ndarray, c2: float, cache: _GramCache
) -> np.ndarray:
    """``-H^{-1} g`` for the generalised Hessian ``H = I + c2 * A^T A``, ``A`` = active rows of ``[x, 1]``.

    With at least ``D + 1`` active rows, the ``[D+1, D+1]`` system is solved (primal form). With fewer
    (e.g. ``N < D``), the Woodbury identity ``H^{-1} = I - c2 A^T (I + c2 A A^T)^{-1} A`` needs only an
    ``[n_active, n_active]`` system.
    """
    d1 = x.shape[1] + 1
    n_act = int(active.sum())
    if n_act >= d1:
        h = c2 * cache.get(active)
        h[np.diag_indices(d1)] += 1.0
        return -_spd_solve(h, g)
    xa = x[active]
    k = c2 * (xa @ xa.T + 1.0)
    k[np.diag_indices(n_act)] += 1.0
    ag = xa @ g[:-1] + g[-1]
    u = _spd_solve(k, ag)
    s = g.copy()
    s[:-1] -= c2 * (xa.T @ u)
    s[-1] -= c2 * u.sum()
    return -s


def _exact_line_search(
    wb: np.ndarray, s: np.ndarray, margin: np.ndarray, dmargin: np.ndarray, c: float
) -> float:
    """Exact minimiser ``t > 0`` of ``phi(t) = 0.5 |wb + t s|^2 + c sum max(0, 1 - margin - t dmargin)^2``.

    ``phi'`` is continuous, non-decreasing and piecewise linear; its kinks are where a sample enters or
    leaves the active set. Walk the kinks in order and return the root of the first linear piece whose root
    lies before the next kink.
    """
    slack = 1.0 - margin
    # active just after t = 0 (a sample exactly on the margin counts if the step pushes it inside)
    active0 = (slack > 0) | ((slack == 0) & (dmargin < 0))
    leaving = active0 & (dmargin > 0)  # slack > 0 here: leaves at t = slack / dmargin > 0
    entering = ~active0 & (dmargin < 0) & (slack < 0)  # enters at t = slack / dmargin > 0
    c2 = 2.0 * c
    # phi'(t) = a + b t on each piece
    a = float(wb @ s) + c2 * float(np.sum(dmargin[active0] * -slack[active0]))
    b = float(s @ s) + c2 * float(np.sum(dmargin[active0] ** 2))
    events = leaving | entering
    t_ev = slack[events] / dmargin[events]
    sign = np.where(leaving[events], -1.0, 1.0)
    da = sign * c2 * dmargin[events] * -slack[events]
    db = sign * c2 * dmargin[events] ** 2
    order = np.argsort(t_ev, kind="stable")
    t_ev, da, db = t_ev[order], da[order], db[order]
    a_seg = a + np.concatenate(([0.0], np.cumsum(da)))
    b_seg = b + np.concatenate(([0.0], np.cumsum(db)))
    left = np.concatenate(([0.0], t_ev))
    right = np.concatenate((t_ev, [np.inf]))
    b_seg = np.maximum(b_seg, float(s @ s))  # >= |s|^2 > 0 in exact arithmetic; guard against cancellation
    roots = -a_seg / b_seg
    k = int(np.argmax(roots <= right))  # the last piece has right = inf, so some piece qualifies
    return float(min(max(roots[k], left[k]), right[k]))


def _svm_objective(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray, c: float) -> float:
    """0.5 (|w|^2 + b^2) + c sum max(0, 1 - y (x.w + b))^2 (liblinear's primal with the intercept as a feature)."""
    hinge = np.maximum(0.0, 1.0 - y * (x @ w + b))
    return float(0.5 * (w @ w + b * b) + c * (hinge @ hinge))


def linear_svc(X, y, C: float = 1.0, tol: float = 1e-10, max_iter: int = 200) -> tuple[np.ndarray, float]:
    """Exact optimum of the problem ``sklearn.svm.LinearSVC(dual=False)`` hands to liblinear, as ``(w, b)``.

    Minimises ``0.5 (|w|^2 + b^2) + C sum_i max(0, 1 - y_i (w.x_i + b))^2`` over ``w [D]`` and ``b`` with
    labels ``y_i`` in ``{-1, +1}``: LinearSVC's defaults (l2 penalty, squared hinge, fit_intercept with
    intercept_scaling=1, i.e. a constant feature 1 whose weight ``b`` is regularised like the others).
    ``X @ w + b`` is then LinearSVC's ``decision_function`` with ``+1`` as its positive class.

    The objective is strictly convex and piecewise quadratic, so a generalised Newton method (Hessian
    ``I + 2C A^T A`` over the rows ``A`` inside the margin, as in liblinear's primal solvers and Keerthi &
    DeCoste's finite Newton method) with an exact line search reaches the optimum in few iterations, to
    float64 precision. Each iteration solves a ``[D+1, D+1]`` system (Cholesky, ~D^3/3; the Gram matrix is
    updated incrementally as the active set settles), or an ``[n_active, n_active]`` one when fewer rows are
    active than ``D + 1`` (always the case for N < D). ``X`` is converted to float64 (for 73,000 x 2048
    features that is ~1.2 GB).

    Stops when the gradient norm is at most ``tol`` times the larger of its norm at ``w = b = 0`` and the
    magnitude of the terms it sums (a rounding-aware scale). Raises RuntimeError if that does not happen in
    ``max_iter`` Newton iterations.
    """
    x = _as_features(X, "X", min_rows=1)
    yy = np.asarray(y)
    if yy.ndim != 1 or yy.shape[0] != x.shape[0]:
        raise ValueError(f"y must be a 1-D array of {x.shape[0]} labels, got shape {yy.shape}")
    if not np.isin(yy, (-1, 1)).all():
        raise ValueError(f"labels must be -1 or +1, got values {np.unique(yy)[:10].tolist()}")
    yy = yy.astype(np.float64)
    if not (np.isfinite(C) and C > 0):
        raise ValueError(f"C must be a positive finite number, got {C}")
    if not (tol > 0):
        raise ValueError(f"tol must be positive, got {tol}")
    if int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter}")

    n, d = x.shape
    c2 = 2.0 * float(C)
    row_sq = np.einsum("ij,ij->i", x, x) + 1.0  # |[x_i, 1]|^2
    wb = np.zeros(d + 1)  # [w, b]
    z = np.zeros(n)  # decision values x.w + b
    cache = _GramCache(x)
    g0 = None
    gnorm = np.inf
    for it in range(int(max_iter) + 1):
        margin = yy * z
        active = margin < 1.0
        r = np.where(active, z - yy, 0.0)
        g = wb.copy()
        g[:-1] += c2 * (x.T @ r)
        g[-1] += c2 * r.sum()
        gnorm = float(np.linalg.norm(g))
        if g0 is None:
            g0 = gnorm
        scale = float(np.linalg.norm(wb)) + c2 * float(np.sqrt(np.sum(r * r * row_sq)))
        if gnorm <= tol * max(g0, scale):
            return wb[:-1].copy(), float(wb[-1])
        if it == int(max_iter):
            break
        s = _newton_direction(x, active, g, c2, cache)
        if not float(g @ s) < 0.0:  # rounding made the Newton step useless: fall back to steepest descent
            s = -g
        dz = x @ s[:-1] + s[-1]
        t = _exact_line_search(wb, s, margin, yy * dz, float(C))
        if not t > 0.0:
            raise RuntimeError(
                f"linear_svc: line search made no progress at iteration {it} (gradient norm {gnorm:.3e}, "
                f"target {tol * max(g0, scale):.3e})"
            )
        wb += t * s
        z = x @ wb[:-1] + wb[-1]
    raise RuntimeError(
        f"linear_svc did not converge in {max_iter} Newton iterations: gradient norm {gnorm:.3e} > "
        f"tol * scale = {tol * max(g0 or 0.0, scale):.3e}; raise max_iter or tol"
    )


# ---------------------------------------------------------------------------------------------------- IDS


def ids_from_features(real, fake) -> dict[str, float]:
    """Paired / unpaired Inception Discriminative Scores (CoModGAN, MAT) of paired feature sets ``[N, D]``.

    ``fake[i]`` must be the inpainted version of ``real[i]`` (same image, same mask), so both sets have the
    same size. A linear SVM (:func:`linear_svc`, i.e. ``LinearSVC(dual=False)`` at its exact optimum) is fit
    on all ``2N`` raw (unscaled) features, real as the positive class (the references' label 1) and fake as
    the negative one (their label 0); ``d(x) = w.x + b > 0`` means "classified real", ``d = 0`` counts as
    fake (sklearn's ``predict``).

    * ``uids`` = 1 - accuracy of that SVM on its own training set (its misclassification rate);
    * ``pids`` = fraction of pairs with ``d(fake_i) > d(real_i)`` (strict: ties count as not fooled).

    Both are fractions in [0, 1] (papers print them x100). For identical sets the optimum is ``w = 0,
    b = 0`` (the objective is even in ``(w, b)``), so ``uids = 0.5`` and ``pids = 0``.
    """
    r = _as_features(real, "real features", min_rows=1)
    f = _as_features(fake, "fake features", min_rows=1)
    if r.shape != f.shape:
        raise ValueError(
            f"P-IDS/U-IDS need paired sets of the same shape (fake i = inpainted real i), got real "
            f"{r.shape} and fake {f.shape}"
        )
    n = r.shape[0]
    x = np.concatenate([r, f], axis=0)
    y = np.concatenate([np.ones(n), -np.ones(n)])
    w, b = linear_svc(x, y)
    d_real = r @ w + b
    d_fake = f @ w + b
    correct = np.concatenate([d_real > 0, ~(d_fake > 0)])
    return {"pids": float(np.mean(d_fake > d_real)), "uids": float(1.0 - np.mean(correct))}
