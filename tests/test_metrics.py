"Heavier comparisons of medsegpaper.metrics with scikit-learn, MONAI, medpy, DeepMind's surface-distance and brute force."
import warnings
import numpy as np, pandas as pd, pytest, torch
from scipy import ndimage as ndi
from sklearn import metrics as skm
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice, compute_average_surface_distance
from medpy.metric import binary as medpy_binary
import surface_distance as deepmind
from medsegpaper.metrics import *
from medsegpaper.metrics_surface import *

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
    "Raw float64 scores: both values within their error bounds of sklearn's, and close; one update equals image-by-image updates."
    rng = np.random.default_rng(seed)
    t = rng.random((8, 4000)) < rng.uniform(.02, .5)
    s = 1 / (1 + np.exp(-(rng.normal(size=t.shape) + rng.uniform(.5, 3) * t)))
    h = ScoreHistogram()
    for a, b in zip(s, t): h.update(a, b)
    eb_auc, eb_ap = h.error_bounds()
    assert abs(h.auroc() - skm.roc_auc_score(t.ravel(), s.ravel())) <= min(eb_auc, 1e-5)
    assert abs(h.average_precision() - skm.average_precision_score(t.ravel(), s.ravel())) <= min(eb_ap, 1e-4)
    np.testing.assert_array_equal(ScoreHistogram(chunk=5000).update(s, t).counts, h.counts)

@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('dtype', [np.float16, 'uint8'])
def test_histogram_exact_on_quantised_scores(seed, dtype):
    "float16 scores and k/255 scores (0 and 1 included) fall one value per bin: sklearn's values exactly, zero error bounds."
    rng = np.random.default_rng(seed)
    t = rng.random(20000) < .1
    z = np.where(t, rng.normal(5, 3, t.size), rng.normal(-5, 3, t.size))
    s = 1 / (1 + np.exp(-z))
    s = s.astype(np.float16) if dtype == np.float16 else np.round(s * 255).astype(np.uint8) / 255
    h = ScoreHistogram().update(s, t)
    assert h.error_bounds() == (0., 0.)
    assert h.auroc() == pytest.approx(skm.roc_auc_score(t, s), abs=1e-12)
    assert h.average_precision() == pytest.approx(skm.average_precision_score(t, s), abs=1e-12)

@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('centres', [(6, -7, 4), (9, -9, 3), (12, -10, 4)])
def test_histogram_saturated_network_scores(seed, centres):
    "float32 sigmoid outputs concentrated near 0 and 1: AP within 1e-6 and AUROC within 1e-7 of sklearn, errors within the bounds."
    rng = np.random.default_rng(seed)
    t = rng.random(1_000_000) < .05
    z = np.where(t, rng.normal(centres[0], centres[2], t.size), rng.normal(centres[1], centres[2], t.size))
    s = (1 / (1 + np.exp(-z))).astype(np.float32)
    h = ScoreHistogram().update(s, t)
    eb_auc, eb_ap = h.error_bounds()
    d_auc, d_ap = abs(h.auroc() - skm.roc_auc_score(t, s)), abs(h.average_precision() - skm.average_precision_score(t, s))
    assert d_ap <= min(eb_ap, 1e-6) and d_auc <= min(eb_auc, 1e-7), (d_ap, eb_ap, d_auc, eb_auc)
    assert eb_ap < 1e-4 and eb_auc < 1e-5

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
    h = ScoreHistogram(4)
    for i in range(3): h.update(prob[:, i], t[i])
    flat_p, flat_t = prob.reshape(4, -1).T, t.ravel()
    assert h.auroc().mean() == pytest.approx(skm.roc_auc_score(flat_t, flat_p, multi_class='ovr'), abs=1e-5)
    ap_sk = skm.average_precision_score(np.eye(4)[flat_t], flat_p, average=None)
    assert np.all(np.abs(h.average_precision() - ap_sk) <= np.minimum(h.error_bounds()[1], 1e-4))
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
    d_pt, d_tp = surface_distances(p, t, spacing)                # returned in ascending order
    np.testing.assert_allclose(d_pt, brute_directed(p, t, spacing), atol=1e-9)
    np.testing.assert_allclose(d_tp, brute_directed(t, p, spacing), atol=1e-9)

