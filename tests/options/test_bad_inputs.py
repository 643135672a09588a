"""The bad-input catalogue: realistic user mistakes, each reproduced for real and failing early with a clear message.

Every case builds the mistake (image files, LMDBs, checkpoints and option files in ``tmp_path``) and goes through
the code path the user hits: the option check of ``basicsr train`` (:func:`check`), the start of BasicSR's train
pipeline up to the first iteration (:func:`start`: option check, ``parse_options``, resume state, datasets and
loaders, model), ``basicsr restore`` (:func:`restore`) or the real command in a subprocess (:func:`cli`). A case
expects an exception type and message fragments (the key or file, and the fix), a warning, or - for mistakes that
are handled - success.

Each case id has one row in docs/bad_inputs.md (mistake | what you see | fix).
"""
import builtins
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.models import build_model
from basicsr.utils import MessageLogger, get_root_logger
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from basicsr.utils.options import parse_options

from restormer_arch import inference
from restormer_arch.archs.restormer_arch import Restormer
from restormer_arch.errors import OptionsError, OutputError
from restormer_arch.inference import RestoreError
from restormer_arch.models.training_hooks import RunError
from restormer_arch.options import OptionsWarning, check_file

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / 'docs' / 'bad_inputs.md'
TINY = {'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 1, 1, 1]}
TINY_NET = {'type': 'Restormer', 'inp_channels': 3, 'out_channels': 3, 'LayerNorm_type': 'WithBias', **TINY}


# ------------------------------------------------------------------------------------------------------- the catalogue
@dataclass(frozen=True)
class Case:
    """One mistake: ``action(tmp_path)`` makes it; ``error``/``warning`` and ``fragments`` say what the user sees."""

    id: str
    action: Callable[[Path], Any]
    error: Optional[type]
    fragments: Tuple[str, ...]
    warning: Optional[type] = None


CASES = []


def case(error: Optional[type] = None, *fragments: str, warning: Optional[type] = None) -> Callable:
    """Register the decorated function as a case named after it; no error and no warning: the input must work."""
    def register(action: Callable[[Path], Any]) -> Callable[[Path], Any]:
        CASES.append(Case(action.__name__, action, error, fragments, warning))
        return action
    return register


# ------------------------------------------------------------------------------------------------------------- helpers
def image(path: Path, size: Tuple[int, int] = (24, 24), channels: int = 3, dtype: Any = np.uint8,
          seed: int = 0) -> Path:
    """Write a random 8/16-bit image (gray when ``channels`` is 1)."""
    peak = np.iinfo(dtype).max
    shape = size if channels == 1 else (*size, channels)
    pixels = (np.random.default_rng(seed).random(shape) * peak).astype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return path


def pairs(root: Path, names: Tuple[str, ...] = ('a', 'b'), **kwargs: Any) -> Tuple[str, str]:
    """``root/lq`` and ``root/gt`` with the same random images under the same names."""
    for i, name in enumerate(names):
        for sub in ('lq', 'gt'):
            image(root / sub / f'{name}.png', seed=i, **kwargs)
    return str(root / 'lq'), str(root / 'gt')


def base_options(tmp: Path) -> Dict[str, Any]:
    """A correct tiny training configuration (progressive, cyclic cosine, validation) on images under ``tmp``."""
    lq, gt = pairs(tmp / 'train')
    val_lq, val_gt = pairs(tmp / 'val', ('v',), size=(20, 28))  # not multiples of 8
    return {
        'name': 'bad_input', 'model_type': 'ImageCleanModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': {'name': 'train', 'type': 'Dataset_PairedImage', 'dataroot_gt': gt, 'dataroot_lq': lq,
                      'io_backend': {'type': 'disk'}, 'gt_size': 16, 'geometric_augs': True, 'use_shuffle': True,
                      'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2, 'prefetch_mode': None,
                      'iters': [2, 2], 'mini_batch_sizes': [2, 1], 'gt_sizes': [8, 16]},
            'val': {'name': 'val', 'type': 'Dataset_PairedImage', 'dataroot_gt': val_gt, 'dataroot_lq': val_lq,
                    'io_backend': {'type': 'disk'}}},
        'network_g': dict(TINY_NET),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'total_iter': 4, 'warmup_iter': -1, 'use_grad_clip': True,
                  'optim_g': {'type': 'AdamW', 'lr': 0.001, 'weight_decay': 0.0001, 'betas': [0.9, 0.999]},
                  'scheduler': {'type': 'CosineAnnealingRestartCyclicLR', 'periods': [2, 2], 'restart_weights': [1, 1],
                                'eta_mins': [0.001, 0.000001]},
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1, 'reduction': 'mean'}},
        'val': {'val_freq': 2, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 4, 'use_tb_logger': False},
    }


def write_options(tmp: Path, opt: Dict[str, Any], edit: Tuple[str, str] = ('', '')) -> Path:
    """Write ``opt`` as YAML, then replace text (to reproduce exactly what a user typed, e.g. ``lr: 3e-4``)."""
    text = yaml.safe_dump(opt, sort_keys=False)
    assert edit[0] in text
    path = tmp / 'options.yml'
    path.write_text(text.replace(*edit), encoding='utf-8')
    return path


def check(tmp: Path, opt: Dict[str, Any], edit: Tuple[str, str] = ('', ''), is_train: bool = True) -> None:
    """What ``basicsr train`` does first: check the option file."""
    check_file(str(write_options(tmp, opt, edit)), is_train, root_path=str(tmp))


