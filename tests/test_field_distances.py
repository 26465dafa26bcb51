"""Tests for inpaint.evaluation.distances (FID, KID, P-IDS/U-IDS) against closed forms and independent references.

References used: closed-form FID of commuting Gaussians, an eigen-decomposition FID, a double-loop unbiased
MMD^2 on independently reproduced subset draws, and sklearn's LinearSVC (liblinear) for the SVM.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from inpaint.evaluation import distances
from inpaint.evaluation.distances import (
    feature_statistics,
    fid_from_features,
    frechet_distance,
    ids_from_features,
    kid_from_features,
    linear_svc,
)

# ---------------------------------------------------------------------------------------------------- helpers


def _random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, 2 * d))
    return a @ a.T / (2 * d) + 0.1 * np.eye(d)


def _fid_eigh(mu1, s1, mu2, s2) -> float:
    """FID with Tr sqrt(s1 s2) = Tr sqrt(s1^1/2 s2 s1^1/2) from symmetric eigen-decompositions (no sqrtm)."""
    vals, vecs = np.linalg.eigh(s1)
    root1 = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


def _naive_kid(real, fake, subsets, m, seed, degree=3, coef0=1.0):
    """KID with explicit double loops; the subset draws are reproduced here (real indices, then fake)."""
    d = real.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + coef0) ** degree

    rng = np.random.RandomState(seed)
    vals = []
    for _ in range(subsets):
        xi = rng.choice(len(real), m, replace=False)
        yi = rng.choice(len(fake), m, replace=False)
        x, y = real[xi], fake[yi]
        sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
        syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
        sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
        vals.append((sxx + syy) / (m * (m - 1)) - 2 * sxy / (m * m))
    vals = np.array(vals)
    return vals.mean(), vals.std()


def _objective(w, b, x, y, c=1.0):
    hinge = np.maximum(0.0, 1.0 - y * (x @ w + b))
    return 0.5 * (w @ w + b * b) + c * hinge @ hinge


def _svm_problem(seed, n, d, sep):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) + 0.3
    y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    x[y > 0, 0] += sep
    x[y > 0] += 0.5 * sep / np.sqrt(d)
    return x, y


# ---------------------------------------------------------------------------------------------------- FID


def test_feature_statistics_matches_numpy():
    x = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    mu, sigma = feature_statistics(x)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mu, x64.mean(0), rtol=1e-13)
    centered = x64 - x64.mean(0)
    np.testing.assert_allclose(sigma, centered.T @ centered / 49, rtol=1e-12)  # N - 1


def test_fid_closed_form_diagonal_and_rotated():
    rng = np.random.default_rng(1)
    d = 12
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    expected = float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    q = _random_rotation(rng, d)  # commuting, non-diagonal covariances
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_fid_general_matches_eigendecomposition():
    rng = np.random.default_rng(2)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_fid_eigh(mu1, s1, mu2, s2), rel=1e-9)


def test_fid_from_features_identity_and_symmetry():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 20))
    y = rng.normal(size=(250, 20)) * 1.3 + 0.2
    _, sigma = feature_statistics(x)
    assert abs(fid_from_features(x, x)) < 1e-6 * np.trace(sigma)
    fxy, fyx = fid_from_features(x, y), fid_from_features(y, x)
    assert fxy > 0
    assert fxy == pytest.approx(fyx, rel=1e-9)
    mu_x, s_x = x.mean(0), np.cov(x, rowvar=False)
    mu_y, s_y = y.mean(0), np.cov(y, rowvar=False)
    assert fxy == pytest.approx(_fid_eigh(mu_x, s_x, mu_y, s_y), rel=1e-9)


def test_fid_eps_fallback(monkeypatch, caplog):
    rng = np.random.default_rng(4)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    real_sqrtm = distances._sqrtm
    calls = []

    def flaky_sqrtm(a):
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(distances, "_sqrtm", flaky_sqrtm)
    with caplog.at_level(logging.WARNING, logger=distances.__name__):
        value = frechet_distance(mu1, s1, mu2, s2)
    assert len(calls) == 2 and any("not finite" in rec.getMessage() for rec in caplog.records)
    eye = np.eye(d) * distances.FID_EPS
    np.testing.assert_allclose(calls[1], (s1 + eye) @ (s2 + eye))
    # traces are those of the original covariances, the root that of the shifted ones (as pytorch-fid)
    diff = mu1 - mu2
    tr_root = np.trace(real_sqrtm((s1 + eye) @ (s2 + eye))).real
    assert value == pytest.approx(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_root, rel=1e-12)


def test_fid_singular_covariances_stay_finite():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(10, 32)), rng.normal(size=(12, 32)) + 0.1  # N < D: rank-deficient
    value = fid_from_features(real, fake)
    assert np.isfinite(value) and value > 0
    mu_r, s_r = feature_statistics(real)
    mu_f, s_f = feature_statistics(fake)
    assert value == pytest.approx(_fid_eigh(mu_r, s_r, mu_f, s_f), rel=1e-5)


def test_fid_complex_root_handling(monkeypatch):
    d = 4
    mu, s = np.zeros(d), np.eye(d)
    small = np.eye(d) + 1e-5j * np.eye(d)
    monkeypatch.setattr(distances, "_sqrtm", lambda a: small)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-12)
    big = np.eye(d) + 0.02j * np.eye(d)
    big[0, 1] = 0.05j
    monkeypatch.setattr(distances, "_sqrtm", lambda a: big)
    with pytest.raises(ValueError, match=r"0\.05"):
        frechet_distance(mu, s, mu, s)


def test_sqrtm_wrapper_returns_the_root():
    s = _random_spd(np.random.default_rng(6), 5)
    root = distances._sqrtm(s)
    assert isinstance(root, np.ndarray) and root.shape == (5, 5)
    np.testing.assert_allclose(root @ root, s, atol=1e-12)


def test_sqrtm_wrapper_on_legacy_scipy(monkeypatch):
    # scipy < 1.16: sqrtm(A, disp=True, blocksize=64), disp=False returns (root, error estimate)
    real_sqrtm = distances.scipy.linalg.sqrtm
    seen = {}

    def legacy_sqrtm(a, disp=True, blocksize=64):
        seen["disp"] = disp
        root = real_sqrtm(a)
        return root if disp else (root, 0.0)

    monkeypatch.setattr(distances.scipy.linalg, "sqrtm", legacy_sqrtm)
    assert distances._sqrtm_has_legacy_disp()
    monkeypatch.setattr(distances, "_LEGACY_DISP", True)
    s = _random_spd(np.random.default_rng(16), 4)
    root = distances._sqrtm(s)
    assert seen["disp"] is False and isinstance(root, np.ndarray)
    np.testing.assert_allclose(root @ root, s, atol=1e-12)

    # scipy >= 1.18: no disp at all
    def modern_sqrtm(a):
        return real_sqrtm(a)

    monkeypatch.setattr(distances.scipy.linalg, "sqrtm", modern_sqrtm)
    assert not distances._sqrtm_has_legacy_disp()


def test_fid_input_errors():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="lengths"):
        frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(mu, s, mu, np.eye(2))
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="dimensions differ"):
        fid_from_features(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="2-D"):
        feature_statistics(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        fid_from_features(np.full((4, 3), np.nan), np.zeros((4, 3)))


# ---------------------------------------------------------------------------------------------------- KID


def test_kid_matches_naive_double_loop():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(15, 4))
    fake = rng.normal(size=(12, 4)) + 0.5
    out = kid_from_features(real, fake, subsets=4, subset_size=10, seed=11)
    mean, std = _naive_kid(real, fake, subsets=4, m=10, seed=11)
    assert out["subset_size"] == 10
    assert out["mean"] == pytest.approx(mean, rel=1e-12)
    assert out["std"] == pytest.approx(std, rel=1e-10)
    # gamma defaults to 1 / D
    assert (
        kid_from_features(real, fake, subsets=4, subset_size=10, seed=11, gamma=0.25)["mean"] == out["mean"]
    )


def test_kid_subset_clamped_to_smaller_set():
    rng = np.random.default_rng(8)
    real, fake = rng.normal(size=(9, 3)), rng.normal(size=(13, 3)) * 1.5
    out = kid_from_features(real, fake, subsets=3)  # default subset_size 1000 > both sets
    assert out["subset_size"] == 9
    mean, std = _naive_kid(real, fake, subsets=3, m=9, seed=2020)
    assert out["mean"] == pytest.approx(mean, rel=1e-12)
    assert out["std"] == pytest.approx(std, rel=1e-10)


def test_kid_identical_sets():
    x = np.random.default_rng(9).normal(size=(40, 6))
    k = (x @ x.T / 6 + 1.0) ** 3
    total, diag = k.sum(), np.trace(k)
    # m = n: both subsets are the whole set (permuted), so every subset gives the same value
    out = kid_from_features(x, x, subsets=5, subset_size=40)
    exact = 2 * ((total - diag) / (40 * 39) - total / 40**2)
    assert out["mean"] == pytest.approx(exact, rel=1e-10)
    assert out["std"] < 1e-12 * abs(exact)
    # m < n: on average the estimator equals 2 (S/n - T) / (n (n-1)) (small, O(1/n) of the kernel scale)
    out = kid_from_features(x, x, subsets=400, subset_size=10, seed=3)
    expected = 2 * (total / 40 - diag) / (40 * 39)
    assert abs(out["mean"] - expected) < 4 * out["std"] / np.sqrt(400)


def test_kid_detects_a_shift():
    rng = np.random.default_rng(10)
    real, fake = rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 1.0
    out = kid_from_features(real, fake, subsets=20, subset_size=50)
    assert out["mean"] > 3 * out["std"] > 0


def test_kid_input_errors():
    with pytest.raises(ValueError, match="at least 2"):
        kid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="dimensions differ"):
        kid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="subset_size"):
        kid_from_features(np.zeros((5, 3)), np.zeros((5, 3)), subset_size=1)


# ---------------------------------------------------------------------------------------------------- SVM

SVM_PROBLEMS = [
    pytest.param(60, 5, 6.0, id="separable"),
    pytest.param(300, 10, 0.7, id="overlapping"),
    pytest.param(40, 120, 0.5, id="n<d"),
    pytest.param(150, 100, 0.4, id="n~d"),
    pytest.param(400, 20, 0.0, id="no-signal"),
]


@pytest.mark.parametrize(("n", "d", "sep"), SVM_PROBLEMS)
def test_linear_svc_matches_liblinear(n, d, sep):
    svm = pytest.importorskip("sklearn.svm")
    x, y = _svm_problem(n + d, n, d, sep)
    w, b = linear_svc(x, y)
    ref = svm.LinearSVC(dual=False, tol=1e-12, max_iter=100_000).fit(x, (y > 0).astype(int))
    w_ref, b_ref = ref.coef_[0], float(ref.intercept_[0])
    f, f_ref = _objective(w, b, x, y), _objective(w_ref, b_ref, x, y)
    assert f <= f_ref * (1 + 1e-12)  # ours is the optimum (up to rounding)
    assert f == pytest.approx(f_ref, rel=1e-6)
    scale = max(1.0, np.abs(w_ref).max())
    np.testing.assert_allclose(w, w_ref, atol=1e-5 * scale)
    assert b == pytest.approx(b_ref, abs=1e-5 * scale)
    np.testing.assert_allclose(x @ w + b, ref.decision_function(x), atol=1e-4 * scale)


@pytest.mark.parametrize(("n", "d", "sep"), SVM_PROBLEMS)
def test_linear_svc_gradient_vanishes(n, d, sep):
    x, y = _svm_problem(n + d, n, d, sep)
    w, b = linear_svc(x, y)
    z = x @ w + b
    r = np.where(y * z < 1, z - y, 0.0)
    grad = np.concatenate([w + 2 * x.T @ r, [b + 2 * r.sum()]])
    assert np.linalg.norm(grad) < 1e-8 * max(1.0, np.linalg.norm(x) * np.linalg.norm(r))


def test_linear_svc_errors():
    x, y = _svm_problem(0, 60, 5, 6.0)
    with pytest.raises(ValueError, match="-1 or \\+1"):
        linear_svc(x, (y > 0).astype(int))
    with pytest.raises(ValueError, match="labels"):
        linear_svc(x, y[:-1])
    with pytest.raises(RuntimeError, match="did not converge"):
        linear_svc(x, y, max_iter=1)


# ---------------------------------------------------------------------------------------------------- IDS


def test_ids_identical_sets():
    # (w, b) -> (-w, -b) swaps the roles of the two identical copies and leaves the objective unchanged, so
    # the strictly convex problem has its optimum at w = 0, b = 0: every decision is 0, i.e. "fake". Then all
    # N real are misclassified and all N fake correct (U-IDS = 0.5), and no pair has d(fake) > d(real)
    # (P-IDS = 0). Any rounding leaves d(fake_i) == d(real_i) bitwise, so these hold exactly.
    x = np.random.default_rng(12).normal(size=(64, 16)) + 0.5
    out = ids_from_features(x, x.copy())
    assert out == {"pids": 0.0, "uids": 0.5}


def test_ids_well_separated_sets():
    rng = np.random.default_rng(13)
    real = rng.normal(size=(50, 8)) + 5.0
    fake = rng.normal(size=(50, 8)) - 5.0
    assert ids_from_features(real, fake) == {"pids": 0.0, "uids": 0.0}


def test_ids_sign_convention():
    # real around +4, fake around -4 on axis 0; fake_0 lies beyond real_0 on the real side: it fools the SVM
    # (classified real, and more "real" than its pair), everything else is classified correctly.
    rng = np.random.default_rng(14)
    real = rng.normal(scale=0.3, size=(20, 2))
    real[:, 0] += 4.0
    fake = rng.normal(scale=0.3, size=(20, 2))
    fake[:, 0] -= 4.0
    fake[0] = real[0] + np.array([3.0, 0.0])
    out = ids_from_features(real, fake)
    assert out["pids"] == pytest.approx(1 / 20)
    assert out["uids"] == pytest.approx(1 / 40)


def test_ids_matches_reference_recipe():
    svm = pytest.importorskip("sklearn.svm")
    rng = np.random.default_rng(15)
    real = np.abs(rng.normal(size=(120, 24)))
    fake = real + rng.normal(scale=0.3, size=real.shape) + 0.02
    # CoModGAN / MAT: LinearSVC(dual=False), labels 1 = real, 0 = fake (tighter tol than theirs)
    ref = svm.LinearSVC(dual=False, tol=1e-12, max_iter=100_000)
    inputs = np.concatenate([real, fake])
    targets = np.array([1] * len(real) + [0] * len(fake))
    ref.fit(inputs, targets)
    uids = 1 - ref.score(inputs, targets)
    pids = np.mean(ref.decision_function(fake) > ref.decision_function(real))
    out = ids_from_features(real, fake)
    assert 0 < out["uids"] < 0.5 and 0 < out["pids"] < 0.5
    assert out["uids"] == pytest.approx(uids, abs=1e-12)
    assert out["pids"] == pytest.approx(pids, abs=1e-12)


def test_ids_needs_paired_sets():
    with pytest.raises(ValueError, match="paired"):
        ids_from_features(np.zeros((5, 3)), np.zeros((6, 3)))


@pytest.mark.parametrize("n", [5, 40, 63])
def test_small_sets_take_the_sample_space_trace_and_agree_with_sqrtm(n):
    rng = np.random.default_rng(n)
    real, fake = rng.normal(size=(n, 64)), rng.normal(size=(n + 2, 64)) * 1.3 + 0.2
    mu1, s1 = feature_statistics(real)
    mu2, s2 = feature_statistics(fake)
    assert fid_from_features(real, fake) == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-6)