def mask_pair(shape, seed):
    "A blob pair; seed 2 shifts the target far (most distances beyond the grid lookups), seed 3 gives thin structures."
    if seed == 3:
        rng = np.random.default_rng(shape[0]); p = np.zeros(shape, bool); t = p.copy()
        for m in (p, t):                          # one-voxel-thick lines (and in 3D a plane), in random places
            for _ in range(3):
                idx = [int(rng.integers(0, n)) for n in shape]; idx[int(rng.integers(len(shape)))] = slice(None)
                m[tuple(idx)] = True
            if len(shape) == 3: m[..., int(rng.integers(shape[-1]))] = True
        return p, t
    p, t = blob(shape, seed), blob(shape, seed + 10, .5)
    return p, (np.roll(t, 7, axis=-1) if seed == 2 else t)

def monai_nsd(p, t, spacing, tol, subvoxels):
    return quiet(compute_surface_dice, onehot(p).float(), onehot(t).float(), [tol], spacing=[float(x) for x in spacing],
                 use_subvoxels=subvoxels).item()

@pytest.mark.parametrize('shape,spacing', SHAPES)
@pytest.mark.parametrize('seed', range(4))
def test_voxel_forms_vs_monai_medpy(shape, spacing, seed):
    p, t = mask_pair(shape, seed)
    ours = distance_metrics(p, t, spacing)
    np.testing.assert_allclose(ours['hd95'], monai_hd(p, t, spacing, percentile=95), rtol=1e-6)
    np.testing.assert_allclose(ours['hd'], monai_hd(p, t, spacing), rtol=1e-6)
    np.testing.assert_allclose(ours['hd'], medpy_binary.hd(p, t, spacing), rtol=1e-12)
    np.testing.assert_allclose(hd95(p, t, spacing, rule='pooled'), medpy_binary.hd95(p, t, spacing), rtol=1e-12)
    np.testing.assert_allclose(surface_dice_voxels(p, t, 2.45, spacing), monai_nsd(p, t, spacing, 2.45, False), rtol=1e-6)
    asd = quiet(compute_average_surface_distance, onehot(p), onehot(t), symmetric=True, spacing=[float(x) for x in spacing]).item()
    np.testing.assert_allclose(assd_voxels(p, t, spacing), asd, rtol=1e-6)

@pytest.mark.parametrize('shape,spacing', SHAPES)
@pytest.mark.parametrize('seed', range(4))
def test_surface_elements_vs_deepmind_monai(shape, spacing, seed):
    "The reference definitions: NSD, area-weighted HD95 and directed mean distances vs DeepMind (float64) and MONAI's subvoxel NSD (float32)."
    p, t = mask_pair(shape, seed)
    ref = deepmind.compute_surface_distances(t, p, list(spacing))
    e = element_distances(p, t, spacing)
    np.testing.assert_allclose(e.target, ref['distances_gt_to_pred'], atol=1e-9)
    np.testing.assert_allclose(e.pred, ref['distances_pred_to_gt'], atol=1e-9)
    np.testing.assert_allclose(e.target_area.sum(), ref['surfel_areas_gt'].sum(), rtol=1e-12)
    for tol in (0.55, 1.3, 2.45, 4.1):              # none a lattice distance of SHAPES' spacings
        expected = deepmind.compute_surface_dice_at_tolerance(ref, tol)
        assert surface_dice(p, t, tol, spacing) == pytest.approx(expected, abs=1e-9)
        assert distance_metrics(p, t, spacing, tolerance=tol)['nsd'] == pytest.approx(expected, abs=1e-9)
        np.testing.assert_allclose(surface_dice(p, t, tol, spacing), monai_nsd(p, t, spacing, tol, True), rtol=1e-6)
    for q in (50, 95, 100):
        assert hausdorff(p, t, q, spacing, rule='area') == pytest.approx(deepmind.compute_robust_hausdorff(ref, q), abs=1e-9)
    m_tp, m_pt = deepmind.compute_average_surface_distance(ref)
    a_t, a_p = e.target_area.sum(), e.pred_area.sum()
    assert assd(p, t, spacing) == pytest.approx((m_tp * a_t + m_pt * a_p) / (a_t + a_p), abs=1e-9)

def test_nsd_large_tolerance_takes_the_general_path():
    "A tolerance spanning more than 1000 grid offsets uses the full distances; both paths agree with DeepMind."
    p, t = blob((20, 24, 18), 5), blob((20, 24, 18), 15, .5)
    ref = deepmind.compute_surface_distances(t, p, [0.5, 0.5, 0.5])
    assert surface_dice(p, t, 3.3, (0.5, 0.5, 0.5)) == pytest.approx(deepmind.compute_surface_dice_at_tolerance(ref, 3.3), abs=1e-9)