def start(tmp: Path, opt: Dict[str, Any], is_train: bool = True) -> Tuple[Dict[str, Any], Any, list]:
    """BasicSR's train pipeline up to its first iteration (the option check of ``basicsr train`` first).

    Returns:
        The parsed options, the model and ``[train_loader, *val_loaders]``.
    """
    import basicsr.train

    from restormer_arch.models.training_hooks import load_resume_state  # what `basicsr train` installs

    path = write_options(tmp, opt)
    check_file(str(path), is_train, root_path=str(tmp))
    argv, sys.argv = sys.argv, ['basicsr train', '-opt', str(path)]
    try:
        parsed, _ = parse_options(str(tmp), is_train=is_train)
    finally:
        sys.argv = argv
    parsed['root_path'] = str(tmp)
    resume_state = load_resume_state(parsed)
    train_loader, _, val_loaders, _, _ = basicsr.train.create_train_val_dataloader(parsed, get_root_logger())
    model = build_model(parsed)
    if resume_state:
        model.resume_training(resume_state)
    MessageLogger(parsed, 0, None)
    return parsed, model, [train_loader, *val_loaders]


def checkpoint(path: Path, **arch: Any) -> Path:
    """Save a tiny Restormer of the given configuration as BasicSR does (``{'params': state_dict}``)."""
    torch.save({'params': Restormer(**{**TINY, **arch}).state_dict()}, path)
    return path


def restore(*argv: str) -> list:
    """``basicsr restore ARGS`` in-process (RestoreError is what the command prints, with exit code 2)."""
    return inference.run(inference._build_parser().parse_args(list(argv)))


def cli(tmp: Path, *argv: str) -> subprocess.CompletedProcess:
    """Run ``python -m restormer_arch ARGS`` and re-raise what it reported (the exception type it printed).

    A training command must fail before its first iteration: "Start training" must not be in its log.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
    done = subprocess.run([sys.executable, '-m', 'restormer_arch', *argv], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=120)
    log = done.stdout + done.stderr
    assert 'Start training' not in log, log[-3000:]
    if done.returncode == 0:
        return done
    if done.returncode == 2 and re.search(r'^basicsr (train|test): error: ', done.stderr, re.MULTILINE):
        raise OptionsError(done.stderr)
    if done.returncode == 2 and done.stderr.startswith('basicsr restore: error:'):
        raise RestoreError(done.stderr)
    if done.returncode == 1 and 'Traceback' not in log and re.search(r'^basicsr train: error: ', log, re.MULTILINE):
        raise RunError(log)  # a problem found while setting the run up, reported in one line
    reported = re.findall(r'^(\w+): ', done.stderr, flags=re.MULTILINE)  # the traceback's last "Type: message" line
    raise getattr(builtins, reported[-1] if reported else 'RuntimeError', RuntimeError)(log)


def train_set(opt: Dict[str, Any]) -> Dict[str, Any]:
    return opt['datasets']['train']


class _Payload:
    """Unpickling this runs ``open(marker, 'w')``: a stand-in for code a malicious checkpoint would run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, 'w')


# ------------------------------------------------------------------------------------------------- option-file mistakes
@case(OptionsError, 'datasets.train:', "missing key 'gt_size'", "the file has 'gt_szie': did you mean gt_size?")
def typo_dataset_key_gt_szie(tmp):
    opt = base_options(tmp)
    train_set(opt)['gt_szie'] = train_set(opt).pop('gt_size')
    check(tmp, opt)


@case(OptionsError, 'train.optim_g:', "lr: '3e-4' is text, not a number", 'write !!float 3e-4')
def learning_rate_3e_4_read_as_text(tmp):
    check(tmp, base_options(tmp), edit=('lr: 0.001', 'lr: 3e-4'))


@case(OptionsError, "network_g: Restormer.__init__() got an unexpected keyword argument 'LayerNorm_typ'",
      'did you mean LayerNorm_type?')
def typo_network_argument(tmp):
    opt = base_options(tmp)
    opt['network_g']['LayerNorm_typ'] = opt['network_g'].pop('LayerNorm_type')
    check(tmp, opt)


@case(OptionsError, "needs the key 'num_gpu', which is missing (the file has 'num_gpus': did you mean num_gpu?)")
def typo_num_gpus(tmp):
    opt = base_options(tmp)
    opt['num_gpus'] = opt.pop('num_gpu')
    check(tmp, opt)


@case(warning=OptionsWarning)
def unknown_top_level_key_warns(tmp):
    opt = base_options(tmp)
    opt['experiment_notes'] = 'first try'
    check(tmp, opt)


@case(None, 'datasets.train.use_hflip: not read by this run', 'did you mean geometric_augs?', warning=OptionsWarning)
def basicsr_flip_keys(tmp):
    opt = base_options(tmp)
    train_set(opt)['use_hflip'] = train_set(opt).pop('geometric_augs')
    check(tmp, opt)


@case(OptionsError, 'datasets.train: iters: expected a list of positive integers', 'got 4')
def iters_not_a_list(tmp):
    opt = base_options(tmp)
    train_set(opt)['iters'] = 4
    check(tmp, opt)


@case(OptionsError, 'datasets.train:', "gt_size: '16' is text, not a number")
def gt_size_as_string(tmp):
    opt = base_options(tmp)
    train_set(opt)['gt_size'] = '16'
    check(tmp, opt)


@case(OptionsError, 'iters (2), mini_batch_sizes (2) and gt_sizes (3) need one entry per stage')
def progressive_lists_differ_in_length(tmp):
    opt = base_options(tmp)
    train_set(opt)['gt_sizes'] = [8, 16, 16]
    check(tmp, opt)


