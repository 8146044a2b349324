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


# --- study 000's analysis on its published files (the numbers quoted in nbs/transfer000_analysis.ipynb and the README)

@pytest.fixture(scope='module')
def published():
    from tests.conftest import REFERENCE
    from medsegpaper.studies import transfer000 as t
    folder = REFERENCE/'medsegpretrain'
    if not folder.is_dir(): pytest.skip(f'published reference files not found at {folder}')
    down, rob = t.read_downstream(folder/'downstream_scores.csv'), t.read_robustness(folder/'robustness_scores.csv')
    means = t.dice_by_length(t.drop_repeated_runs(down))
    return dict(t=t, down=down, rob=rob, means=means, imagenet=t.imagenet_vs_dice(means))


def test_published_flaws(reference, published):
    t, down, rob = published['t'], published['down'], published['rob']
    assert (len(down), len(rob)) == (1691, 25200)
    rep = t.repeated_runs(down)
    assert rep[['model', 'dataset', 'pretraining length', 'seed', 'rows', 'identical']].values.tolist() == [
        ['ResNet50 Attention U-Net', 'IDRiD', 100, 123125, 2, True], ['basic U-Net', 'ACDC', 5, 123127, 2, True]]
    miss = t.missing_runs(down)
    assert len(miss) == 21 and set(miss.dataset) == {'IDRiD'} and set(miss.seed) == {123125}
    assert miss.model.value_counts().to_dict() == {'Swin U-Net': 17, 'basic U-Net': 4}
    assert len(t.drop_repeated_runs(down)) + len(miss) == 1710
    assert t.copied_length_zero(rob) == {'acdc': 300, 'idrid': 300}
    copies = t.length_zero_copies(rob)
    other = copies[~((copies.length == 300) & copies.ds.isin(['acdc', 'idrid']))]
    assert (other.equal == other.equal_zero).all() and copies.query("ds == 'covid_qu'").equal.max() == 1


def test_published_pretraining_length(reference, published):
    t, iv = published['t'], published['imagenet']
    s = t.summarise(iv.assign(all=''), 'all').iloc[0]
    assert (s.groups, round(s.mean_rho, 3), round(s.median_rho, 3), round(s.share_pos * 36), s.share_neg) == (36, 0.606, 0.909, 22, 0)
    assert iv.best_length.value_counts().to_dict() == {300: 9, 250: 9, 200: 6, 1: 3, 0: 2, 20: 2, 150: 2, 5: 1, 50: 1, 100: 1}
    assert round(t.summarise(iv, 'enc').loc['unet', 'mean_rho'], 2) == 0.23 and (iv.query("enc == 'unet'").best_length <= 50).sum() == 7
    regrets = t.choice_regrets(published['means'])[['longest', 'none', 'random']]
    assert regrets.mean().round(3).tolist() == [0.004, 0.051, 0.019] and round(regrets.longest.max(), 3) == 0.022


def test_published_robustness_against_dice(reference, published):
    t = published['t']
    sv = t.score_vs_dice(published['rob'], published['means'])
    clean = t.score_vs_dice(t.drop_copied_length_zero(published['rob']), published['means'])
    row = lambda tab: t.summarise(tab.assign(all=''), 'all').iloc[0].round(3)
    assert row(sv)[['groups', 'mean_rho', 'median_rho', 'share_pos', 'share_neg', 'mean_regret']].tolist() == [5040, 0.117, 0.14, 0.139, 0.053, 0.018]
    assert row(clean)[['mean_rho', 'share_pos', 'share_neg']].tolist() == [0.12, 0.206, 0.102]
    by = lambda k: t.summarise(sv, k).mean_rho.round(2).to_dict()
    assert by('level') == {1: 0.02, 2: 0.05, 3: 0.11, 4: 0.2, 5: 0.23}
    assert by('metric') == {'cosine_distance': 0.16, 'inv_pearson_corr': 0.14, 'l2_loss': 0.05}
    assert by('pooled') == {False: 0.14, True: 0.09} and by('frozen') == {False: 0.07, True: 0.17}
    assert (by('margin')[0.], by('margin')[1.]) == (0.18, 0.08) and by('enc') == {'resnet50': 0.06, 'swin': 0.31, 'unet': 0.02}
    best = t.summarise(sv, t.ROBUSTNESS_VARIANT).sort_values('mean_rho').iloc[-1]
    assert best.name == ('inv_pearson_corr', 0.25, 5, True) and (best.groups, round(best.mean_rho, 2), round(best.mean_regret, 3)) == (24, 0.36, 0.007)


