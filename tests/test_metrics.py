"Heavier comparisons of medsegpaper.metrics with scikit-learn, MONAI, medpy and brute force."
import warnings
import numpy as np, pytest, torch
from scipy import ndimage as ndi
from sklearn import metrics as skm
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
from medpy.metric import binary as medpy_binary
from medsegpaper.metrics import *

def blob(shape, seed, level=.3, sigma=1.5):
    "Smooth random blobs; `level` in standard deviations of the smoothed noise."
    g = ndi.gaussian_filter(np.random.default_rng(seed).normal(size=shape), sigma)
    return g / g.std() > level

def onehot(m, n=2):
    m = np.asarray(m, int)
    return torch.from_numpy(np.stack([m == k for k in range(n)]))[None]

def quiet(f, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); return f(*a, **kw)

def monai_hd(p, t, spacing=None, **kw):
    sp = None if spacing is None else [float(x) for x in spacing]
    return quiet(compute_hausdorff_distance, onehot(p), onehot(t), spacing=sp, **kw).item()

# ---- counts and formulas
@pytest.mark.parametrize('seed', range(20))
def test_binary_metrics_vs_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300)); t = rng.random(n) < rng.random(); p = rng.random(n) < rng.random()
    c, kw = binary_counts(p, t), dict(zero_division=0)
    ours = count_metrics(c, empty=0.)
    sk = dict(f1=skm.f1_score(t, p, **kw), dice=skm.f1_score(t, p, **kw), jaccard=skm.jaccard_score(t, p, **kw),
              precision=skm.precision_score(t, p, **kw), sensitivity=skm.recall_score(t, p, **kw),
              specificity=skm.recall_score(t, p, pos_label=0, **kw), accuracy=skm.accuracy_score(t, p),
              mcc=skm.matthews_corrcoef(t, p), error_rate=1 - skm.accuracy_score(t, p))
    for k, v in sk.items(): assert ours[k] == pytest.approx(v, abs=1e-12), k
    if t.any() and not t.all():
        assert ours['balanced_accuracy'] == pytest.approx(quiet(skm.balanced_accuracy_score, t, p), abs=1e-12)

def test_undefined_is_nan_by_default():
    c = binary_counts(np.zeros(5), np.zeros(5))
    res = count_metrics(c)
    for k in ('dice', 'jaccard', 'f1', 'sensitivity', 'precision', 'mcc'): assert np.isnan(res[k]), k
    assert res['specificity'] == 1 and res['accuracy'] == 1
    assert count_metrics(c, empty=0.)['dice'] == 0 and count_metrics(c, smooth=1.)['dice'] == 1

@pytest.mark.parametrize('seed', range(5))
def test_multiclass_confusion_and_pooled_vs_sklearn(seed):
    rng = np.random.default_rng(seed)
    t = [rng.integers(0, 4, (9, 11)) for _ in range(5)]
    p = [np.where(rng.random(x.shape) < .6, x, rng.integers(0, 4, x.shape)) for x in t]
    cms = confusion_matrices(p, t, 4)
    tt, pp = np.concatenate([x.ravel() for x in t]), np.concatenate([x.ravel() for x in p])
    np.testing.assert_array_equal(cms.sum(0), skm.confusion_matrix(tt, pp, labels=range(4)))
    res = aggregate(cms, 'pooled', ('dice', 'jaccard', 'precision', 'sensitivity'))
    np.testing.assert_allclose(res['dice'], skm.f1_score(tt, pp, average=None), atol=1e-12)
    np.testing.assert_allclose(res['jaccard'], skm.jaccard_score(tt, pp, average=None), atol=1e-12)
    np.testing.assert_allclose(res['precision'], skm.precision_score(tt, pp, average=None), atol=1e-12)
    np.testing.assert_allclose(res['sensitivity'], skm.recall_score(tt, pp, average=None), atol=1e-12)
    per = aggregate(cms, 'per_image', ('dice',))['dice']
    np.testing.assert_allclose(per, np.mean([skm.f1_score(a.ravel(), b.ravel(), labels=range(4), average=None) for a, b in zip(t, p)], 0), atol=1e-12)