@case(OptionsError, 'datasets.train.iters sums to 4 but train.total_iter is 6; make them equal')
def iters_do_not_sum_to_total_iter(tmp):
    opt = base_options(tmp)
    opt['train']['total_iter'] = 6
    opt['train']['scheduler']['periods'] = [2, 4]
    check(tmp, opt)


@case(OptionsError, 'train.scheduler.periods sums to 3 but train.total_iter is 4')
def scheduler_periods_do_not_sum_to_total_iter(tmp):
    opt = base_options(tmp)
    opt['train']['scheduler']['periods'] = [1, 2]
    check(tmp, opt)


@case(warning=OptionsWarning)  # the official runner trains it on the loader's batch (issue 17)
def batch_smaller_than_mini_batch_sizes(tmp):
    opt = base_options(tmp)
    train_set(opt)['mini_batch_sizes'] = [4, 1]
    check(tmp, opt)


@case(OptionsError, 'datasets.train.gt_sizes: 12 does not fit network_g (Restormer): not a multiple of 8', 'e.g. 8')
def gt_sizes_not_multiple_of_8(tmp):
    opt = base_options(tmp)
    train_set(opt)['gt_sizes'] = [12, 16]
    check(tmp, opt)


@case(OptionsError, "network_g (Restormer) fails on datasets.train's first sample, 1x16x16",
      'Set network_g.inp_channels to match your data')
def gray_data_color_network(tmp):
    opt = base_options(tmp)
    for dataset in opt['datasets'].values():
        dataset['in_ch'] = 1
    check(tmp, opt)


@case(OptionsError, "network_g (Restormer) fails on datasets.train's first sample, 3x16x16",
      'expects an (N, 1, H, W) input')
def color_data_gray_network(tmp):
    opt = base_options(tmp)
    opt['network_g'].update(inp_channels=1, out_channels=1)
    check(tmp, opt)


@case(OptionsError, "network_g (Restormer) fails on datasets.train's first sample, 6x16x16", 'expects an (N, 3, H, W)')
def dual_pixel_data_color_network(tmp):
    opt = base_options(tmp)
    for phase, dataset in opt['datasets'].items():
        root = tmp / f'dp_{phase}'
        for sub in ('inputL', 'inputR', 'target'):
            for name in ('p0', 'p1'):  # a full batch of 2: the loader drops an incomplete one
                image(root / sub / f'{name}.png', dtype=np.uint16, seed=len(sub))
        dataset.update(type='Dataset_DefocusDeblur_DualPixel_16bit', dataroot_lqL=str(root / 'inputL'),
                       dataroot_lqR=str(root / 'inputR'), dataroot_gt=str(root / 'target'))
        dataset.pop('dataroot_lq')
    check(tmp, opt)


@case(OptionsError, 'datasets.train:', 'only scale 1 is supported', 'set "scale: 1"')
def scale_not_1(tmp):
    opt = base_options(tmp)
    opt['scale'] = 2
    check(tmp, opt)


@case(OptionsError, 'usable CUDA GPU(s); set num_gpu: auto', 'num_gpu: 0 to run on the CPU')
def more_gpus_than_the_machine_has(tmp):
    opt = base_options(tmp)
    opt['num_gpu'] = max(2, torch.cuda.device_count() + 1)
    check(tmp, opt)


@case(OptionsError, 'datasets.train.prefetch_mode: cuda needs a CUDA GPU and num_gpu > 0',
      'use cpu or ~')
def prefetch_cuda_without_cuda(tmp):
    opt = base_options(tmp)
    train_set(opt).update(prefetch_mode='cuda', pin_memory=True)
    check(tmp, opt)


@case(warning=OptionsWarning)  # BasicSR runs it (nothing is validated): a warning, not a refusal
def val_section_without_val_dataset(tmp):
    opt = base_options(tmp)
    del opt['datasets']['val']
    opt['val']['save_img'] = True
    check(tmp, opt)


@case(OptionsError, 'val.save_img: missing (BasicSR reads it')
def val_save_img_missing(tmp):
    opt = base_options(tmp)
    del opt['val']['save_img']
    check(tmp, opt)


@case(OptionsError, 'logger.use_tb_logger: missing')
def use_tb_logger_missing(tmp):
    opt = base_options(tmp)
    del opt['logger']['use_tb_logger']
    check(tmp, opt)


@case(OptionsError, 'path.pretrain_network_g: file weights/net_g.pth does not exist',
      'or set it to ~')
def pretrain_file_missing(tmp):
    opt = base_options(tmp)
    opt['path']['pretrain_network_g'] = 'weights/net_g.pth'
    check(tmp, opt)


@case(OptionsError, 'path.resume_state:', 'is a network checkpoint, not a training state',
      'set path.pretrain_network_g to it')
def resume_state_points_at_a_pth(tmp):
    opt = base_options(tmp)
    opt['path']['resume_state'] = str(checkpoint(tmp / 'net_g_1000.pth'))
    check(tmp, opt)


@case(warning=OptionsWarning)
def eval_without_pretrained_weights_warns(tmp):
    opt = base_options(tmp)
    for key in ('train', 'logger'):
        del opt[key]
    opt['datasets'] = {'test_1': opt['datasets']['val']}
    check(tmp, opt, is_train=False)


# ------------------------------------------------------------------ options as BasicSR runs them (issue 10: A, B, F)
def check_with(tmp: Path, opt: Dict[str, Any], *overrides: str) -> None:
    """The check of ``basicsr train -opt options.yml --force_yml OVERRIDES``."""
    path = write_options(tmp, opt)
    check_file(str(path), True, force_yml=overrides, root_path=str(tmp))