def test_analysis_notebook_without_any_results(tmp_path):
    "With neither the published files nor ours, the analysis says where the files are published and stops cleanly."
    import papermill as pm
    from pathlib import Path
    nb = Path(__file__).resolve().parents[1]/'nbs'/'transfer000_analysis.ipynb'
    absent = str(tmp_path/'results'/'downstream_scores.csv')
    out = pm.execute_notebook(str(nb), str(tmp_path/'out.ipynb'), parameters=dict(published='none', downstream=absent),
                              cwd=str(tmp_path), progress_bar=False)
    text = ''.join(o.get('text', '') for c in out.cells if c.cell_type == 'code' for o in c.outputs)
    assert 'github.com/aielte-research/MedSegPretrainImageNet' in text and 'Nothing to analyse' in text


@pytest.mark.parametrize('params', [dict(published='{tmp}/nowhere'), dict(published='none', figures='{tmp}/figures')])
def test_analysis_notebook_stops_when_the_published_files_it_was_asked_for_are_missing(tmp_path, params):
    "A `published` folder without the files, or a figure of the published runs without them: an error naming the folder, the parameter, the variable and the source."
    import papermill as pm
    from pathlib import Path
    nb = Path(__file__).resolve().parents[1]/'nbs'/'transfer000_analysis.ipynb'
    params = {k: v.format(tmp=tmp_path) for k, v in params.items()}
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(nb), str(tmp_path/'out.ipynb'), parameters=params, cwd=str(tmp_path), progress_bar=False)
    message = str(e.value)
    for part in ('downstream_scores.csv', '-p published', 'MEDSEGPAPER_REFERENCE', 'github.com/aielte-research/MedSegPretrainImageNet'):
        assert part in message, message
    assert (str(tmp_path/'nowhere') if params['published'] != 'none' else "published='none'") in message
    assert not (tmp_path/'figures').exists()


def test_analysis_notebook_on_our_committed_results(tmp_path):
    "Run from another folder (as nbdev_test runs it from nbs/), the analysis finds this checkout's results/ and puts every score in one table."
    import papermill as pm
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    if not (root/'results'/'downstream_scores.csv').is_file(): pytest.skip('no committed study 000 results in this checkout')
    out = pm.execute_notebook(str(root/'nbs'/'transfer000_analysis.ipynb'), str(tmp_path/'out.ipynb'), parameters=dict(published='none'),
                              cwd=str(tmp_path), progress_bar=False)
    text = ''.join(o.get('text', '') + str(o.get('data', {}).get('text/plain', '')) for c in out.cells if c.cell_type == 'code' for o in c.outputs)
    assert f"runs from {root/'results'/'downstream_scores.csv'}" in text and 'estimator rows from' in text
    for score in ('logme', 'transrate', 'gbc', 'h_score', 'robustness l2_loss', 'ImageNet top-1'): assert score in text


# --- nbs/transferability.ipynb

NBS = __import__('pathlib').Path(__file__).resolve().parents[1]/'nbs'


def test_transferability_parameters_checked_at_once():
    from medsegpaper.experiment import ParameterError, notebook_experiment
    exp = notebook_experiment(NBS/'transferability.ipynb')
    with pytest.raises(ParameterError) as e: exp.plan(dict(pairing='reversed', width=-1., encoder='vgg', batch_size=1))
    assert set(e.value.problems) == {'pairing', 'width', 'encoder', 'batch_size'}
    assert 'derangement, original' in e.value.problems['pairing'] and 'ladder_dir' not in exp.plan().identity


def test_transferability_notebook_on_given_checkpoints(tmp_path):
    "Explicit checkpoint files, no random init, robustness only, the study's pairing: 150 rows per checkpoint in the published columns."
    import pandas as pd, papermill as pm, torch
    from medsegpaper.transferability import load_encoder
    from medsegpaper.studies.transfer000 import ROBUSTNESS_COLUMNS
    for n in (5, 1): torch.save(load_encoder('unet', .125, 16, seed=n).state_dict(), tmp_path/f'encoder_epoch_{n}.pth')
    pm.execute_notebook(str(NBS/'transferability.ipynb'), str(tmp_path/'out.ipynb'), cwd=str(tmp_path), progress_bar=False,
                        parameters=dict(checkpoints=[str(tmp_path)], init_seeds=[], estimators=[], img_size=16, max_images=6,
                                        batch_size=5, pairing='original'))
    rob = pd.read_csv(tmp_path/'results'/'robustness_scores.csv')
    assert set(ROBUSTNESS_COLUMNS) <= set(rob.columns)
    assert len(rob) == 300 and sorted(rob.pretraining_length.unique()) == [1, 5] and set(rob.encoder) == {'u-net_encoder'}
    assert set(rob.pretraining_scheme) == {'simple_training'} and rob.robustness.notna().all() and rob.checkpoint_fingerprint.nunique() == 2
    assert not (tmp_path/'results'/'transferability_scores.csv').exists()