def test_per_image_dice_vs_monai():
    "MONAI's compute_dice: ignore_empty=False gives 1 for two empty masks (our empty=1.); ignore_empty=True gives NaN whenever the target is empty (ours: only when both are)."
    t = [blob((20, 20), s, .8) for s in range(8)] + [np.zeros((20, 20), bool)] * 2
    p = [blob((20, 20), s + 50, .8) for s in range(8)] + [np.zeros((20, 20), bool), blob((20, 20), 3)]
    cms = confusion_matrices(p, t, 2)
    ours = dice(class_counts(cms), empty=1.)[:, 1]
    theirs = torch.cat([compute_dice(onehot(a), onehot(b), include_background=False, ignore_empty=False) for a, b in zip(p, t)])
    np.testing.assert_allclose(ours, theirs.numpy().ravel(), rtol=1e-6)
    nan_theirs = torch.cat([compute_dice(onehot(a), onehot(b), include_background=False) for a, b in zip(p, t)]).numpy().ravel()
    assert np.isnan(nan_theirs[-1]) and dice(class_counts(cms))[-1, 1] == 0

def test_weighted_rule_counts_fov_only():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 4, (30, 30)); p = rng.integers(0, 4, (30, 30)); fov = np.zeros((30, 30), bool); fov[5:25, 5:25] = True
    p_out = p.copy(); p_out[~fov] = 0
    a = aggregate(confusion_matrices([p], [t], 4, [fov]), 'weighted', ('f1', 'error_rate'))
    b = aggregate(confusion_matrices([p_out], [t], 4, [fov]), 'weighted', ('f1', 'error_rate'))
    assert a['f1'] == b['f1'] == pytest.approx(skm.f1_score(t[fov], p[fov], labels=[1, 2, 3], average='weighted'), abs=1e-12)

def test_mmseg_background_and_fluid():
    t = [blob((32, 32), s, .15) for s in range(6)]; p = [blob((32, 32), s + 9, .15) for s in range(6)]
    assert 0 < np.mean(t) < .5
    m = mmseg_metrics(confusion_matrices(p, t, 2))
    tt, pp = np.concatenate([x.ravel() for x in t]), np.concatenate([x.ravel() for x in p])
    np.testing.assert_allclose(m['IoU'], skm.jaccard_score(tt, pp, average=None), atol=1e-12)
    assert m['mIoU'] == pytest.approx(skm.jaccard_score(tt, pp, average='macro'), abs=1e-12)
    assert m['mDice'] == pytest.approx(skm.f1_score(tt, pp, average='macro'), abs=1e-12)
    assert m['aAcc'] == pytest.approx(skm.accuracy_score(tt, pp), abs=1e-12)

# ---- AUROC / AP
@pytest.mark.parametrize('seed', range(6))
def test_histogram_auc_ap_vs_sklearn(seed):
    rng = np.random.default_rng(seed)
    t = rng.random((8, 4000)) < rng.uniform(.02, .5)
    s = 1 / (1 + np.exp(-(rng.normal(size=t.shape) + rng.uniform(.5, 3) * t)))
    h = ScoreHistogram(n_bins=2**16)
    for a, b in zip(s, t): h.update(a, b)
    eb_auc, eb_ap = h.error_bounds()
    assert abs(h.auroc() - skm.roc_auc_score(t.ravel(), s.ravel())) <= eb_auc < 1e-4
    assert abs(h.average_precision() - skm.average_precision_score(t.ravel(), s.ravel())) <= eb_ap < 1e-2
    binned = np.minimum(np.floor(s * 2**16), 2**16 - 1).ravel()
    assert h.auroc() == pytest.approx(skm.roc_auc_score(t.ravel(), binned), abs=1e-12)
    assert h.average_precision() == pytest.approx(skm.average_precision_score(t.ravel(), binned), abs=1e-12)
    one = ScoreHistogram(n_bins=2**16).update(s, t)
    np.testing.assert_array_equal(one.counts, h.counts)