def test_element_measures_are_deepmind_tables():
    "Our marching-cubes construction reproduces DeepMind's per-code areas (3D) and lengths (2D), up to the corner numbering."
    from surface_distance import lookup_tables
    rng = np.random.default_rng(0)
    bit_3d = [int(lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL[c]) for c in np.ndindex(2, 2, 2)]
    bit_2d = [int(lookup_tables.ENCODE_NEIGHBOURHOOD_2D_KERNEL[c]) for c in np.ndindex(2, 2)]
    for sp in [(1., 1., 1.)] + [tuple(rng.uniform(.1, 5, 3)) for _ in range(10)]:
        theirs = lookup_tables.create_table_neighbour_code_to_surface_area(sp)
        ours = element_measures(sp)
        for code in range(256):
            assert ours[code] == pytest.approx(theirs[sum(b for i, b in enumerate(bit_3d) if code >> i & 1)], rel=1e-12, abs=1e-15)
        theirs, ours = lookup_tables.create_table_neighbour_code_to_contour_length(sp[:2]), element_measures(sp[:2])
        for code in range(16):
            assert ours[code] == pytest.approx(theirs[sum(b for i, b in enumerate(bit_2d) if code >> i & 1)], rel=1e-12, abs=1e-15)

@pytest.mark.parametrize('seed', range(4))
def test_medpy_hd95_is_pooled_percentile(seed):
    p, t = blob((30, 30, 30), seed), blob((30, 30, 30), seed + 5, .4)
    d = surface_distances(p, t, (1., 2., 1.))
    assert medpy_binary.hd95(p, t, (1., 2., 1.)) == pytest.approx(np.percentile(np.concatenate(d), 95), abs=1e-9)
    assert hd95(p, t, (1., 2., 1.), rule='pooled') == pytest.approx(medpy_binary.hd95(p, t, (1., 2., 1.)), abs=1e-9)
    assert hd95(p, t, (1., 2., 1.)) == pytest.approx(max(np.percentile(x, 95) for x in d), abs=1e-12)

@pytest.mark.parametrize('seed', range(6))
def test_study000_hd95_is_medpy_on_single_channel_arrays(seed):
    "Study 000 passed (1, H, W) arrays to medpy's hd95, making every foreground pixel a surface pixel."
    rng = np.random.default_rng(seed)
    p, t = blob((64, 80), seed, rng.uniform(0, 1)), blob((64, 80), seed + 20, rng.uniform(0, 1))
    if seed == 5: t = np.roll(t, 25, axis=0)
    assert study000_hd95(p, t) == pytest.approx(medpy_binary.hd95(p[None], t[None]), abs=1e-9)

def test_study000_hd95_differs_from_surface_hd95():
    "Two 20x20 squares 4 apart: 80% of the pixels overlap (distance 0), so the pixel-pooled value is below the surface ones."
    a = np.zeros((40, 40), bool); a[5:25, 5:25] = True; b = np.roll(a, 4, 1)
    assert study000_hd95(a, b) == pytest.approx(medpy_binary.hd95(a[None], b[None]), abs=1e-12)
    assert study000_hd95(a, b) < hd95(a, b, rule='pooled') == pytest.approx(medpy_binary.hd95(a, b), abs=1e-12)

def test_edge_cases_vs_monai():
    z = np.zeros((12, 12, 12), bool); one = z.copy(); one[5, 6, 7] = True
    two = z.copy(); two[8, 6, 1] = True
    assert hd95(one, two, (2., 1., 1.)) == pytest.approx(monai_hd(one, two, (2., 1., 1.), percentile=95), rel=1e-6)
    assert hd95(one, one) == 0 and surface_dice(one, one, 0.) == 1 and surface_dice_voxels(one, one, 0.) == 1
    assert np.isnan(hd95(z, z)) and np.isnan(quiet(monai_hd, z, z)) and np.isnan(surface_dice(z, z, 1.))
    assert np.isnan(hd95(one, z)) and hd95(one, z, empty=np.inf) == monai_hd(one, z) == np.inf
    for subvoxels, f in [(False, surface_dice_voxels), (True, surface_dice)]:
        assert f(one, z, 1.) == 0 == quiet(compute_surface_dice, onehot(one).float(), onehot(z).float(), [1.], use_subvoxels=subvoxels).item()
    assert np.isnan(hd95(one, z, rule='area')) and np.isnan(assd(one, z))
    full = np.ones((6, 7, 8), bool)                    # surface is the image border
    assert hd95(full, one[:6, :7, :8]) == pytest.approx(monai_hd(full, one[:6, :7, :8], percentile=95), rel=1e-6)
    ref = deepmind.compute_surface_distances(one[:6, :7, :8], full, [1., 1., 1.])
    assert surface_dice(full, one[:6, :7, :8], 1.7) == pytest.approx(deepmind.compute_surface_dice_at_tolerance(ref, 1.7), abs=1e-12)

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
    with pytest.raises(ValueError, match='valid choices: per_image, pooled, study000'): evaluate_segmentation(p, t, 3, how='weighted')
    with pytest.raises(ValueError, match='label values'): evaluate_segmentation(p, t, 2)
    r_pooled = evaluate_segmentation(p, t, 3, spacing=spacings, hd_rule='pooled')
    for k in (1, 2):
        expected = np.nanmean([medpy_binary.hd95(a == k, b == k, s) for a, b, s in zip(p, t, spacings)])
        assert r_pooled[f'hd95_{k}'] == pytest.approx(expected, rel=1e-12)
    assert r_pooled['hd95_rule'] == 'pooled'