@case(OptionsError, 'duplicate key', 'line')
def yaml_duplicate_key(tmp):
    path = write_options(tmp, base_options(tmp))
    path.write_text(path.read_text() + 'num_gpu: 1\n')  # a second num_gpu at the end: YAML keeps it silently
    check_file(str(path), True)


@case(OptionsError, 'basicsr train:', 'options.yml: invalid YAML at line')
def cli_yaml_syntax_error(tmp):
    path = write_options(tmp, base_options(tmp))
    path.write_text(path.read_text().replace('  total_iter: 4', '\ttotal_iter: 4'))
    cli(tmp, 'train', '-opt', 'options.yml')


@case(OptionsError, 'basicsr test:', 'missing.yml: no such option file')
def cli_missing_option_file(tmp):
    cli(tmp, 'test', '-opt', 'missing.yml')


@case(OptionsError, 'basicsr train:', "name: 'denoise/run1' cannot be a folder name")
def cli_name_with_slash(tmp):
    opt = base_options(tmp)
    opt['name'] = 'denoise/run1'
    write_options(tmp, opt)
    cli(tmp, 'train', '-opt', 'options.yml')


@case()
def force_yml_num_gpu_override_is_judged(tmp):
    opt = base_options(tmp)
    opt['num_gpu'] = torch.cuda.device_count() + 8  # more GPUs than here: refused as written, fine with the override
    check_with(tmp, opt, 'num_gpu=0')


@case(None, 'train.total_iters: not read by this run', 'did you mean total_iter?', warning=OptionsWarning)
def force_yml_unknown_key(tmp):
    check_with(tmp, base_options(tmp), 'train:total_iters=8')


@case(OptionsError, 'train.total_iter:', "invalid literal for int() with base 10: 'many'")
def force_yml_wrong_type(tmp):
    check_with(tmp, base_options(tmp), 'train:total_iter=many')


@case(OptionsError, '--force_yml train:optim:lr=0.1', "BasicSR needs the key 'optim', which is missing")
def force_yml_missing_section(tmp):
    check_with(tmp, base_options(tmp), 'train:optim:lr=0.1')


@case(OptionsError, 'iters sums to 4 but train.total_iter is 9', '(and 1 more problem(s)')
def force_yml_breaks_the_schedule(tmp):
    check_with(tmp, base_options(tmp), 'train:total_iter=9')


@case(None, 'train.mixing_augs.mixup_bta: not read by this run', 'did you mean mixup_beta?', warning=OptionsWarning)
def mixup_beta_typo(tmp):
    opt = base_options(tmp)
    opt['train']['mixing_augs'] = {'mixup': True, 'mixup_bta': 2}
    check(tmp, opt)


@case(OptionsError, 'train.mixing_augs: mixup_beta must be positive')
def mixup_beta_zero(tmp):
    opt = base_options(tmp)
    opt['train']['mixing_augs'] = {'mixup': True, 'mixup_beta': 0}
    check(tmp, opt)


@case(OptionsError, 'train.scheduler: CosineAnnealingRestartCyclicLR.__init__() got an unexpected keyword argument',
      'did you mean eta_mins?')
def scheduler_argument_typo(tmp):
    opt = base_options(tmp)
    opt['train']['scheduler']['eta_min'] = opt['train']['scheduler'].pop('eta_mins')
    check(tmp, opt)


@case(warning=OptionsWarning)
def scheduler_periods_longer_than_run(tmp):
    opt = base_options(tmp)
    opt['train']['scheduler']['periods'] = [2, 8]  # the second cycle stops part-way: valid
    check(tmp, opt)


@case(warning=OptionsWarning)
def eta_min_above_lr(tmp):
    opt = base_options(tmp)
    opt['train']['optim_g']['lr'] = 1e-4
    opt['train']['scheduler']['eta_mins'] = [3e-4, 1e-6]
    check(tmp, opt)


@case(warning=OptionsWarning)
def basicsr_keys_of_other_models_warn(tmp):
    opt = base_options(tmp)
    opt['noise_range'] = [0, 10]  # read by Real-ESRGAN's model, not by this project
    check(tmp, opt)


@case(OptionsError, 'datasets.train: Dataset_GaussianDenoising', 'sigma_type must be one of')
def gaussian_sigma_type_checked_up_front(tmp):
    opt = base_options(tmp)
    train = opt['datasets']['train']
    train.update(type='Dataset_GaussianDenoising', sigma_type='uniform', sigma_range=[0, 50])
    del train['dataroot_lq']
    check(tmp, opt)


@case(OptionsError, 'logger.wandb.project', 'pip install wandb')
def wandb_project_without_wandb(tmp):
    if importlib.util.find_spec('wandb') is not None:
        pytest.skip('wandb is installed here')
    opt = base_options(tmp)
    opt['logger'].update(use_tb_logger=True, wandb={'project': 'my_project', 'resume_id': None})
    check(tmp, opt)


@case(OptionsError, 'val.metrics.lpips: calculate_lpips needs the optional lpips package')
def lpips_metric_without_lpips(tmp):
    if importlib.util.find_spec('lpips') is not None:
        pytest.skip('lpips is installed here')
    opt = base_options(tmp)
    opt['val']['metrics']['lpips'] = {'type': 'calculate_lpips'}
    check(tmp, opt)


@case(OptionsError, 'train.ema_decay: 2 must be in [0, 1)')
def ema_decay_above_1(tmp):
    opt = base_options(tmp)
    opt['train']['ema_decay'] = 2  # BasicSR would train with averaged weights that diverge
    check(tmp, opt)


