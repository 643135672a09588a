"""The silent-wrong rules: what no constructor refuses but would crash hours into a run or train something else than
asked. One table, :data:`RULES`; :func:`evaluate` applies it to the options BasicSR resolved and the components
:func:`.build.build` made.

An error only where the run would crash or silently compute something wrong; whatever the official Restormer runner or
BasicSR trains is at most a warning, and runs as they run it.
"""
import importlib.util
import os
from typing import Any, Callable, Dict, Iterable, List, Tuple

import torch

from restormer_arch.options.build import Built


def _name(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    name = opt['name']
    if not name.strip() or name in ('.', '..') or any(s in name for s in '/\\\0'):
        yield (f'name: {name!r} cannot be a folder name (experiments/<name>, and the log file is named after it); '
               'use letters, digits, "-" and "_".')
    # BasicSR names the log file train_<name>_<YYYYMMDD_HHMMSS>.log: the longest name it makes from ours.
    name_max = os.pathconf(opt.get('root_path') or os.getcwd(), 'PC_NAME_MAX') if hasattr(os, 'pathconf') else 255
    if len(f'train_{name}_20261203_120000.log'.encode()) > name_max:
        yield (f'name: {len(name)} characters; the log file train_<name>_<time>.log would be longer than this file '
               f'system allows ({name_max} bytes): shorten it.')


def _raw_numbers(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    # Values BasicSR or the model compare with numbers as written (no int()/float()): text stops the run after its
    # folder exists (`'0.999' > 0`), at the first iteration for warmup_iter.
    train = (opt.get('train') or {}) if opt['is_train'] else {}
    for key in ('warmup_iter', 'ema_decay'):
        value = train.get(key)
        if key in train and (isinstance(value, bool) or not isinstance(value, (int, float))):  # ~ included
            yield f'train.{key}: {value!r} is not a number (BasicSR compares it with numbers); write it without quotes.'


def _devices(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    count, num_gpu = torch.cuda.device_count(), opt['num_gpu']  # under a launcher, more is fine (as BasicSR)
    if isinstance(num_gpu, bool) or not isinstance(num_gpu, int) or num_gpu < 0 or num_gpu > count and not opt['dist']:
        yield (f'num_gpu: {num_gpu!r}, but this machine has {count} usable CUDA GPU(s); set num_gpu: auto (the GPUs '
               'that are there, 0 without CUDA) or num_gpu: 0 to run on the CPU.')


def _prefetch(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    train = opt['datasets'].get('train') or {}
    mode = train.get('prefetch_mode')
    if opt['is_train'] and mode not in (None, 'cpu', 'cuda'):
        yield f'datasets.train.prefetch_mode: {mode!r} is not a prefetch mode; use ~ (plain loader), cpu or cuda.'
    elif opt['is_train'] and mode == 'cuda' and (opt['num_gpu'] == 0 or not torch.cuda.is_available()):
        yield 'datasets.train.prefetch_mode: cuda needs a CUDA GPU and num_gpu > 0; use cpu or ~.'
    elif opt['is_train'] and mode == 'cuda' and train.get('pin_memory') is not True:
        yield 'datasets.train.prefetch_mode: cuda needs pin_memory: true (BasicSR stops otherwise); add it.'


def _phases(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    for phase in opt['datasets']:
        if phase != 'train' and str(phase).split('_')[0] not in ('val', 'test'):
            yield f'datasets.{phase}: phase names must be "train", "val*" or "test*" (BasicSR stops otherwise).'
    if opt['is_train'] and 'train' not in opt['datasets']:
        yield 'datasets.train: missing; training needs a train dataset.'


def _fp16_training(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    from restormer_arch.models.image_clean_model import FP16_TRAINING
    from restormer_arch.perf import resolve_precision

    precision = (opt.get('performance') or {}).get('precision')
    if opt['is_train'] and built.image_clean_model and precision and resolve_precision(precision) == torch.float16:
        yield FP16_TRAINING
    decay = (opt.get('train') or {}).get('ema_decay', 0) if opt['is_train'] and built.image_clean_model else 0
    if not 0 <= float(decay) < 1:
        yield f'train.ema_decay: {decay!r} must be in [0, 1) (e.g. 0.999; 0 turns the EMA off), or the EMA diverges.'


def _pipeline_keys(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    # Keys BasicSR's pipelines read without a default, after the run folder exists.
    evaluates = opt.get('val') is not None and any(p != 'train' for p in opt['datasets'])
    keys = (['logger.print_freq', 'logger.save_checkpoint_freq', 'logger.use_tb_logger']
            + ['val.val_freq', 'val.save_img'] * evaluates if opt['is_train'] else ['val.save_img'])
    for dotted in keys:
        section, key = dotted.split('.')
        value = opt[section].get(key) if isinstance(opt.get(section), dict) else None
        if not isinstance(opt.get(section), dict) or key not in opt[section]:
            yield f'{dotted}: missing (BasicSR reads it and would stop after making the run folder); add it.'
        elif key.endswith('_freq') and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1 and value == int(value)):
            yield f'{dotted}: expected a positive whole number of iterations, got {value!r}.'


def _loggers(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    logger = opt.get('logger') if opt['is_train'] and isinstance(opt.get('logger'), dict) else {}
    wandb = logger.get('wandb') if isinstance(logger.get('wandb'), dict) else {}
    if wandb.get('project') is not None and importlib.util.find_spec('wandb') is None:
        yield ('logger.wandb.project: Weights & Biases logging needs the wandb package, which is not installed; '
               'pip install wandb (and wandb login), or set project: ~.')
    elif wandb.get('project') is not None and logger.get('use_tb_logger') is not True:
        yield ('logger.wandb.project: BasicSR logs to Weights & Biases through TensorBoard and stops unless '
               'logger.use_tb_logger is true; set it to true, or set project: ~.')
    if logger.get('use_tb_logger') and 'debug' not in opt['name'] and importlib.util.find_spec('tensorboard') is None:
        yield ('logger.use_tb_logger: TensorBoard logging needs the tensorboard package, which is not installed; pip '
               'install tensorboard, or set use_tb_logger: false.')


def _resume_state(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    state = opt['path'].get('resume_state')
    if opt['is_train'] and state and not os.path.isfile(state):
        what = 'is a folder, not a file' if os.path.isdir(state) else 'does not exist'
        yield (f'path.resume_state: {state} {what}; point it at an existing '
               'experiments/<name>/training_states/<iter>.state, or use --auto_resume.')
    elif opt['is_train'] and state and str(state).endswith(('.pth', '.pt')):
        yield (f'path.resume_state: {state} is a network checkpoint, not a training state; resume from a .state file, '
               'or set path.pretrain_network_g to it to start a new run from these weights.')


def _schedule(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    scheduler = (opt.get('train') or {}).get('scheduler') or {}
    periods, total = scheduler.get('periods'), built.total_iter
    if total and isinstance(periods, (list, tuple)) and sum(periods) < total:
        yield (f'train.scheduler.periods sums to {sum(periods)} but train.total_iter is {total}; make them equal (or '
               f'longer: the last cycle then stops part-way), or iterations {sum(periods) + 1}-{total} would stay at '
               'the last cycle\'s final rate.')


def _schedule_notes(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    scheduler, total = (opt.get('train') or {}).get('scheduler') or {}, built.total_iter
    periods = scheduler.get('periods')
    if total and isinstance(periods, (list, tuple)) and sum(periods) > total:
        yield (f'train.scheduler.periods sums to {sum(periods)}, more than train.total_iter {total}: the last cycle '
               'stops part-way (fine if that is what you want).')
    written = (opt.get('train') or {}).get('total_iter')
    if total and isinstance(written, float) and written != total:
        yield f'train.total_iter: you wrote {written!r}, BasicSR trains int() of it: {total} iterations.'
    warmup = (opt.get('train') or {}).get('warmup_iter', -1)
    if total and isinstance(warmup, int) and warmup >= total:
        yield (f'train.warmup_iter: {warmup} is not below train.total_iter {total}: the whole run warms up and never '
               'reaches train.optim_g.lr.')
    lr = ((opt.get('train') or {}).get('optim_g') or {}).get('lr')
    if built.lrs and isinstance(lr, (int, float)) and max(built.lrs) > lr * (1 + 1e-6):
        peak = max(built.lrs)
        key = 'eta_mins' if 'eta_mins' in scheduler else 'eta_min' if 'eta_min' in scheduler else 'type'
        yield (f'train.scheduler.{key}: the learning rate rises to {peak:g} (iteration {built.lrs.index(peak) + 1}), '
               f'above train.optim_g.lr = {lr:g}: a floor above the base rate makes the annealing raise it; lower the '
               'floor, or raise lr.')


def _progressive(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    train_set = opt['datasets'].get('train') or {}
    iters, sizes, gt_size = train_set.get('iters'), train_set.get('gt_sizes'), train_set.get('gt_size')
    if not (built.image_clean_model and opt['is_train'] and iters and sizes):
        return
    if built.total_iter and sum(iters) < built.total_iter:
        yield (f'datasets.train.iters sums to {sum(iters)} but train.total_iter is {built.total_iter}; make them equal '
               f'(iterations {sum(iters) + 1}-{built.total_iter} would all stay in the last stage).')
    if isinstance(gt_size, int) and max(sizes) > gt_size:
        yield (f'datasets.train.gt_sizes: {max(sizes)} exceeds gt_size {gt_size} (the loader\'s patch, from which '
               'every stage crops: the stage would train on smaller patches than asked); raise gt_size or lower it.')


def _progressive_notes(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    train_set = opt['datasets'].get('train') or {}
    batches, batch = train_set.get('mini_batch_sizes'), train_set.get('batch_size_per_gpu')
    if built.image_clean_model and opt['is_train'] and batches and isinstance(batch, int) and 0 < batch < max(batches):
        yield (f'datasets.train.mini_batch_sizes: {max(batches)} exceeds batch_size_per_gpu {batch}; as in the '
               f'official runner, those stages train on the loader\'s {batch} patches.')


def _meta_forward(net: torch.nn.Module, shape: Tuple[int, ...]) -> Any:
    """The output shape of ``net`` for an input ``shape``, computed on the meta device (``None`` if it cannot be)."""
    try:
        with torch.no_grad():
            out = net.to('meta')(torch.empty(shape, device='meta'))
    except NotImplementedError:
        return None
    except (RuntimeError, ValueError) as err:
        return None if 'meta' in str(err).lower() else err
    out = out[-1] if isinstance(out, (list, tuple)) else out
    return tuple(out.shape[1:]) if torch.is_tensor(out) else None


def _patch_sizes(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    from restormer_arch.archs.restormer_arch import SIZE_MULTIPLE, Restormer

    train_set = opt['datasets'].get('train') or {}
    net = built.networks.get('network_g')
    channels = next((m.in_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)), None) if net else None
    if not (built.image_clean_model and opt['is_train'] and channels):
        return
    sizes: Dict[int, str] = {}
    for key in ('gt_size', 'gt_sizes'):
        value = train_set.get(key)
        for size in value if isinstance(value, list) else [value]:
            if isinstance(size, int):
                sizes.setdefault(size, key)
    for size, key in sizes.items():
        if isinstance(net, Restormer):  # it pads any size: a patch that is not a multiple trains on padding
            problem = f'not a multiple of {SIZE_MULTIPLE}' if size % SIZE_MULTIPLE else None
        else:
            out = _meta_forward(net, (1, channels, size, size))
            problem = ' '.join(str(out).split()) if isinstance(out, Exception) else None
        if problem:
            yield (f'datasets.train.{key}: {size} does not fit network_g ({type(net).__name__}): {problem}; e.g. '
                   f'{max(size // SIZE_MULTIPLE, 1) * SIZE_MULTIPLE}.')
            return


def _shape_mismatch(opt: Dict[str, Any], net_name: str, lq: tuple, out: tuple, gt: tuple) -> str:
    """What differs between a network's output and the target (channels, scale), and which options to check."""
    problems = []
    if out[0] != gt[0]:
        problems.append(f'it outputs {out[0]} channel(s) but the targets have {gt[0]} (check the network\'s output '
                        'channels, e.g. out_channels / num_out_ch, against the dataset)')
    if out[1:] != gt[1:]:
        problems.append(f'it scales images by x{out[-1] / lq[-1]:g} but the data needs x{gt[-1] / lq[-1]:g} (scale: '
                        f'{opt.get("scale", 1)}; check network_g\'s scale/upscale argument and the top-level scale)')
    return (f'network_g ({net_name}) turns a {"x".join(map(str, lq))} input into {"x".join(map(str, out))}, but the '
            f'target is {"x".join(map(str, gt))}: {"; ".join(problems)}. Training would fail in the loss.')


def _dry_forward(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    net = built.networks.get('network_g')
    for phase, sample in built.samples.items() if net is not None else ():
        if not (isinstance(sample, dict) and torch.is_tensor(sample.get('lq')) and torch.is_tensor(sample.get('gt'))):
            continue  # e.g. Real-ESRGAN data, whose lq is made inside the model
        lq, gt = tuple(sample['lq'].shape), tuple(sample['gt'].shape)
        if phase != 'train':  # evaluation images may be any size (the model pads them): a 16x16 crop's shape
            lq, gt = (lq[0], 16, 16), (gt[0], 16 * gt[1] // lq[1], 16 * gt[2] // lq[2])
        out = _meta_forward(net, (1, *lq))
        if isinstance(out, Exception):
            yield (f'network_g ({type(net).__name__}) fails on datasets.{phase}\'s first sample, '
                   f'{"x".join(map(str, lq))} (channels x height x width): {" ".join(str(out).split())}')
        elif out is not None and out != gt:
            yield f'network_g and datasets.{phase}: ' + _shape_mismatch(opt, type(net).__name__, lq, out, gt)


def _image_dtype(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    from restormer_arch.models.results_table import IMAGE_DTYPES, UINT8_ONLY_METRICS

    val = opt.get('val') if built.image_clean_model and isinstance(opt.get('val'), dict) else {}
    dtype = val.get('image_dtype', 'uint8')
    if dtype not in IMAGE_DTYPES:
        yield f'val.image_dtype: {dtype!r} is not one of {", ".join(IMAGE_DTYPES)}.'
    for name, metric in (val.get('metrics') or {}).items():
        if dtype != 'uint8' and (metric or {}).get('type') in UINT8_ONLY_METRICS:
            yield (f'val.metrics.{name}: BasicSR\'s {metric["type"]} assumes uint8 images (peak 255) but '
                   f'val.image_dtype is {dtype}; use calculate_psnr_rgb_matlab or remove image_dtype.')
        elif dtype == 'float32' and (metric or {}).get('data_range') is None:
            yield f'val.metrics.{name}: val.image_dtype float32 passes images in [0, 1]; add "data_range: 1".'
    names = [d.get('name') for d in opt['datasets'].values()]
    for row in val.get('combined_rows') or []:
        unknown = [d for d in row['datasets'] if d not in names]
        if unknown:
            yield (f'val.combined_rows ({row["name"]}): {", ".join(map(str, unknown))} is not the name of a dataset '
                   f'of this file (names: {", ".join(map(str, names))}), so the row would never be written.')


def _evaluation_notes(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    eval_sets = [p for p in opt['datasets'] if p != 'train']
    for phase in [p for p in opt['datasets'] if p.split('_')[0] == 'train'] if not opt['is_train'] else ():
        yield (f'datasets.{phase}: basicsr test scores a train set too, on random augmented patches (gt_size), not '
               'on its images; remove it from the test file.')
    if not opt['is_train'] and not opt['path'].get('pretrain_network_g'):
        yield ('path.pretrain_network_g: missing, so basicsr test evaluates a network with random weights; point it '
               'at the checkpoint to test (e.g. experiments/<name>/models/net_g_latest.pth).')
    elif opt['is_train'] and opt.get('val') is None and eval_sets:
        yield f'datasets.{eval_sets[0]}: never used, because there is no val section (BasicSR only validates with one).'
    elif opt['is_train'] and opt.get('val') is not None and not eval_sets:
        yield 'val: given, but datasets has no val entry, so nothing will be validated.'


def _losses(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    train = (opt.get('train') or {}) if opt['is_train'] else {}
    for key, loss in train.items():
        weight = loss.get('loss_weight') if isinstance(loss, dict) and str(key).endswith('_opt') else None
        if isinstance(weight, (int, float)) and weight < 0:
            yield f'train.{key}.loss_weight: {weight} is negative: training maximises this loss.'
        elif isinstance(weight, (int, float)) and weight == 0:
            yield f'train.{key}.loss_weight: 0, so this loss adds nothing (alone, it trains nothing).'
    if opt['is_train'] and built.image_clean_model and not train.get('pixel_opt'):
        yield ('train.pixel_opt: missing, so ImageCleanModel trains with L1Loss (loss_weight 1, reduction mean); '
               'write it to choose (the official runner refuses a missing pixel_opt).')


def _false_as_text(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    # 'false' / "no" in quotes is a non-empty string, which every `if option:` reads as true: the setting silently
    # does the opposite of what was written.
    def walk(value: Any, key: str) -> Iterable[str]:
        if isinstance(value, dict):
            for sub, item in value.items():
                yield from walk(item, f'{key}.{sub}' if key else str(sub))
        elif isinstance(value, str) and value.strip().lower() in ('false', 'no', 'off'):
            yield f'{key}: {value!r} is text, which reads as true; write false without quotes.'

    yield from walk(opt, '')


def _metrics_without_ground_truth(opt: Dict[str, Any], built: Built) -> Iterable[str]:
    # BasicSR's models keep the last target on the model: the first image of a set without one is scored against the
    # last training patch (silently when sizes match), the next one stops in calculate_metric. ImageCleanModel skips
    # the metrics of such a set with a note.
    metrics = (opt.get('val') or {}).get('metrics')
    for phase, sample in built.samples.items():
        if phase != 'train' and metrics and not built.image_clean_model and isinstance(sample, dict) \
                and 'gt' not in sample:
            yield (f'datasets.{phase}: its images have no ground truth ({opt["datasets"][phase].get("type")}), but '
                   f'val.metrics is set: {opt.get("model_type")} would score them against the last training patch '
                   'or stop; remove val.metrics, give the set ground truth, or use model_type: ImageCleanModel (it '
                   'skips them).')


# The table: each rule yields one-line messages naming the keys it reads (docs/options.md lists what each catches).
# An error stops the command before anything is written (the first one is reported); a warning is printed before the
# run, which then goes on as BasicSR runs it.
RULES: Dict[str, Tuple[Callable[[Dict[str, Any], Built], Iterable[str]], ...]] = {
    'error': (_name, _raw_numbers, _devices, _phases, _prefetch, _fp16_training, _pipeline_keys, _loggers,
              _resume_state, _progressive, _schedule, _dry_forward, _patch_sizes, _image_dtype, _false_as_text,
              _metrics_without_ground_truth),
    'warning': (_schedule_notes, _progressive_notes, _losses, _evaluation_notes),
}


def evaluate(opt: Dict[str, Any], built: Built) -> Tuple[List[str], List[str]]:
    """Apply :data:`RULES`: ``(errors, warnings)``, each a list of one-line messages naming the keys."""
    errors, warnings = ([note for rule in RULES[level] for note in rule(opt, built)] for level in ('error', 'warning'))
    return errors, warnings
