"Study 000's pretraining: papermill runs of nbs/pretrain.ipynb, the digits data, the encoders' levels, the schemes, the checkpoint ladder, a killed run resumed, the published weights."
import signal, subprocess, sys, time, warnings
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest
import torch
from fastai.callback.core import Callback

from medsegpaper.datasets.core import load_items
from medsegpaper.datasets.imagenet import ImageNetNpy
from medsegpaper.models import get_model
from medsegpaper.pretrain import ENCODERS, pretrain, pretrain_encoder, saved_states
from medsegpaper.published_weights import study000_sample_state

REPO = Path(__file__).resolve().parents[1]
NB = REPO/'nbs'/'pretrain.ipynb'
TINY = dict(width=0.125, batch_size=8, micro_batch=4, warmup_epochs=1, img_size=32, device='cpu', progress=False)


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
    "A small part of the embedded digits (generated once): 32 training items of every class and 8 validation items."
    root = tmp_path_factory.mktemp('data')
    return root, load_items('digits', 'train', root)[::46][:32], load_items('digits', 'valid', root)[:8]


def run_nb(tmp_path, data_root, name='out', **params):
    results = tmp_path/'pretrain_scores.csv'
    pm.execute_notebook(str(NB), str(tmp_path/f'{name}.ipynb'), cwd=str(REPO), progress_bar=False,
                        parameters={'results': str(results), 'checkpoint_dir': str(tmp_path/'ckpt'),
                                    'data_root': str(data_root), 'device': 'cpu', **params})
    return pd.read_csv(results)


def test_notebook_leaves_the_ladder_and_one_row_per_kept_epoch(tmp_path, digits):
    params = dict(encoder='swin', width=0.25, epochs=2, ladder=[1, 5])
    df = run_nb(tmp_path, digits[0], **params)
    assert list(df.epoch) == [1, 2] and df.run_id.nunique() == 1
    assert df.top1.between(0, 1).all() and (df.encoder == 'swin').all() and (df.dataset == 'digits').all()
    folder = tmp_path/'ckpt'/df.run_id[0]
    assert sorted(p.name for p in folder.glob('encoder_epoch_*.pth')) == ['encoder_epoch_1.pth', 'encoder_epoch_2.pth']
    assert saved_states(folder) == [2] and (folder/'run.json').exists()
    stamp = (folder/'encoder_epoch_2.pth').stat().st_mtime_ns
    again = run_nb(tmp_path, digits[0], 'again', **params)  # finished: nothing retrained, the rows replaced
    assert len(again) == 2 and (folder/'encoder_epoch_2.pth').stat().st_mtime_ns == stamp
    assert list(again.top1) == list(df.top1)


def test_notebook_refuses_bad_parameters_at_once(tmp_path, digits):
    with pytest.raises(pm.PapermillExecutionError) as e:
        run_nb(tmp_path, digits[0], encoder='vit', scheme='fancy', epochs=0)
    msg = str(e.value)
    assert '3 invalid parameters' in msg and "valid choices: resnet50, resnet50_zeropad, unet, swin" in msg
    assert 'valid choices: simple, advanced' in msg and 'epochs must be >= 1' in msg
    assert not (tmp_path/'pretrain_scores.csv').exists()