@case(OptionsError, 'logger.print_freq: expected a positive whole number of iterations, got 0')
def print_freq_zero(tmp):
    opt = base_options(tmp)
    opt['logger']['print_freq'] = 0  # BasicSR: ZeroDivisionError at the first iteration, after the run folder
    check(tmp, opt)


@case(OptionsError, 'basicsr train: error: train.optim_g: Invalid learning rate: -0.0003')
def cli_negative_learning_rate(tmp):
    opt = base_options(tmp)
    opt['train']['optim_g']['lr'] = -3e-4
    write_options(tmp, opt)
    cli(tmp, 'train', '-opt', 'options.yml')


@case(OutputError, 'name: cannot create', 'experiments is a file, not a folder')
def experiments_location_is_a_file(tmp):
    (tmp / 'experiments').write_text('')
    check(tmp, base_options(tmp))


# ------------------------------------------------------------------------------------------------------- data mistakes
@case(OptionsError, 'dataroot_lq: folder', 'does not exist', 'prepare the data as described in datasets/README.md')
def dataset_folder_missing(tmp):
    opt = base_options(tmp)
    train_set(opt)['dataroot_lq'] = str(tmp / 'train' / 'input')
    start(tmp, opt)


@case(OptionsError, '1 file(s) missing in dataroot_lq: c.png')
def image_file_missing(tmp):
    opt = base_options(tmp)
    image(tmp / 'train' / 'gt' / 'c.png')
    (tmp / 'meta.txt').write_text('a.png\nb.png\nc.png\n')
    train_set(opt)['meta_info_file'] = str(tmp / 'meta.txt')
    start(tmp, opt)


@case(OptionsError, 'dataroot_gt: no images (.png', 'empty"; check the path')
def dataset_folder_empty(tmp):
    opt = base_options(tmp)
    (tmp / 'empty').mkdir()
    train_set(opt).update(dataroot_gt=str(tmp / 'empty'), dataroot_lq=str(tmp / 'empty'))
    start(tmp, opt)


@case(OptionsError, 'lq/b.png" cannot be decoded', 'replace or remove it', 'found in the images before training')
def corrupt_image(tmp):
    opt = base_options(tmp)
    (tmp / 'train' / 'lq' / 'b.png').write_bytes(b'<html>404 Not Found</html>')
    start(tmp, opt)


@case(OptionsError, 'gt/a.png" is truncated (the PNG ends before its IEND chunk', 'copy or regenerate it')
def truncated_png(tmp):
    opt = base_options(tmp)
    path = tmp / 'train' / 'gt' / 'a.png'
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    start(tmp, opt)


@case(OptionsError, 'sizes differ (lq', 'a.png" 24x20, gt', 'a.png" 24x24); restoration pairs must have the same')
def lq_gt_size_mismatch(tmp):
    opt = base_options(tmp)
    image(tmp / 'train' / 'lq' / 'a.png', size=(24, 20))
    start(tmp, opt)


@case(OptionsError, 'does not match dataroot_gt', '1 file(s) missing in dataroot_lq: b.png',
      '1 file(s) without a gt partner: b_rain.png', 'needs a partner with the same name (filename_tmpl')
def lq_gt_name_mismatch(tmp):
    opt = base_options(tmp)
    (tmp / 'train' / 'lq' / 'b.png').rename(tmp / 'train' / 'lq' / 'b_rain.png')
    start(tmp, opt)


@case()
def sixteen_bit_pairs_work(tmp):
    opt = base_options(tmp)
    lq, gt = pairs(tmp / 'train16', dtype=np.uint16)
    train_set(opt).update(dataroot_lq=lq, dataroot_gt=gt)
    _, _, loaders = start(tmp, opt)
    sample = loaders[0].dataset[0]['gt']
    levels = (sample * 65535).round()
    assert torch.allclose(levels, sample * 65535, atol=1e-2)  # read at full 16-bit precision ...
    assert (levels % 257 != 0).any()  # ... not reduced to 8 bits


@case(OptionsError, 'is 8-bit but Dataset_DefocusDeblur_DualPixel_16bit expects 16-bit PNGs',
      'use the 16-bit DPDD data, or Dataset_PairedImage for 8-bit images')
def eight_bit_dual_pixel_views(tmp):
    opt = base_options(tmp)
    opt['network_g'].update(inp_channels=6, dual_pixel_task=True)
    for phase, dataset in opt['datasets'].items():
        root = tmp / f'dp_{phase}'
        for sub, dtype in (('inputL', np.uint16), ('inputR', np.uint8), ('target', np.uint16)):
            image(root / sub / 'p0.png', dtype=dtype)
        dataset.update(type='Dataset_DefocusDeblur_DualPixel_16bit', dataroot_lqL=str(root / 'inputL'),
                       dataroot_lqR=str(root / 'inputR'), dataroot_gt=str(root / 'target'))
        del dataset['dataroot_lq']
    start(tmp, opt)


@case(warning=UserWarning)
def gray_images_for_a_color_dataset_warn(tmp):
    opt = base_options(tmp)
    lq, gt = pairs(tmp / 'gray', channels=1)
    train_set(opt).update(dataroot_lq=lq, dataroot_gt=gt)
    start(tmp, opt)


def _lmdbs(tmp: Path, opt: Dict[str, Any]) -> Tuple[Path, Path]:
    dbs = []
    for sub in ('lq', 'gt'):
        folder, names = tmp / 'train' / sub, ['a.png', 'b.png']
        dbs.append(tmp / f'{sub}.lmdb')
        make_lmdb_from_imgs(str(folder), str(dbs[-1]), names, [n[:-4] for n in names], map_size=2**22)
    train_set(opt).update(io_backend={'type': 'lmdb'}, dataroot_lq=str(dbs[0]), dataroot_gt=str(dbs[1]))
    return dbs[0], dbs[1]


