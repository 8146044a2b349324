"Transferability estimators against direct, slow evaluations of their formulas; study 000's analysis on its published files."
import itertools

import numpy as np
import pytest
from scipy import optimize, stats
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA

from medsegpaper.transferability_estimators import gbc, h_score, logme, rank_agreement, regularized_h_score, transrate


def data(n, d, k, seed, spread=1.5):
    "Random features with class structure: n samples, d dimensions, k classes."
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return rng.normal(size=(n, d)) + spread * rng.normal(size=(k, d))[y], y


def marginal_loglik(X, t, log_alpha, log_beta):
    "log N(t; 0, X X^T / alpha + I / beta): the evidence of Bayesian linear regression, straight from its definition."
    cov = X @ X.T * np.exp(-log_alpha) + np.eye(len(X)) * np.exp(-log_beta)
    return stats.multivariate_normal(np.zeros(len(X)), cov).logpdf(t)


@pytest.mark.parametrize('n,d', [(40, 5), (8, 12)])
def test_logme_is_the_maximised_evidence(n, d):
    X, y = data(n, d, 3, seed=n)
    best = []
    for c in range(3):
        t = (y == c) * 1.
        fits = [optimize.minimize(lambda p: -marginal_loglik(X, t, *p), x0, method='Nelder-Mead',
                                  options=dict(xatol=1e-10, fatol=1e-12, maxiter=20000)) for x0 in ([0., 0.], [3., 1.], [-2., 2.])]
        best.append(-min(f.fun for f in fits) / n)
    assert logme(X, y, tol=1e-12, max_iter=10000) == pytest.approx(np.mean(best), rel=1e-7, abs=1e-9)
    assert logme(X, y) == pytest.approx(np.mean(best), rel=1e-3)   # the paper's tolerance is near the maximum too


def test_h_score_by_its_definition():
    X, y = data(60, 4, 3, seed=1)
    mu = X.mean(0)
    cov_f = sum(np.outer(x - mu, x - mu) for x in X) / (len(X) - 1)
    means = {c: X[y == c].mean(0) for c in range(3)}
    cov_g = sum(np.outer(means[c] - mu, means[c] - mu) for c in y) / (len(X) - 1)
    assert h_score(X, y) == pytest.approx(np.trace(np.linalg.inv(cov_f) @ cov_g), rel=1e-10)


def test_regularized_h_score_by_its_definition():
    X, y = data(30, 20, 4, seed=2)
    lw = LedoitWolf().fit(X)
    mu, a = X.mean(0), lw.shrinkage_
    means = {c: X[y == c].mean(0) for c in range(4)}
    cov_g = sum(np.outer(means[c] - mu, means[c] - mu) for c in y) / len(X)
    want = np.trace(np.linalg.inv(lw.covariance_) @ ((1 - a) * cov_g))
    assert 0 < a < 1
    assert regularized_h_score(X, y) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize('gaussian', ['diagonal', 'spherical'])
def test_gbc_by_its_definition(gaussian):
    X, y = data(90, 10, 3, seed=3)
    Z = PCA(n_components=6).fit_transform(X)
    def stats_of(c):
        var = Z[y == c].var(0)
        return Z[y == c].mean(0), np.diag(np.full(len(var), var.mean()) if gaussian == 'spherical' else var)
    total = 0.
    for i, j in itertools.permutations(range(3), 2):
        (m1, s1), (m2, s2) = stats_of(i), stats_of(j)
        s = (s1 + s2) / 2
        db = (m1 - m2) @ np.linalg.inv(s) @ (m1 - m2) / 8 + np.log(np.linalg.det(s) / np.sqrt(np.linalg.det(s1) * np.linalg.det(s2))) / 2
        total -= np.exp(-db)
    assert gbc(X, y, n_components=6, gaussian=gaussian, eps=0) == pytest.approx(total, rel=1e-9)


@pytest.mark.parametrize('n,d', [(50, 4), (12, 30)])
def test_transrate_by_its_definition(n, d):
    X, y = data(n, d, 2, seed=4)
    Z, eps = X - X.mean(0), 1e-2
    rate = lambda A: np.log(np.linalg.det(np.eye(d) + A.T @ A / (len(A) * eps))) / 2
    assert transrate(X, y, eps) == pytest.approx(rate(Z) - (rate(Z[y == 0]) + rate(Z[y == 1])) / 2, rel=1e-9)


def test_rank_agreement_by_its_definition():
    rng = np.random.default_rng(5)
    s, q = rng.normal(size=12), rng.normal(size=12)
    r = rank_agreement(s, q, lower_is_better=True)
    rs, rq = stats.rankdata(-s), stats.rankdata(q)
    pairs = list(itertools.combinations(range(12), 2))
    assert r['spearman'] == pytest.approx(np.corrcoef(rs, rq)[0, 1], rel=1e-12)
    assert r['kendall'] == pytest.approx(sum(np.sign((s[j] - s[i]) * -(q[j] - q[i])) for i, j in pairs) / len(pairs), rel=1e-12)
    assert r['regret'] == pytest.approx(q.max() - q[np.argmin(s)])
    assert r['weighted_tau'] == pytest.approx(stats.weightedtau(-s, q).statistic)
