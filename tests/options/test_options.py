"""Option files in options/ and their check before anything is written (restormer_arch/options/)."""
import importlib.util
from copy import deepcopy
from pathlib import Path

import pytest
import torch
import yaml
from basicsr.archs import build_network
from basicsr.models import build_model

from restormer_arch.cli import main
from restormer_arch.errors import OptionsError
from restormer_arch.options import OptionsWarning, check_file, load_options, parse_command_line
from tests.models.test_models import make_opt

REPO_ROOT = Path(__file__).resolve().parents[2]
OPTION_FILES = sorted((REPO_ROOT / 'options').glob('**/*.yml'))
OFFICIAL = {  # file -> (input channels, LayerNorm, mixup, Y-channel PSNR, dual pixel)
    'Deraining.yml': (3, 'WithBias', False, True, False),
    'Deraining_lmdb.yml': (3, 'WithBias', False, True, False),
    'MotionDeblurring.yml': (3, 'WithBias', False, False, False),
    'DefocusDeblurring_Single.yml': (3, 'WithBias', False, False, False),
    'DefocusDeblurring_DualPixel.yml': (6, 'WithBias', False, False, True),
    'RealDenoising.yml': (3, 'BiasFree', True, False, False),
    **{f'GaussianColorDenoising_{s}.yml': (3, 'BiasFree', True, False, False)
       for s in ('Blind', 'Sigma15', 'Sigma25', 'Sigma50')},
    **{f'GaussianGrayDenoising_{s}.yml': (1, 'BiasFree', True, False, False)
       for s in ('Blind', 'Sigma15', 'Sigma25', 'Sigma50')},
}
TINY = {'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1}


pytestmark = pytest.mark.usefixtures('one_thread')


def _name(path):
    return str(path.relative_to(REPO_ROOT / 'options'))


def test_every_official_training_has_an_option_file():
    names = {_name(p) for p in OPTION_FILES}
    assert set(OFFICIAL) | {'Demo.yml'} <= names


def _save_matching_checkpoint(network_opt, path):
    """A checkpoint with network_opt's names and shapes, each tensor a broadcast zero (a file of a few kB)."""
    from basicsr.utils.registry import ARCH_REGISTRY

    kwargs = {k: v for k, v in network_opt.items() if k != 'type'}
    with torch.device('meta'):
        network = ARCH_REGISTRY.get(network_opt['type'])(**kwargs)
    torch.save({'params': {k: torch.zeros(()).expand(v.shape) for k, v in network.state_dict().items()}}, path)


@pytest.mark.slow
@pytest.mark.parametrize('path', OPTION_FILES, ids=_name)
def test_option_file_validates_and_builds(path, tmp_path, monkeypatch):
    # Test files name released checkpoints under pretrained_models/ (not in git), and the checker wants them to exist.
    pretrained = (load_options(str(path)).get('path') or {}).get('pretrain_network_g')
    if pretrained:
        monkeypatch.chdir(tmp_path)
        (tmp_path / pretrained).parent.mkdir(parents=True, exist_ok=True)
        _save_matching_checkpoint(load_options(str(path))['network_g'], tmp_path / pretrained)
    if 'calculate_lpips' in path.read_text() and importlib.util.find_spec('lpips') is None:
        # Refused up front without the optional package (the metric would stop the run); the rest must be valid.
        with pytest.raises(OptionsError, match='lpips'):
            check_file(str(path), 'train' in load_options(str(path)), root_path=str(tmp_path), data=False)
        opt = load_options(str(path))
        opt['val']['metrics'] = {k: m for k, m in opt['val']['metrics'].items() if m['type'] != 'calculate_lpips'}
        path = tmp_path / path.name
        path.write_text(yaml.safe_dump(opt), encoding='utf-8')
    opt = check_file(str(path), 'train' in load_options(str(path)), root_path=str(tmp_path), data=False)
    is_train = 'train' in opt
    # The network: constructor arguments as written, with tiny sizes so the test stays fast.
    net_opt = dict(opt['network_g'], **(TINY if opt['network_g']['type'] == 'Restormer' else {}))
    net = build_network(deepcopy(net_opt))
    channels = net_opt.get('inp_channels', 3)
    with torch.no_grad():
        out = net(torch.rand(1, channels, 16, 16))
    assert out.shape == (1, net_opt.get('out_channels', 3), 16, 16)
    # The model: optimizer, scheduler, loss, progressive schedule and mixup built from the file's sections.
    runtime = make_opt(tmp_path, network=net_opt, is_train=is_train)
    full = dict(deepcopy(opt), network_g=net_opt, is_train=is_train, num_gpu=0, dist=False, rank=0, world_size=1,
                path=dict(opt.get('path') or {}, **runtime['path']))  # paths aside: no weights, tmp folders
    model = build_model(full)
    assert type(model).__name__ == opt['model_type']
    if is_train:
        train_set = opt['datasets']['train']
        assert type(model.optimizer_g).__name__ == opt['train']['optim_g']['type']
        if train_set.get('iters'):
            assert [s.patch_size for s in model.progressive.stages] == train_set['gt_sizes']
            assert model.progressive.stages[-1].last_iter == opt['train']['total_iter']
        assert (model.mixup is not None) == bool((opt['train'].get('mixing_augs') or {}).get('mixup'))


@pytest.mark.parametrize('name', sorted(OFFICIAL))
def test_official_files_use_the_paper_recipe(name):
    in_ch, layer_norm, mixup, y_channel, dual = OFFICIAL[name]
    opt = load_options(str(REPO_ROOT / 'options' / name))
    assert opt['model_type'] == 'ImageCleanModel' and opt['scale'] == 1 and opt['num_gpu'] == 'auto'
    net = opt['network_g']
    assert net == {'type': 'Restormer', 'inp_channels': in_ch, 'out_channels': 1 if in_ch == 1 else 3, 'dim': 48,
                   'num_blocks': [4, 6, 6, 8], 'num_refinement_blocks': 4, 'heads': [1, 2, 4, 8],
                   'ffn_expansion_factor': 2.66, 'bias': False, 'LayerNorm_type': layer_norm,
                   'dual_pixel_task': dual}
    train = opt['train']
    assert train['total_iter'] == 300000 and train['use_grad_clip'] is True
    assert train['optim_g'] == {'type': 'AdamW', 'lr': 3e-4, 'weight_decay': 1e-4, 'betas': [0.9, 0.999]}
    assert train['scheduler'] == {'type': 'CosineAnnealingRestartCyclicLR', 'periods': [92000, 208000],
                                  'restart_weights': [1, 1], 'eta_mins': [3e-4, 1e-6]}
    assert train['pixel_opt']['type'] == 'L1Loss'
    assert train['mixing_augs']['mixup'] is mixup and train['mixing_augs']['mixup_beta'] == 1.2
    data = opt['datasets']['train']
    assert data['batch_size_per_gpu'] == 8 and data['gt_size'] == 384
    assert data['mini_batch_sizes'] == [8, 5, 4, 2, 1, 1]
    assert data['iters'] == [92000, 64000, 48000, 36000, 36000, 24000]
    assert data['gt_sizes'] == [128, 160, 192, 256, 320, 384]
    assert all(d['dataroot_gt'].startswith('datasets/') for d in opt['datasets'].values())
    assert opt['val']['metrics']['psnr']['test_y_channel'] is y_channel
    header = (REPO_ROOT / 'options' / name).read_text().splitlines()[:16]
    assert any(f'torchrun --nproc_per_node=8 -m restormer_arch train -opt options/{name} --launcher pytorch' in line
               for line in header)


@pytest.mark.parametrize('name, params', [('Deraining.yml', 26126644), ('GaussianGrayDenoising_Blind.yml', 26109076),
                                          ('DefocusDeblurring_DualPixel.yml', 26132548)])
def test_full_size_networks_match_the_released_models(name, params):
    net = build_network(load_options(str(REPO_ROOT / 'options' / name))['network_g'])
    assert sum(p.numel() for p in net.parameters()) == params


def _deraining():
    return load_options(str(REPO_ROOT / 'options' / 'Deraining.yml'))


def _set(opt, dotted, value):
    *parents, last = dotted.split('.')
    for key in parents:
        opt = opt[key]
    opt[last] = value


def _check(opt, tmp_path, is_train=True):
    """``check_file`` of ``opt`` written to a file (the options only: the official files' data is not here)."""
    path = tmp_path / 'Deraining.yml'
    path.write_text(yaml.safe_dump(opt))
    return check_file(str(path), is_train, root_path=str(tmp_path), data=False)


@pytest.mark.slow
@pytest.mark.parametrize('key, value, message', [
    ('train.total_iter', 300001, 'iters sums to 300000 but train.total_iter is 300001'),
    ('datasets.train.iters', [92000, 64000, 48000, 36000, 60000], 'need one entry per stage'),
    ('datasets.train.gt_sizes', [128, 160, 192, 256, 320, 380], 'gt_sizes: 380 does not fit network_g (Restormer)'),
    ('datasets.train.gt_sizes', [128, 160, 192, 256, 320, 392], 'exceeds gt_size 384'),
    ('datasets.train.gt_size', 100, 'gt_sizes: 384 exceeds gt_size 100'),
    ('train.scheduler.periods', [92000, 200000], 'periods sums to 292000 but train.total_iter is 300000'),
    ('train.scheduler.eta_mins', [0.0003], 'restart_weights and eta_mins need the same length'),
    ('datasets.train.gt_sizes', None, 'gt_sizes: expected a list'),
    ('network_g.type', 'Restormr', "unknown arch type 'Restormr'; did you mean Restormer?"),
    ('network_g.LayerNorm_typ', 'BiasFree', "argument 'LayerNorm_typ'; did you mean LayerNorm_type?"),
    ('model_type', 'ImageCleanModle', 'did you mean ImageCleanModel'),
    ('train.pixel_opt.type', 'L1loss', 'did you mean L1Loss'),
    ('train.pixel_opt.type', 'PSNRLos', 'did you mean PSNRLoss'),
    ('train.optim_g.type', 'Adamw', "train.optim_g.type: optimizer 'Adamw' is not supported"),
    ('train.optim_g.lr', -3e-4, 'train.optim_g: Invalid learning rate: -0.0003'),
    ('train.scheduler.type', 'CosineAnnealingRestartCyclic', 'train.scheduler.type:'),
    ('val.metrics.psnr.type', 'calculate_pnsr', 'did you mean calculate_psnr'),
    # found by a fresh user: each ran, then crashed after the run folder existed or trained something else
    ('val.window_size', 0, 'val.window_size: 0'),
    ('val.window_size', -8, 'val.window_size: -8'),
    ('train.grad_clip_norm', -1, 'train.grad_clip_norm: -1 must be positive'),
    ('val.metrics.psnr.crop_border', -4, 'val.metrics.psnr: gives nan'),
    ('train.use_grad_clip', 'false', "train.use_grad_clip: 'false' is text, which reads as true"),
    ('logger.use_tb_logger', 'no', "logger.use_tb_logger: 'no' is text, which reads as true"),
])
def test_invalid_options_are_reported_clearly(key, value, message, tmp_path):
    opt = _deraining()
    _set(opt, key, value)
    with pytest.raises(OptionsError) as err:
        _check(opt, tmp_path)
    assert message in str(err.value) and len(str(err.value).splitlines()) == 1


@pytest.mark.slow
def test_dataset_types_are_judged_with_the_data(tmp_path):
    opt = _deraining()
    opt['datasets']['train']['type'] = 'Dataset_PairedImages'
    path = tmp_path / 'Deraining.yml'
    path.write_text(yaml.safe_dump(opt))
    with pytest.raises(OptionsError, match='did you mean Dataset_PairedImage'):
        check_file(str(path), True, root_path=str(tmp_path))


@pytest.mark.slow
def test_the_first_problem_is_reported_with_the_count_of_the_others(tmp_path):
    opt = _deraining()
    opt['train']['total_iter'] = 400000  # longer than the progressive stages and the LR cycles
    with pytest.raises(OptionsError, match=r'\(and 1 more problem\(s\)'):
        _check(opt, tmp_path)


def test_test_mode_skips_training_sections(tmp_path):
    opt = _deraining()
    del opt['train']
    _check(opt, tmp_path, is_train=False)
    with pytest.raises(OptionsError, match='train: missing'):
        _check(opt, tmp_path, is_train=True)


def test_bad_yaml_names_the_file(tmp_path):
    bad = tmp_path / 'bad.yml'
    bad.write_text('name: [unclosed\n')
    with pytest.raises(OptionsError, match='bad.yml: invalid YAML'):
        check_file(str(bad), True)


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    path = tmp_path / 'dup.yml'
    path.write_text('name: a\ntrain:\n  total_iter: 4\n  total_iter: 8\n')
    with pytest.raises(OptionsError, match='line 4') as err:
        load_options(str(path))
    assert 'line 3' in str(err.value) and len(str(err.value).splitlines()) == 1
    path.write_text('base: &base {a: 1}\nderived:\n  <<: *base\n  a: 2\nshape: !!python/tuple [1, 2]\n')
    assert load_options(str(path)) == {'base': {'a': 1}, 'derived': {'a': 2}, 'shape': (1, 2)}  # merges, tuples


@pytest.mark.slow
def test_overrides_are_applied_by_basicsr(tmp_path):
    cmd = parse_command_line(['-opt', 'x.yml', '--force_yml', 'train:optim_g:lr=!!float 1e-4', 'path:resume_state=~',
                              'datasets:train:gt_sizes=[128, 128, 128, 128, 128, 128]', '--debug'])
    assert cmd.force_yml[0] == 'train:optim_g:lr=!!float 1e-4'
    path = tmp_path / 'o.yml'
    path.write_text(yaml.safe_dump(_deraining()))
    with pytest.warns(OptionsWarning):  # the overridden values are not reported as changed: debug mode's are
        opt = check_file(str(path), True, cmd.force_yml, root_path=str(tmp_path), data=False)
    assert opt['train']['optim_g']['lr'] == 1e-4 and opt['path']['resume_state'] is None
    assert opt['datasets']['train']['gt_sizes'] == [128] * 6
    with pytest.raises(OptionsError, match='given 2 times'):
        parse_command_line(['-opt', 'x.yml', '--force_y', 'a=1', '--force_yml', 'b=2'])
    assert parse_command_line(['--launcher', 'none']) is None  # BasicSR reports its own usage error


def test_resolved_options_are_what_basicsr_runs(tmp_path, monkeypatch):
    from basicsr.utils.options import parse_options

    monkeypatch.chdir(tmp_path)
    opt = _deraining()
    opt['datasets']['train'].update(iters=[4], mini_batch_sizes=[8], gt_sizes=[128])
    opt['train'].update(total_iter=4, scheduler={'type': 'MultiStepLR', 'milestones': [2], 'gamma': 0.5})
    path = tmp_path / 'o.yml'
    path.write_text(yaml.safe_dump(opt))
    force = ('num_gpu=0', 'train:optim_g:lr=0.001')
    ours = check_file(str(path), True, force, root_path=str(tmp_path), data=False)
    monkeypatch.setattr('sys.argv', ['train', '-opt', str(path), '--force_yml', *force])
    theirs, _ = parse_options(str(tmp_path), is_train=True)
    for key in ('name', 'num_gpu', 'path', 'datasets', 'train', 'val', 'logger', 'dist', 'is_train', 'auto_resume'):
        assert ours[key] == theirs[key], key


@pytest.mark.slow
def test_cli_checks_the_option_file_before_training(tmp_path, capsys):
    # A run ten times longer than its LR cycles and progressive stages.
    opt_text = (REPO_ROOT / 'options' / 'Deraining.yml').read_text().replace('total_iter: 300000',
                                                                             'total_iter: 3000000')
    path = tmp_path / 'Deraining.yml'
    path.write_text(opt_text)
    assert main(['train', '-opt', str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('basicsr train: error: ') and len(err.splitlines()) == 1
    assert 'train.total_iter is 3000000' in err


@pytest.mark.slow
@pytest.mark.parametrize('name', ['fp16', 'half', 'float16'])
def test_fp16_training_is_refused_before_any_folder_but_fp16_testing_is_not(name, tmp_path, monkeypatch, capsys):
    opt = _deraining()
    opt['performance'] = {'precision': name}
    with pytest.raises(OptionsError, match='performance.precision'):
        _check(opt, tmp_path)
    del opt['train']
    _check(opt, tmp_path, is_train=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'Deraining.yml'
    path.write_text((REPO_ROOT / 'options' / 'Deraining.yml').read_text() + f'\nperformance:\n  precision: {name}\n')
    assert main(['train', '-opt', str(path)]) == 2
    assert 'performance.precision' in capsys.readouterr().err
    assert not (tmp_path / 'experiments').exists()


@pytest.mark.slow
def test_performance_typos_warn_and_arguments_torch_compile_refuses_are_errors(tmp_path):
    opt = _deraining()
    opt['performance'] = {'chanels_last': True, 'compile': {'moed': 'default'}}
    with pytest.raises(OptionsError, match='performance: .*moed'):  # torch.compile's own refusal, naming the section
        _check(opt, tmp_path)
    opt['performance'] = {'chanels_last': True}
    with pytest.warns(OptionsWarning, match='performance.chanels_last: .*did you mean channels_last'):
        _check(opt, tmp_path)


@pytest.mark.slow
def test_a_pretrained_network_that_cannot_load_is_refused_before_any_folder(tmp_path, monkeypatch, capsys):
    """path.pretrain_network_g is read and matched with network_g by the option check (exit 2, nothing created)."""
    monkeypatch.chdir(tmp_path)
    options = load_options(str(REPO_ROOT / 'options' / 'Deraining.yml'))
    other = dict(options['network_g'], LayerNorm_type='BiasFree')  # a denoising checkpoint: no norm biases
    _save_matching_checkpoint(other, tmp_path / 'denoising.pth')
    _save_matching_checkpoint(options['network_g'], tmp_path / 'deraining.pth')
    (tmp_path / 'notes.pth').write_text('not weights\n')
    text = (REPO_ROOT / 'options' / 'Deraining.yml').read_text()
    for name, refused in (('notes.pth', True), ('denoising.pth', True), ('deraining.pth', False)):
        path = tmp_path / f'{name}.yml'
        path.write_text(text.replace('pretrain_network_g: ~', f'pretrain_network_g: {tmp_path / name}'))
        assert f'pretrain_network_g: {tmp_path / name}' in path.read_text()
        try:
            check_file(str(path), True, data=False)
            problems = ''
        except OptionsError as err:
            problems = str(err)
        assert ('pretrain_network_g' in problems) == refused, problems
        assert main(['train', '-opt', str(path)]) == 2 or not refused
        assert not (tmp_path / 'experiments').exists()
    capsys.readouterr()


@pytest.mark.slow
def test_the_option_check_reads_the_entry_the_training_load_reads(tmp_path, monkeypatch):
    """Unset path.param_key_g: params_ema first (what validation scored), in the check as in load_network."""
    monkeypatch.chdir(tmp_path)
    options = load_options(str(REPO_ROOT / 'options' / 'Deraining.yml'))
    _save_matching_checkpoint(dict(options['network_g'], LayerNorm_type='BiasFree'), tmp_path / 'other.pth')
    _save_matching_checkpoint(options['network_g'], tmp_path / 'mine.pth')
    torch.save({'params': torch.load(tmp_path / 'other.pth')['params'],
                'params_ema': torch.load(tmp_path / 'mine.pth')['params']}, tmp_path / 'both.pth')
    path = tmp_path / 'both.yml'
    text = (REPO_ROOT / 'options' / 'Deraining.yml').read_text()
    path.write_text(text.replace('pretrain_network_g: ~', f'pretrain_network_g: {tmp_path / "both.pth"}'))
    check_file(str(path), True, data=False)  # params_ema fits the network; params (another configuration) is unused
    path.write_text(path.read_text().replace('pretrain_network_g:', 'param_key_g: params\n  pretrain_network_g:'))
    with pytest.raises(OptionsError, match='pretrain_network_g'):
        check_file(str(path), True, data=False)  # named explicitly: params, which does not fit


def test_demo_photos_are_prepared_where_demo_yml_reads_them(tmp_path):
    spec = importlib.util.spec_from_file_location('prepare_demo', REPO_ROOT / 'datasets' / 'prepare_demo.py')
    prepare_demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare_demo)
    demo = load_options(str(REPO_ROOT / 'options' / 'Demo.yml'))
    assert demo['datasets']['train']['dataroot_gt'] == 'datasets/Demo/train'
    assert demo['datasets']['val']['dataroot_gt'] == 'datasets/Demo/val'
    assert not set(prepare_demo.TRAIN) & set(prepare_demo.VAL)  # validation photos are held out
    root = tmp_path / 'Demo'
    assert prepare_demo.main(['--root', str(root)]) == 0
    train = sorted(p.stem for p in (root / 'train').glob('*.png'))
    val = sorted(p.stem for p in (root / 'val').glob('*.png'))
    assert train == sorted(prepare_demo.TRAIN) and val == sorted(prepare_demo.VAL)
    stamp = (root / 'val' / 'chelsea.png').stat().st_mtime_ns
    assert prepare_demo.main(['--root', str(root)]) == 0  # idempotent: existing photos are kept
    assert (root / 'val' / 'chelsea.png').stat().st_mtime_ns == stamp


def _small_run(tmp_path, model_type='ImageCleanModel'):
    """A tiny training file on real PNGs, validated on LQ-only images (BasicSR's SingleImageDataset)."""
    from tests.models.test_models import TINY_NET, write_pairs

    write_pairs(tmp_path / 'train', ['a', 'b'], (32, 32))
    write_pairs(tmp_path / 'val', ['v'], (24, 24))
    return {'name': 'lq_only', 'model_type': model_type, 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
            'network_g': TINY_NET, 'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
            'datasets': {'train': {'name': 't', 'type': 'Dataset_PairedImage', 'dataroot_gt': 'train/gt',
                                   'dataroot_lq': 'train/lq', 'io_backend': {'type': 'disk'}, 'gt_size': 16,
                                   'use_shuffle': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2,
                                   'geometric_augs': False, 'scale': 1},
                         'val': {'name': 'real', 'type': 'SingleImageDataset', 'dataroot_lq': 'val/lq',
                                 'io_backend': {'type': 'disk'}}},
            'train': {'total_iter': 2, 'optim_g': {'type': 'Adam', 'lr': 1e-4},
                      'scheduler': {'type': 'MultiStepLR', 'milestones': [2], 'gamma': 0.5},
                      'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}},
            'val': {'val_freq': 2, 'save_img': False,
                    'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}}},
            'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False}}


@pytest.mark.parametrize('model_type', ['SRModel', 'ImageCleanModel'])
def test_metrics_on_a_set_without_ground_truth(model_type, tmp_path, monkeypatch, capsys):
    # BasicSR's SRModel would score the first LQ-only image against the last training patch (issue: single-image val);
    # refused before any folder. ImageCleanModel skips those metrics with a note, so the same file passes the check.
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(_small_run(tmp_path, model_type)))
    monkeypatch.chdir(tmp_path)
    if model_type == 'SRModel':
        assert main(['train', '-opt', 'opt.yml']) == 2
        assert 'datasets.val: its images have no ground truth' in capsys.readouterr().err
        assert not (tmp_path / 'experiments').exists()
    else:
        check_file('opt.yml', True, root_path=str(tmp_path))


@pytest.mark.parametrize('ratio', [0, -1])
def test_a_train_loader_without_batches_is_refused_before_any_folder(ratio, tmp_path, monkeypatch, capsys):
    # BasicSR divides by the batches per epoch after making the run folder (ZeroDivisionError / a negative length).
    opt = _small_run(tmp_path)
    opt['datasets']['train']['dataset_enlarge_ratio'] = ratio
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
    monkeypatch.chdir(tmp_path)
    assert main(['train', '-opt', 'opt.yml']) == 2
    err = capsys.readouterr().err
    assert err.startswith('basicsr train: error: datasets.train:') and len(err.splitlines()) == 1
    assert not (tmp_path / 'experiments').exists()


@pytest.mark.slow
@pytest.mark.parametrize('key, value, message', [
    ('train.warmup_iter', 300000, 'train.warmup_iter: 300000 is not below train.total_iter 300000'),
    ('train.pixel_opt.loss_weight', -1, 'train.pixel_opt.loss_weight: -1 is negative'),
])
def test_settings_basicsr_trains_but_that_change_the_result_warn(key, value, message, tmp_path):
    opt = _deraining()
    _set(opt, key, value)
    with pytest.warns(OptionsWarning, match=message):
        _check(opt, tmp_path)