@case(OptionsError, 'is not a BasicSR LMDB (needs data.mdb and meta_info.txt)', 'datasets/make_lmdb.py')
def lmdb_without_meta_info(tmp):
    opt = base_options(tmp)
    lq_db, _ = _lmdbs(tmp, opt)
    (lq_db / 'meta_info.txt').unlink()
    start(tmp, opt)


@case(OptionsError, 'hold different keys (missing in lq: c; missing in gt: none)', 'Build both LMDBs')
def lmdb_missing_keys(tmp):
    opt = base_options(tmp)
    _, gt_db = _lmdbs(tmp, opt)
    with open(gt_db / 'meta_info.txt', 'a', encoding='utf-8') as f:
        f.write('c.png (24,24,3) 1\n')
    start(tmp, opt)


@case(OptionsError, '(24x24) is smaller than the training patch gt_size=32 and use_padding is false',
      'set use_padding: true')
def images_smaller_than_patch_without_padding(tmp):
    opt = base_options(tmp)
    train_set(opt).update(gt_size=32, gt_sizes=[16, 32], use_padding=False)
    start(tmp, opt)


# ------------------------------------------------------------------------------ images as users have them (issue 11)
def _jpeg_pair(tmp: Path, name: str = 'a', gt_exif: bytes = b'', cut: bool = False) -> None:
    """Replace the training pair ``name`` by JPEGs (GT optionally with EXIF, or cut in half)."""
    from PIL import Image

    for sub in ('lq', 'gt'):
        (tmp / 'train' / sub / f'{name}.png').unlink()
        buf = tmp / 'train' / sub / f'{name}.jpg'
        Image.fromarray(np.full((24, 32, 3), 90 if sub == 'lq' else 120, np.uint8)).save(
            buf, quality=95, **({'exif': gt_exif} if sub == 'gt' and gt_exif else {}))
        if sub == 'gt' and cut:
            buf.write_bytes(buf.read_bytes()[:buf.stat().st_size // 2])


@case(OptionsError, 'gt/a.jpg" is truncated (the JPEG ends before its end-of-image marker FF D9',
      'copy or regenerate it', 'found in the images before training')
def truncated_jpeg(tmp):
    opt = base_options(tmp)
    _jpeg_pair(tmp, cut=True)
    start(tmp, opt)


@case(OptionsError, 'meta_info_file', 'name files outside dataroot_gt', 'relative to dataroot_gt')
def meta_info_absolute_paths_outside_gt(tmp):
    opt = base_options(tmp)
    (tmp / 'meta.txt').write_text(f'{tmp / "train" / "lq" / "a.png"}\n')  # would pair every target with itself
    train_set(opt)['meta_info_file'] = str(tmp / 'meta.txt')
    start(tmp, opt)


@case()
def meta_info_absolute_paths_inside_gt_work(tmp):
    opt = base_options(tmp)
    (tmp / 'meta.txt').write_text(''.join(f'{tmp / "train" / "gt" / n}\n' for n in ('a.png', 'b.png')))
    train_set(opt)['meta_info_file'] = str(tmp / 'meta.txt')
    _, _, loaders = start(tmp, opt)
    assert [Path(p['lq_path']).parent.name for p in loaders[0].dataset.paths] == ['lq', 'lq']


@case(OptionsError, 'read the same file as input and target', 'learn the identity')
def lq_folder_is_gt_folder(tmp):
    opt = base_options(tmp)
    train_set(opt)['dataroot_lq'] = train_set(opt)['dataroot_gt']
    start(tmp, opt)


@case()
def phone_jpeg_with_exif_orientation_works(tmp):
    from PIL import Image

    opt = base_options(tmp)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 24 high x 32 wide, shown (and read) 32 high x 24 wide
    _jpeg_pair(tmp, gt_exif=exif.tobytes())
    (tmp / 'train' / 'lq' / 'a.jpg').unlink()
    image(tmp / 'train' / 'lq' / 'a.jpg', size=(32, 24))
    _, _, loaders = start(tmp, opt)  # the image check sees the upright size, like the reader
    dataset = loaders[0].dataset
    assert dataset.reader.read(dataset.paths[0]['gt_path'], 'gt').shape == (32, 24, 3)


@case(OptionsError, 'result name(s) would be shared by several images', '"v"', 'rename the images')
def eval_images_sharing_a_result_name(tmp):
    opt = base_options(tmp)
    for sub in ('lq', 'gt'):
        image(tmp / 'val' / sub / 'v.jpg', size=(20, 28))
    start(tmp, opt)


# ------------------------------------------------------------------------------------------- checkpoints and resuming
@case(OptionsError, 'does not match network Restormer', 'missing keys', 'LayerNorm_type BiasFree for denoising')
def pretrain_bias_free_into_with_bias(tmp):
    opt = base_options(tmp)
    opt['path']['pretrain_network_g'] = str(checkpoint(tmp / 'denoise.pth', LayerNorm_type='BiasFree'))
    start(tmp, opt)


@case(OptionsError, 'shape mismatches (checkpoint vs network, e.g. output.weight: (1, 16, 3, 3) vs (3, 16, 3, 3)',
      'inp_channels/out_channels 1 for gray')
def pretrain_gray_into_color(tmp):
    opt = base_options(tmp)
    opt['path']['pretrain_network_g'] = str(checkpoint(tmp / 'gray.pth', inp_channels=1, out_channels=1))
    start(tmp, opt)


@case(OptionsError, 'unexpected keys (e.g. skip_conv.weight)', 'inp_channels 6 + dual_pixel_task for dual-pixel')
def pretrain_dual_pixel_into_color(tmp):
    opt = base_options(tmp)
    opt['path']['pretrain_network_g'] = str(checkpoint(tmp / 'dp.pth', inp_channels=6, dual_pixel_task=True))
    start(tmp, opt)


@case(OptionsError, 'refusing to load', 'could run code when loaded (weights_only=True)', 'If you trust the file')
def malicious_pickle_checkpoint(tmp):
    marker = tmp / 'code_ran'
    torch.save({'params': _Payload(str(marker))}, tmp / 'evil.pth')
    opt = base_options(tmp)
    opt['path']['pretrain_network_g'] = str(tmp / 'evil.pth')
    try:
        start(tmp, opt)
    finally:
        assert not marker.exists(), 'the checkpoint ran code while loading'


@case(OptionsError, 'path.resume_state:', 'is not a BasicSR training state',
      'training_states/<iter>.state, not at a network checkpoint')
def resume_state_is_weights_renamed(tmp):
    opt = base_options(tmp)
    opt['path']['resume_state'] = str(checkpoint(tmp / '1000.state'))
    start(tmp, opt)


# -------------------------------------------------------------------------------------------------- running networks
@case(ValueError, 'Restormer expects an (N, 3, H, W) input, got shape (1, 1, 16, 16)', 'network_g.inp_channels')
def wrong_channel_count_for_the_network(tmp):
    Restormer(**TINY)(torch.rand(1, 1, 16, 16))


@case()
def eval_sizes_not_multiple_of_8_work(tmp):
    _, model, loaders = start(tmp, base_options(tmp))
    model.validation(loaders[1], 1, None, save_img=False)  # the 20x28 validation pair
    assert np.isfinite(model.metric_results['psnr'])
    model.feed_data({'lq': torch.rand(1, 3, 19, 21)})
    model.test()
    assert model.output.shape == (1, 3, 19, 21)


@case(RestoreError, '--tile 16 --tile-overlap 32:', 'below half the tile size')
def restore_tile_smaller_than_overlap(tmp):
    image(tmp / 'in.png', size=(40, 36))
    restore('-i', str(tmp / 'in.png'), '-o', str(tmp / 'out'), '--task', 'deraining', '--allow-random-weights',
            '--arch-options', json.dumps(TINY), '--tile', '16', '--tile-overlap', '32')


@case()
def restore_tile_not_multiple_of_8_works(tmp):
    image(tmp / 'in.png', size=(40, 36))
    written = restore('-i', str(tmp / 'in.png'), '-o', str(tmp / 'out'), '--task', 'deraining', '--no-progress',
                      '--allow-random-weights', '--arch-options', json.dumps(TINY),
                      '--tile', '20', '--tile-overlap', '4')
    assert cv2.imread(str(written[0])).shape == (40, 36, 3)


@case(RestoreError, 'does not match the --task deraining configuration', 'try --task gaussian_gray_denoising')
def restore_with_another_tasks_checkpoint(tmp):
    image(tmp / 'in.png')
    weights = checkpoint(tmp / 'gray.pth', inp_channels=1, out_channels=1, LayerNorm_type='BiasFree')
    restore('-i', str(tmp / 'in.png'), '-o', str(tmp / 'out'), '--task', 'deraining', '--weights', str(weights),
            '--arch-options', json.dumps(TINY))


# ---------------------------------------------------------------------------------- through the real command line
@case(OptionsError, 'basicsr train: error:', 'options.yml', "'num_gpus': did you mean num_gpu?")
def cli_train_typo_num_gpus(tmp):
    opt = base_options(tmp)
    opt['num_gpus'] = opt.pop('num_gpu')
    write_options(tmp, opt)
    cli(tmp, 'train', '-opt', 'options.yml')


@case(OptionsError, 'Dataset_PairedImage "train"', 'gt/b.png" is corrupt (a PNG without its IHDR header)',
      'replace or remove it')
def cli_train_corrupt_image(tmp):  # one line, no traceback (the option check builds the dataset)
    opt = base_options(tmp)
    (tmp / 'train' / 'gt' / 'b.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 100)
    write_options(tmp, opt)
    cli(tmp, 'train', '-opt', 'options.yml')


@case(OptionsError, 'network_g (RRDBNet) turns a 3x16x16 input into 3x64x64', 'scales images by x4', 'scale: 1')
def cli_train_network_scale_mismatch(tmp):
    opt = base_options(tmp)
    opt['network_g'] = {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'scale': 4, 'num_feat': 8,
                        'num_block': 1, 'num_grow_ch': 4}
    write_options(tmp, opt)
    cli(tmp, 'train', '-opt', 'options.yml')


@case(OptionsError, 'wide.pth [params] fills only 8 of the 98 tensors', 'mostly random weights')
def cli_train_pretrain_matches_nothing(tmp):
    opt = base_options(tmp)
    opt['path'].update(pretrain_network_g=str(checkpoint(tmp / 'wide.pth', dim=16)), strict_load_g=False)
    write_options(tmp, opt)
    cli(tmp, 'train', '-opt', 'options.yml')


@case(RestoreError, 'basicsr restore: error: -i', 'no images found (extensions: .png')
def cli_restore_empty_input_folder(tmp):
    (tmp / 'photos').mkdir()
    cli(tmp, 'restore', '-i', 'photos', '-o', 'out', '--task', 'deraining', '--allow-random-weights')


def _nothing_created(tmp: Path, run: Callable[[], Any]) -> None:
    """Run ``run`` (it must raise) and re-raise after checking that no run folder was made."""
    try:
        run()
    finally:
        assert not any((tmp / d).exists() for d in ('experiments', 'results', 'tb_logger'))


@case(OptionsError, 'datasets.train:', "missing key 'name'")  # BasicSR's build_dataset logs it after the run folder
def cli_dataset_without_name(tmp):
    opt = base_options(tmp)
    del train_set(opt)['name']
    write_options(tmp, opt)
    _nothing_created(tmp, lambda: cli(tmp, 'train', '-opt', 'options.yml'))


@case(OptionsError, 'train.scheduler:', "missing key 'scheduler'")  # the model's setup_schedulers reads it
def cli_scheduler_missing(tmp):
    opt = base_options(tmp)
    del opt['train']['scheduler']
    write_options(tmp, opt)
    _nothing_created(tmp, lambda: cli(tmp, 'train', '-opt', 'options.yml'))


@case(OptionsError, 'train:', "missing key 'optim_g'")  # no finer key caught it: the section is named
def optimizer_missing(tmp):
    opt = base_options(tmp)
    del opt['train']['optim_g']
    check(tmp, opt)


@case(OptionsError, 'val:', "'list' object has no attribute 'items'")
def metrics_as_a_list(tmp):
    opt = base_options(tmp)
    opt['val']['metrics'] = ['psnr']
    check(tmp, opt)


@case(OptionsError, 'path.resume_state:', "this run's models folder", 'give this file that run\'s name')
def resume_state_of_another_run(tmp):
    other = tmp / 'experiments' / 'other_run' / 'training_states'
    other.mkdir(parents=True)
    torch.save({'epoch': 0, 'iter': 4, 'optimizers': [{}], 'schedulers': [{}]}, other / '4.state')
    opt = base_options(tmp)
    opt['path']['resume_state'] = str(other / '4.state')
    check(tmp, opt)


@case(None, 'train.pixel_opt.loss_weight: 0', warning=OptionsWarning)
def loss_weight_zero(tmp):
    opt = base_options(tmp)
    opt['train']['pixel_opt']['loss_weight'] = 0
    check(tmp, opt)


@case(None, 'train.pixel_opt: missing', 'L1Loss', warning=OptionsWarning)  # the official runner refuses it
def pixel_opt_missing(tmp):
    opt = base_options(tmp)
    del opt['train']['pixel_opt']
    check(tmp, opt)


@case(None, 'datasets.train: basicsr test scores a train set', warning=OptionsWarning)
def train_set_in_a_test_file(tmp):
    opt = base_options(tmp)
    opt['path']['pretrain_network_g'] = str(checkpoint(tmp / 'net.pth'))
    check(tmp, opt, is_train=False)


@case()
def unread_key_set_to_none_is_quiet(tmp):  # `dataroot_lq: none` in the official Gaussian denoising files
    import warnings

    opt = base_options(tmp)
    opt['datasets']['train'].update(type='Dataset_GaussianDenoising', dataroot_lq='none', sigma_type='constant',
                                    sigma_range=15, in_ch=3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        check(tmp, opt)
    assert not [w for w in record if 'dataroot_lq' in str(w.message)], [str(w.message) for w in record]


@case(OptionsError, 'train.ema_decay:', "'0.999' is not a number")  # the model compares it as written
def ema_decay_as_text(tmp):
    opt = base_options(tmp)
    opt['train']['ema_decay'] = '0.999'
    _nothing_created(tmp, lambda: check(tmp, opt))


@case(OptionsError, 'train.warmup_iter:', "'none' is not a number")  # BasicSR's update_learning_rate compares it
def warmup_iter_as_text(tmp):
    opt = base_options(tmp)
    opt['train']['warmup_iter'] = 'none'
    check(tmp, opt)


@case(OptionsError, 'train.pixel_opt:')  # the model's dict(pixel_opt) would fail after the run folder exists
def pixel_opt_as_a_list(tmp):
    opt = base_options(tmp)
    opt['train']['pixel_opt'] = ['L1Loss']
    check(tmp, opt)


@case(OptionsError, 'name: 300 characters', 'shorten it')  # BasicSR's log file name would be too long to create
def cli_name_too_long(tmp):
    opt = base_options(tmp)
    opt['name'] = 'x' * 300
    write_options(tmp, opt)
    _nothing_created(tmp, lambda: cli(tmp, 'train', '-opt', 'options.yml'))


@case(None, 'train.total_iter: you wrote 4.7', '4 iterations', warning=OptionsWarning)
def total_iter_not_whole(tmp):
    opt = base_options(tmp)
    opt['train']['total_iter'] = 4.7
    check(tmp, opt)


# ------------------------------------------------------------------------------------------------------------ the test
@pytest.mark.slow
@pytest.mark.parametrize('bad', CASES, ids=[c.id for c in CASES])
def test_bad_input(bad: Case, tmp_path, monkeypatch):
    documented = re.findall(r'^\| `(\w+)` \|', DOC.read_text(encoding='utf-8'), flags=re.MULTILINE)
    assert sorted(documented) == sorted(c.id for c in CASES), f'{DOC} and the cases differ'  # one row per case
    monkeypatch.chdir(tmp_path)  # relative paths in option files start here, as for a user's run
    if bad.error is not None:
        with pytest.raises(bad.error) as info:
            bad.action(tmp_path)
        message = str(info.value)
    elif bad.warning is not None:
        with pytest.warns(bad.warning) as record:
            bad.action(tmp_path)
        message = '\n'.join(str(w.message) for w in record)
    else:
        bad.action(tmp_path)
        return
    for fragment in bad.fragments:
        assert fragment in message, f'{fragment!r} not in:\n{message}'