def test_histogram_binarised_scores_give_balanced_accuracy():
    "Study 002's published AUC-ROC on binary maps equals (sens+spec)/2."
    rng = np.random.default_rng(3); t = rng.random(1000) < .3; p = rng.random(1000) < .35
    h = ScoreHistogram().update(p.astype(float), t)
    assert h.auroc() == pytest.approx(balanced_accuracy(binary_counts(p, t)), abs=1e-12)
    assert h.average_precision() == pytest.approx(skm.average_precision_score(t, p.astype(float)), abs=1e-12)

def test_histogram_multiclass_and_errors():
    rng = np.random.default_rng(4)
    t = rng.integers(0, 4, (3, 20, 20)); z = rng.normal(size=(4, 3, 20, 20)) + 1.5 * np.moveaxis(np.eye(4)[t], -1, 0)
    prob = np.exp(z) / np.exp(z).sum(0)
    h = ScoreHistogram(4, 2**20)
    for i in range(3): h.update(prob[:, i], t[i])
    flat_p, flat_t = prob.reshape(4, -1).T, t.ravel()
    assert h.auroc().mean() == pytest.approx(skm.roc_auc_score(flat_t, flat_p, multi_class='ovr'), abs=1e-5)
    np.testing.assert_allclose(h.average_precision(), skm.average_precision_score(np.eye(4)[flat_t], flat_p, average=None), atol=1e-5)
    with pytest.raises(ValueError, match='does not fit target shape'): h.update(prob[:3, 0], t[0])
    with pytest.raises(ValueError, match='no NaN'): ScoreHistogram().update(np.full(3, np.nan), np.zeros(3, int))

# ---- distances
def brute_directed(a, b, spacing):
    "Full-volume reference: EDT of the complement of b's surface, read at a's surface (medpy's method)."
    sa, sb = a & ~ndi.binary_erosion(a), b & ~ndi.binary_erosion(b)
    return np.sort(ndi.distance_transform_edt(~sb, sampling=spacing)[sa])

SHAPES = [((20, 24, 18), (1., 1., 1.)), ((20, 24, 18), (0.5, 3., 1.2)), ((16, 40, 40), (4., 0.7, 0.7)), ((50, 45), (1., 1.)), ((50, 45), (0.3, 2.))]

@pytest.mark.parametrize('shape,spacing', SHAPES)
@pytest.mark.parametrize('seed', range(3))
def test_directed_distances_exact(shape, spacing, seed):
    p, t = blob(shape, seed), blob(shape, seed + 10, .5)
    if seed == 2: t = np.roll(t, 7, axis=-1)          # far apart: most distances go through the KD-tree
    d_pt, d_tp = surface_distances(p, t, spacing)
    np.testing.assert_allclose(np.sort(d_pt), brute_directed(p, t, spacing), atol=1e-9)
    np.testing.assert_allclose(np.sort(d_tp), brute_directed(t, p, spacing), atol=1e-9)

@pytest.mark.parametrize('shape,spacing', SHAPES)
@pytest.mark.parametrize('seed', range(3))
def test_hd_nsd_vs_monai_medpy(shape, spacing, seed):
    p, t = blob(shape, seed), blob(shape, seed + 10, .5)
    ours = distance_metrics(p, t, spacing, tolerance=2.45)   # not a lattice distance: MONAI compares in float32
    np.testing.assert_allclose(ours['hd95'], monai_hd(p, t, spacing, percentile=95), rtol=1e-6)
    np.testing.assert_allclose(ours['hd'], monai_hd(p, t, spacing), rtol=1e-6)
    np.testing.assert_allclose(ours['hd'], medpy_binary.hd(p, t, spacing), rtol=1e-12)
    nsd = quiet(compute_surface_dice, onehot(p).float(), onehot(t).float(), [2.45], spacing=[float(x) for x in spacing]).item()
    np.testing.assert_allclose(ours['nsd'], nsd, rtol=1e-6)