def test_digits_round_trip_through_the_imagenet_reader(digits):
    root = digits[0]
    train, valid = load_items('imagenet', 'train', root/'digits'), load_items('imagenet', 'valid', root/'digits')
    assert (len(train), len(valid)) == (1498, 299)
    assert load_items('digits', 'train', root) == train
    x, y = ImageNetNpy(valid)[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and y == 5  # image 5 is a 5


@pytest.mark.parametrize('name', ENCODERS)
def test_each_encoder_returns_its_levels(name):
    full = {'resnet50': ([64, 256, 512, 1024, 2048], [2, 4, 8, 16, 32]), 'resnet50_zeropad': ([64, 256, 512, 1024, 2048], [2, 4, 8, 16, 32]),
            'unet': ([64, 128, 256, 512, 1024], [1, 2, 4, 8, 16]), 'swin': ([96, 192, 384, 768], [4, 8, 16, 32])}[name]
    enc = pretrain_encoder(name)
    assert (enc.feature_info.channels(), enc.feature_info.reduction()) == full
    narrow = pretrain_encoder(name, width=0.25, img_size=64)
    feats = narrow(torch.rand(1, 3, 64, 64))
    chans = [f.shape[-1] if name == 'swin' else f.shape[1] for f in feats]
    sides = [f.shape[1] if name == 'swin' else f.shape[2] for f in feats]
    assert chans == narrow.feature_info.channels() and sides == [64 // r for r in full[1]]


class Labels(Callback):
    "Keeps the labels of every training batch as the loss sees them."
    def before_fit(self): self.seen = []
    def after_pred(self):
        if self.training: self.seen.append(self.yb[0])


@pytest.mark.parametrize('scheme', ['simple', 'advanced'])
def test_advanced_mixes_labels_simple_does_not(tmp_path, digits, scheme):
    cb = Labels()
    pretrain(digits[1], digits[2], 10, tmp_path, 'unet', scheme, epochs=1, cbs=[cb], **TINY)
    assert len(cb.seen) == 8
    if scheme == 'simple': assert all(y.ndim == 1 and not y.is_floating_point() for y in cb.seen)
    else:
        assert all(y.shape == (4, 10) and torch.allclose(y.sum(1), torch.ones(4)) for y in cb.seen)
        assert any((y.max(1).values < 0.9).any() for y in cb.seen)  # mixed, not only smoothed


def test_checkpoints_at_the_ladder_epochs(tmp_path, digits):
    out = pretrain(digits[1], digits[2], 10, tmp_path, 'unet', epochs=4, ladder=(1, 2, 5, 10), **TINY)
    assert sorted(p.name for p in tmp_path.glob('encoder_epoch_*.pth')) == [f'encoder_epoch_{n}.pth' for n in (1, 2, 4)]
    assert [s['epoch'] for s in out['scores']] == [1, 2, 4] and saved_states(tmp_path) == [4]
    m = get_model('unet', 3, 1, base=8, pretrained=tmp_path/'encoder_epoch_2.pth')
    assert torch.equal(m.encoder.stem.weight, torch.load(tmp_path/'encoder_epoch_2.pth')['stem.weight'])


RUN = """
import sys, torch
torch.set_num_threads(1)
from medsegpaper.datasets.core import load_items
from medsegpaper.pretrain import pretrain
root, folder, out = sys.argv[1:4]
r = pretrain(load_items('digits', 'train', root)[::23][:64], load_items('digits', 'valid', root)[:8], 10, folder, 'resnet50',
             'advanced', width=0.25, epochs=4, batch_size=16, micro_batch=8, warmup_epochs=1, img_size=32, device='cpu', progress=False)
torch.save({'model': r['learn'].model.state_dict(), 'scores': r['scores']}, out)
"""


def start(*args):
    return subprocess.Popen([sys.executable, '-c', RUN, *map(str, args)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_killed_pretraining_resumes_bit_identical_on_cpu(tmp_path, digits):
    root = digits[0]
    full = start(root, tmp_path/'full', tmp_path/'full.pt')
    killed = start(root, tmp_path/'cut', tmp_path/'unused.pt')
    while not saved_states(tmp_path/'cut') or saved_states(tmp_path/'cut')[-1] < 2:
        assert killed.poll() is None, killed.stdout.read().decode()
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL); killed.wait()
    assert full.wait() == 0, full.stdout.read().decode()
    done = saved_states(tmp_path/'cut')[-1]
    assert 2 <= done < 4
    resumed = start(root, tmp_path/'cut', tmp_path/'resumed.pt')
    assert resumed.wait() == 0, resumed.stdout.read().decode()
    a, b = torch.load(tmp_path/'full.pt'), torch.load(tmp_path/'resumed.pt')
    assert a['model'].keys() == b['model'].keys() and all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    drop_path = lambda scores: [{k: v for k, v in s.items() if k != 'checkpoint'} for s in scores]
    assert drop_path(a['scores']) == drop_path(b['scores'])


@pytest.mark.parametrize('kind,model,kw', [('resnet50', 'attention_unet', {'encoder': 'resnet50_zeropad'}), ('unet', 'unet', {}),
                                          ('swin', 'swin_unet', {})])
def test_published_weights_load(tmp_path, kind, model, kw):
    sd = study000_sample_state(kind)
    path = tmp_path/f'{kind}_advanced_pretraining_checkpoint_epoch_300.pt'
    torch.save(sd, path)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        m = get_model(model, 3, 1, pretrained=path, freeze_encoder=True, **kw)
    assert any(str(x.message) == f'{path}: ignored 2 keys that are not encoder weights: layers.3.weight, layers.3.bias' for x in w)
    first = {'resnet50': ('conv1.weight', 'stem.0.weight'), 'unet': ('stem.weight', 'first_block.weight'),
             'swin': ('patch_embed.proj.weight', 'first_block.proj.weight')}[kind]
    assert torch.equal(m.encoder.state_dict()[first[0]], sd[f'layers.0.{first[1]}'])
    assert not any(p.requires_grad for p in m.encoder.parameters())
    key = next(k for k in sd if k.startswith('layers.0.') and k.endswith('.weight') and 'first' not in k and 'stem' not in k)
    torch.save({k: v for k, v in sd.items() if k != key}, path)
    with pytest.raises(ValueError, match=f'{path}: 1 of .* encoder weights missing'): get_model(model, 3, 1, pretrained=path, **kw)
    torch.save(sd, path)
    narrow = dict(kw, width=0.5) if kind != 'unet' else dict(base=32)
    with pytest.raises(ValueError, match='encoder weights have the wrong shape'): get_model(model, 3, 1, pretrained=path, **narrow)
