"Study 003's published results (../shared/reference/context_vs_fbr/results) through our reader and analysis."
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medsegpaper.studies.fbr003 import RUN_KEYS
from medsegpaper.studies.fbr003_analysis import CONFIG_KEYS, read_published_fbr, within_outside
from medsegpaper.io import DataError

REPO = Path(__file__).resolve().parents[1]
PROVENANCE = {'package_version', 'git_commit', 'torch_version', 'torch_threads', 'thread_policy', 'device', 'start', 'end', 'wall_s'}
RUN_CONTEXT = {'data_fingerprint', 'data_files', 'data_dir', 'results', 'patches_results'}  # what our rows add: data and where the run wrote
ROWS = {'synthetic': 100, 'spleen': 10}
PATCHES = {'synthetic': 50 * 70 * 4, 'spleen': 500 * 26 * 4}  # epochs x training volumes x 4 patches


def results(reference): return reference/'context_vs_fbr'/'results'


@lru_cache(maxsize=1)
def published(folder):
    return read_published_fbr(folder)


@pytest.mark.parametrize('dataset', ['synthetic', 'spleen'])
def test_reader_yields_every_published_run(reference, dataset):
    tests, patches = published(results(reference))
    t = tests[tests.dataset == dataset]
    assert t.groupby(['model', 'patch_size', 'run']).size().to_dict() == {
        (m, p, r): ROWS[dataset] for m in ('attention_unet', 'unet', 'unetr') for p in (32, 48, 64, 80, 96) for r in (1, 2, 3)}
    assert t.run_id.nunique() == 45 and 'synthetic-atunet-32-1' in set(tests.run_id)
    assert t[['dsc', 'hausdorff', 'abs_diff', 'fg_ratio']].notna().all().all() and t.dsc.between(0, 1).all()
    p = patches[patches.dataset == dataset]
    assert p.groupby(['model', 'patch_size']).size().eq(PATCHES[dataset]).all() and len(p) == 15 * PATCHES[dataset]
    assert p.run_id.isna().all() and p.fg_ratio.between(0, 1).all()
    if dataset == 'spleen':  # the same 10 test volumes in every run: one foreground ratio per file name
        assert (t.groupby('filename').fg_ratio.nunique() == 1).all() and t.filename.nunique() == 10


def test_published_tables_have_our_columns(reference):
    tests, patches = published(results(reference))
    ours = pd.read_csv(REPO/'results'/'context_vs_fbr_cpu.csv', nrows=1)
    assert set(tests) == set(ours) - PROVENANCE - RUN_CONTEXT
    assert tests.columns.tolist() == ['run_id', 'filename', *RUN_KEYS, 'dsc', 'hausdorff', 'abs_diff', 'fg_ratio', 'best_epoch', 'valid_dice']
    ours_patches = pd.read_csv(REPO/'results'/'context_vs_fbr_cpu_patches.csv', nrows=1)
    assert set(patches) == set(ours_patches) | set(CONFIG_KEYS)


@pytest.mark.parametrize('dataset,model,ours,patch_size', [('synthetic', 'atunet', 'attention_unet', 64),
                                                           ('synthetic', 'unet', 'unet', 96),
                                                           ('spleen', 'unetr', 'unetr', 48)])
def test_published_within_outside_matches_pandas_on_the_files(reference, dataset, model, ours, patch_size):
    folder = results(reference)/f'{dataset}-{model}'
    rows = pd.concat([pd.read_csv(folder/f'{dataset}-{model}-{patch_size}-{r}.csv') for r in (1, 2, 3)])
    fg = pd.read_csv(folder/f'foreground_ratios-{patch_size}.csv', header=None)[0]
    inside = (rows.fg_ratio > fg.min()) & (rows.fg_ratio < fg.max())
    tab = within_outside(*published(results(reference)))
    tab0 = within_outside(*published(results(reference)), ddof=0)
    for name, sel in (('within', rows[inside]), ('outside', rows[~inside])):
        pick = (tab.dataset == dataset) & (tab.model == ours) & (tab.patch_size == patch_size) & (tab.range == name)
        if sel.empty:
            assert not pick.any()
            continue
        got, got0 = tab[pick].iloc[0], tab0[pick].iloc[0]
        for m in ('dsc', 'hausdorff'):
            assert got[f'{m}_count'] == len(sel)
            assert got[f'{m}_mean'] == pytest.approx(sel[m].mean(), rel=1e-12)
            assert got[f'{m}_sd'] == pytest.approx(sel[m].std(ddof=1), rel=1e-12)
            assert got0[f'{m}_sd'] == pytest.approx(np.std(sel[m]), rel=1e-12)


def test_synthetic_script_header_slip_leaves_ranges_unchanged(reference):
    "The study's synthetic_analysis.py read foreground_ratios-<P>.csv with a header row, dropping the first value; no range moves."
    for f in sorted(results(reference).glob('synthetic-*/foreground_ratios-*.csv')):
        fg = pd.read_csv(f, header=None)[0]
        assert (fg[1:].min(), fg[1:].max()) == (fg.min(), fg.max()), f


def _drop_hausdorff(d):
    pd.read_csv(d/'spleen-unet-32-1.csv').drop(columns='hausdorff').to_csv(d/'spleen-unet-32-1.csv', index=False)


@pytest.mark.parametrize('change,message', [
    (_drop_hausdorff, 'spleen-unet-32-1.csv: missing column(s) hausdorff'),
    (lambda d: (d/'spleen-unet-32-1.csv').rename(d/'spleen-unet-32-1 (copy).csv'), 'spleen-unet-32-1 (copy).csv: unparsable name'),
    (lambda d: (d/'spleen-unet-48-2.csv').write_text(''), 'spleen-unet-48-2.csv: empty file'),
    (lambda d: (d/'foreground_ratios-64.csv').write_text(''), 'foreground_ratios-64.csv: empty file'),
    (lambda d: (d/'foreground_ratios-80.csv').unlink(), 'foreground_ratios-80.csv: missing')])
def test_bad_published_file_is_named(reference, tmp_path, change, message):
    copy = tmp_path/'results'/'spleen-unet'
    shutil.copytree(results(reference)/'spleen-unet', copy)
    assert len(read_published_fbr(tmp_path/'results')[0]) == 5 * 3 * 10
    change(copy)
    with pytest.raises(DataError, match=message.replace('(', r'\(').replace(')', r'\)')):
        read_published_fbr(tmp_path/'results')