def test_evaluate_segmentation_fov_zeroes_targets_too():
    "A target blob outside the field of view neither lowers Dice nor raises HD95 of a prediction perfect inside it."
    t = np.zeros((30, 30), int); t[5:15, 5:15] = 1; t[25:29, 25:29] = 1
    fov = np.ones((30, 30), bool); fov[22:, 22:] = False
    pred = np.where(fov, t, 0)
    r = evaluate_segmentation([pred], [t], 2, masks=[fov])
    assert (r['dice_1'], r['hd95_1'], r['n_undefined_hd95_1']) == (1., 0., 0)

def test_evaluate_segmentation_counts_and_penalises_missed_structures():
    t = [np.zeros((20, 30), int) for _ in range(4)]
    for x in t: x[4:10, 5:12] = 1
    p = [np.roll(t[0], 1, 0), np.zeros((20, 30), int), np.roll(t[2], 2, 1), np.zeros((20, 30), int)]
    t[3][:] = 0                                        # image 3: both empty, not a miss
    r = evaluate_segmentation(p, t, 2)
    assert (r['n_undefined_hd95_1'], r['n_empty_1']) == (1, 1)
    assert r['hd95_1'] == pytest.approx(np.mean([1., 2.]))
    r = evaluate_segmentation(p, t, 2, spacing=(.5, 2.), hd_penalty='diagonal')
    assert r['hd95_1'] == pytest.approx(np.mean([.5, 4., np.hypot(10, 60)])) and r['hd95_penalty'] == 'diagonal'

# ---- study 000's columns (facts from aielte-research/MedSegPretrainImageNet, src/metrics)
def study000_reference(preds, targets, probs, batch_size):
    "Study 000's binary evaluation written out loop by loop: pooled counts with its 'invalid' -> 0 rule, +1 Tversky, per-batch MHD and curves."
    tp = sum(int(((p == 1) & (t == 1)).sum()) for p, t in zip(preds, targets)); fp = sum(int(((p == 1) & (t == 0)).sum()) for p, t in zip(preds, targets))
    fn = sum(int(((p == 0) & (t == 1)).sum()) for p, t in zip(preds, targets)); tn = sum(int(((p == 0) & (t == 0)).sum()) for p, t in zip(preds, targets))
    ratio = lambda a, b: a / b if b else 0
    P, N = tp + fn, fp + tn
    bal = tn / N if P == 0 else tp / P if N == 0 else (tp / P + tn / N) / 2
    den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    mhd_batches, auc_batches, ap_batches = [], [], []
    for i in range(0, len(preds), batch_size):
        vals = [medpy_binary.hd95(t[None], p[None]) for p, t in zip(preds[i:i + batch_size], targets[i:i + batch_size]) if p.any() and t.any()]
        v = np.mean(vals) if vals else 0
        if v != 0: mhd_batches.append(v)
        y = np.concatenate([t.ravel() for t in targets[i:i + batch_size]]); s = np.concatenate([x.ravel() for x in probs[i:i + batch_size]])
        if y.any() and not y.all(): auc_batches.append(skm.roc_auc_score(y, s)); ap_batches.append(skm.average_precision_score(y, s))
    mean = lambda v: np.mean(v) if v else 0
    return {'accuracy': (tp + tn) / (P + N), 'balanced accuracy': bal, 'sensitivity': ratio(tp, P), 'specificity': ratio(tn, N),
            'precision': ratio(tp, tp + fp), 'mcc': (tp * tn - fp * fn) / np.sqrt(den) if den else 0,
            'dice index': (2 * tp + 1) / (2 * tp + fp + fn + 1), 'jaccard index': (tp + 1) / (tp + fp + fn + 1),
            'modified hausdorff distance': mean(mhd_batches), 'area under roc': mean(auc_batches), 'average precision score': mean(ap_batches)}

