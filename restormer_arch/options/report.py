"""What you wrote is what runs: warnings for every value BasicSR changes or ignores, and "did you mean" for keys that
nothing reads. Never an error: a key this project does not know may be read by BasicSR or another plugin."""
import difflib
import os
from typing import Any, Dict, Iterable, Iterator, List, Sequence, Tuple

from restormer_arch.options.build import Built
from restormer_arch.perf import COMPILE_KEYS, OPTION_KEYS

# Keys read by BasicSR's pipelines and by ImageCleanModel, per section (networks, losses, optimizers, schedulers and
# metrics are judged by their constructors; a dataset's keys by what it read while it was built).
TOP_KEYS = ('name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'path', 'train', 'val', 'logger',
            'dist_params', 'find_unused_parameters', 'performance', 'is_train', 'dist', 'rank', 'world_size',
            'auto_resume', 'root_path')
LOGGER_KEYS = ('print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb')
PATH_KEYS = ('resume_state', 'experiments_root', 'models', 'training_states', 'log', 'visualization', 'results_root')
PATH_PREFIXES = ('pretrain_network_', 'strict_load_', 'param_key_')
TRAIN_KEYS = ('total_iter', 'warmup_iter', 'use_grad_clip', 'grad_clip_norm', 'scheduler', 'mixing_augs', 'ema_decay',
              'max_nonfinite_steps', 'save_on_signal')
VAL_KEYS = ('val_freq', 'save_img', 'metrics', 'suffix', 'pbar')
IMAGE_CLEAN_VAL_KEYS = ('window_size', 'log_input_metrics', 'metrics_table', 'combined_rows', 'image_dtype', 'tile',
                        'tile_overlap', 'tile_blend')
MIXUP_KEYS = ('mixup', 'mixup_beta', 'use_identity')
# Dataset keys read by BasicSR's loaders and pipelines, and by ImageCleanModel (progressive training).
LOADER_KEYS = ('name', 'type', 'phase', 'scale', 'batch_size_per_gpu', 'num_worker_per_gpu', 'use_shuffle',
               'dataset_enlarge_ratio', 'prefetch_mode', 'pin_memory', 'persistent_workers', 'num_prefetch_queue',
               'iters', 'mini_batch_sizes', 'gt_sizes')
# Keys of BasicSR's or other projects' files that mean something else here: the hint names ours.
FOREIGN_KEYS = {'use_hflip': 'geometric_augs', 'use_rot': 'geometric_augs', 'use_flip': 'geometric_augs',
                'meta_info': 'meta_info_file', 'gpu_ids': 'num_gpu', 'niter': 'total_iter',
                'batch_size': 'batch_size_per_gpu'}


def _leaves(section: Any, prefix: str = '') -> Iterator[Tuple[str, Any]]:
    for key, value in section.items():
        dotted = f'{prefix}{key}'
        if isinstance(value, dict) and value:
            yield from _leaves(value, dotted + '.')
        else:
            yield dotted, value


def _get(section: Any, dotted: str) -> Any:
    for key in dotted.split('.'):
        if not isinstance(section, dict) or key not in section:
            return '<not used>'
        section = section[key]
    return section


def written_vs_used(written: Dict[str, Any], used: Dict[str, Any], force_yml: Sequence[str]) -> List[str]:
    """One warning per value of the file that BasicSR's ``parse_options`` replaced (``--force_yml`` keys excepted).

    Args:
        written: The option file as written.
        used: The options BasicSR resolved.
        force_yml: The ``--force_yml`` entries (the user asked for those changes).

    Returns:
        ``"<key>: you wrote <value>, BasicSR uses <value> (...)"`` messages.
    """
    forced = {entry.split('=')[0].strip().replace(':', '.') for entry in force_yml}
    notes = []
    for key, value in _leaves(written):
        now = _get(used, key)
        unchanged = now == value or (isinstance(value, str) and os.path.expanduser(value) == now)
        if unchanged or key in forced or (key == 'num_gpu' and value == 'auto'):
            continue
        why = ('a name containing "debug" switches on BasicSR\'s debug settings' if 'debug' in str(used.get('name'))
               and key in ('val.val_freq', 'logger.print_freq', 'logger.save_checkpoint_freq')
               else 'BasicSR\'s parse_options sets it')
        notes.append(f'{key}: you wrote {value!r}, BasicSR uses {now!r} ({why}).')
    return notes


def _unknown(section: Any, known: Iterable[str], where: str) -> Iterator[str]:
    known = list(known)
    for key in section if isinstance(section, dict) else ():
        constructed = str(key).startswith(('network_', 'optim_')) or str(key).endswith('_opt') and where == 'train'
        # An unread key set to nothing (`dataroot_lq: none` in the official denoising files) loses nothing.
        unset = section[key] is None or str(section[key]).lower() == 'none'
        if key in known or constructed or unset or (where == 'path' and str(key).startswith(PATH_PREFIXES)):
            continue
        close = [FOREIGN_KEYS[key]] if key in FOREIGN_KEYS else difflib.get_close_matches(
            str(key), known, n=1, cutoff=0.6)
        hint = f'; did you mean {close[0]}?' if close else ''
        yield f'{where + "." if where else ""}{key}: not read by this run (BasicSR ignores unknown keys){hint}'


def unread_keys(opt: Dict[str, Any], built: Built) -> List[str]:
    """"Did you mean" warnings for keys that nothing of this run reads.

    Args:
        opt: The options BasicSR resolved (``--force_yml`` keys included).
        built: What :func:`.build.build` made (it recorded the keys each dataset read).

    Returns:
        One message per unread key.
    """
    notes = list(_unknown(opt, TOP_KEYS, ''))
    notes += _unknown(opt.get('logger'), LOGGER_KEYS, 'logger')
    notes += _unknown(opt.get('path'), PATH_KEYS, 'path')
    notes += _unknown(opt.get('performance'), OPTION_KEYS, 'performance')
    notes += _unknown((opt.get('performance') or {}).get('compile'), COMPILE_KEYS, 'performance.compile')
    if built.image_clean_model:  # other models read their own train and val keys
        notes += _unknown(opt.get('train'), TRAIN_KEYS, 'train')
        notes += _unknown((opt.get('train') or {}).get('mixing_augs'), MIXUP_KEYS, 'train.mixing_augs')
        notes += _unknown(opt.get('val'), VAL_KEYS + IMAGE_CLEAN_VAL_KEYS, 'val')
    for phase, read in built.dataset_reads.items():
        notes += _unknown(opt['datasets'][phase], set(read) | set(LOADER_KEYS), f'datasets.{phase}')
    return notes