@pytest.mark.parametrize('seed', range(4))
def test_medpy_hd95_is_pooled_percentile(seed):
    p, t = blob((30, 30, 30), seed), blob((30, 30, 30), seed + 5, .4)
    d = surface_distances(p, t, (1., 2., 1.))
    assert medpy_binary.hd95(p, t, (1., 2., 1.)) == pytest.approx(np.percentile(np.concatenate(d), 95), abs=1e-9)
    assert hd95(p, t, (1., 2., 1.)) == pytest.approx(max(np.percentile(x, 95) for x in d), abs=1e-12)

def test_edge_cases_vs_monai():
    z = np.zeros((12, 12, 12), bool); one = z.copy(); one[5, 6, 7] = True
    two = z.copy(); two[8, 6, 1] = True
    assert hd95(one, two, (2., 1., 1.)) == pytest.approx(monai_hd(one, two, (2., 1., 1.), percentile=95), rel=1e-6)
    assert hd95(one, one) == 0 and surface_dice(one, one, 0.) == 1
    assert np.isnan(hd95(z, z)) and np.isnan(quiet(monai_hd, z, z)) and np.isnan(surface_dice(z, z, 1.))
    assert np.isnan(hd95(one, z)) and hd95(one, z, empty=np.inf) == monai_hd(one, z) == np.inf
    assert surface_dice(one, z, 1.) == 0 == quiet(compute_surface_dice, onehot(one).float(), onehot(z).float(), [1.]).item()
    full = np.ones((6, 7, 8), bool)                    # surface is the image border
    assert hd95(full, one[:6, :7, :8]) == pytest.approx(monai_hd(full, one[:6, :7, :8], percentile=95), rel=1e-6)

def test_crop_is_exact():
    "The bounding-box crop does not change anything: a mask in a corner of a large volume equals the same mask alone."
    p, t = blob((14, 15, 16), 1), blob((14, 15, 16), 2, .5)
    big_p = np.zeros((60, 50, 40), bool); big_t = big_p.copy()
    big_p[-14:, :15, 10:26] = p; big_t[-14:, :15, 10:26] = t
    for a, b in zip(surface_distances(p, t, (1., 2., 3.)), surface_distances(big_p, big_t, (1., 2., 3.))):
        np.testing.assert_array_equal(np.sort(a), np.sort(b))

# ---- evaluate_segmentation
def test_evaluate_segmentation_vs_monai():
    rng = np.random.default_rng(5)
    t = [np.where(blob((16, 20, 20), s, .2), 1, 0) + np.where(blob((16, 20, 20), s + 30, .6), 1, 0) for s in range(3)]
    p = [np.where(rng.random(x.shape) < .9, x, rng.integers(0, 3, x.shape)) for x in t]
    spacings = [(2., 1., 1.), (1., 1., 1.), (3., .8, .8)]
    r = evaluate_segmentation(p, t, 3, ['bg', 'a', 'b'], spacing=spacings)
    for k, name in [(1, 'a'), (2, 'b')]:
        d = [compute_dice(onehot(a, 3), onehot(b, 3), include_background=True)[0, k].item() for a, b in zip(p, t)]
        h = [quiet(compute_hausdorff_distance, onehot(a, 3), onehot(b, 3), percentile=95, spacing=list(s))[0, k - 1].item()
             for a, b, s in zip(p, t, spacings)]
        assert r[f'dice_{name}'] == pytest.approx(np.nanmean(d), rel=1e-6)
        assert r[f'hd95_{name}'] == pytest.approx(np.nanmean(h), rel=1e-6)
    assert r['accuracy'] == pytest.approx(np.mean([(a == b).mean() for a, b in zip(p, t)]))
    with pytest.raises(ValueError, match='valid choices: pooled, per_image'): evaluate_segmentation(p, t, 3, how='weighted')
    with pytest.raises(ValueError, match='label values'): evaluate_segmentation(p, t, 2)