@pytest.mark.parametrize('seed', range(3))
def test_study000_binary_vs_loop_reference(seed):
    rng = np.random.default_rng(seed)
    targets = [(blob((48, 48), 100 * seed + i, 1.2) if i % 5 else np.zeros((48, 48), bool)).astype(int) for i in range(30)]
    probs = [np.clip(t * .6 + rng.random(t.shape) * .5 - .05, 0, 1) for t in targets]
    preds = [(x >= .5).astype(int) for x in probs]
    preds[3][:] = 0
    ours = evaluate_segmentation(preds, targets, 2, how='study000', scores=probs, batch_size=7)
    ref = study000_reference(preds, targets, probs, 7)
    assert list(ours) == list(ref)
    for k in ref: assert ours[k] == pytest.approx(ref[k], abs=1e-12), k

def test_study000_columns_are_the_published_ones(reference):
    "Binary tasks fill the published binary columns, ACDC its multiclass ones: our rows and downstream_scores.csv compare column by column."
    published = pd.read_csv(reference / 'medsegpretrain' / 'downstream_scores.csv')
    t = [np.zeros((8, 8), int)]; t[0][2:5, 2:5] = 1
    for dataset, n_classes in [('COVIDQUDataset', 2), ('IDRiD', 2), ('ACDC', 4)]:
        rows = published[published.dataset == dataset]
        filled = [c for c in rows.columns[rows.notna().all()] if c in published.columns[7:]]
        ours = study000_scores(t, t, n_classes, [x.astype(float) if n_classes == 2 else np.eye(n_classes)[x].transpose(2, 0, 1) for x in t])
        assert sorted(ours) == sorted(filled), dataset
        assert len(rows) > 500 and rows['modified hausdorff distance'].between(2, 90).all()

# ---- study 002's per-class rule (facts from rmaphoh/Learning_AVSegmentation, scripts/eval.py)
def study002_reference(pred, target, fov):
    "Study 002's per-image arithmetic: per class 1-3 one-vs-rest in the FOV with float division; class 3 with a NaN F1 counts 0; weights = pixel counts."
    out = {}
    counts = [np.sum(target == k) for k in (1, 2, 3)]
    per_class = []
    for k in (1, 2, 3):
        y, p = (target[fov] == k), (pred[fov] == k)
        tp, fp, fn, tn = (np.float64(x) for x in (np.sum(y & p), np.sum(~y & p), np.sum(y & ~p), np.sum(~y & ~p)))
        with np.errstate(invalid='ignore', divide='ignore'):
            sens, spec, prec = tp / (tp + fn), tn / (tn + fp), tp / (tp + fp)
            m = dict(accuracy=(tp + tn) / (tp + fp + fn + tn), sensitivity=sens, specificity=spec, precision=prec,
                     f1=2 * prec * sens / (prec + sens), error_rate=(fp + fn) / (tp + fp + fn + tn), jaccard=tp / (tp + fp + fn))
        if k == 3 and np.isnan(m['f1']): m = {n: 0. for n in m}
        per_class.append(m)
    return {n: sum(c * m[n] for c, m in zip(counts, per_class)) / sum(counts) for n in per_class[0]}

@pytest.mark.parametrize('seed', range(5))
def test_study002_zero_rule_vs_original_arithmetic(seed):
    rng = np.random.default_rng(seed)
    fov = np.zeros((40, 40), bool); fov[3:37, 4:36] = True
    target = np.where(fov, rng.choice(4, (40, 40), p=[.6, .2, .15, .05]), 0)
    pred = np.where(rng.random((40, 40)) < .7, target, rng.choice(3, (40, 40)))
    pred[pred == 3] = 0                                                          # the crossing class is never found
    names = ('accuracy', 'sensitivity', 'specificity', 'precision', 'f1', 'error_rate', 'jaccard')
    ours = aggregate(confusion_matrices([pred], [target], 4, [fov]), 'weighted', names, undefined='zero')
    ref = study002_reference(pred, target, fov)
    for n in names: assert ours[n] == pytest.approx(ref[n], abs=1e-12), n
    dropped = aggregate(confusion_matrices([pred], [target], 4, [fov]), 'weighted', names)
    assert dropped['precision'] > ours['precision'] and dropped['specificity'] > ours['specificity']

