"""The ``train`` and ``val`` options :class:`ImageCleanModel` reads, and their checks.

:mod:`restormer_arch.options` walks an option file and calls these for a file whose ``model_type`` is
``ImageCleanModel`` (or a subclass): the sections then belong to this project, so a misspelled key is an error (BasicSR
would train with the default, silently). Checks that hold for every model (optimizer, losses, total_iter) stay in the
walker.
"""
from typing import Any, Dict, List, Optional

import torch

from restormer_arch.models.progressive import Mixup, ProgressiveSchedule
from restormer_arch.option_checks import check_keys, lookup
from restormer_arch.perf import resolve_precision

FP16_TRAINING = ('performance.precision: fp16 is for inference only (training would need loss scaling, which '
                 'interacts with the non-finite-step guard); train in bf16 or fp32, and use fp16 for basicsr test.')

# Models whose train/val sections this module judges (and their subclasses).
PLUGIN_MODELS = ('ImageCleanModel',)

# ``train`` keys ImageCleanModel reads, besides any ``<name>_opt`` loss and ``optim_<net>`` optimizer.
TRAIN_KEYS = ('total_iter', 'warmup_iter', 'use_grad_clip', 'grad_clip_norm', 'optim_g', 'scheduler', 'mixing_augs',
              'ema_decay', 'max_nonfinite_steps', 'save_on_signal')
# ``val`` keys ImageCleanModel (validation, tiling, per-image tables) and BasicSR's train/test pipelines read.
VAL_KEYS = ('val_freq', 'save_img', 'metrics', 'window_size', 'log_input_metrics', 'suffix', 'pbar',
            'metrics_table', 'combined_rows', 'image_dtype', 'tile', 'tile_overlap', 'tile_blend')


def _model_class(opt: Dict[str, Any]) -> Optional[type]:
    cls = lookup('model', opt.get('model_type'))
    return cls if isinstance(cls, type) else None


def is_image_clean_model(opt: Dict[str, Any]) -> bool:
    """Whether ``model_type`` names ImageCleanModel or a subclass, whose ``train``/``val`` sections this module judges.

    Args:
        opt: The whole option dict.

    Returns:
        True for ImageCleanModel (or a subclass), False for any other or an unknown model.
    """
    cls = _model_class(opt)
    return cls is not None and any(base.__name__ in PLUGIN_MODELS for base in cls.__mro__)


def _is_loss_or_optimizer(key: str) -> bool:
    return key.endswith('_opt') or key.startswith('optim_')


def check_train_options(opt: Dict[str, Any], total_iter: Optional[int]) -> List[str]:
    """Problems with ImageCleanModel's own ``train`` keys and the progressive keys of ``datasets.train``.

    Args:
        opt: The whole option dict (``train`` is a mapping).
        total_iter: ``train.total_iter`` when it is valid, else ``None``.

    Returns:
        One message per problem (empty when fine).
    """
    train_opt = opt['train']
    problems: List[str] = []
    check_keys(train_opt, TRAIN_KEYS, 'train', problems, also_known=_is_loss_or_optimizer, strict=True)
    for key in ('use_grad_clip', 'save_on_signal'):
        if key in train_opt and not isinstance(train_opt[key], bool):
            problems.append(f'train.{key}: expected true or false, got {train_opt[key]!r}.')
    for key in ('grad_clip_norm', 'ema_decay'):
        value = train_opt.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            problems.append(f'train.{key}: expected a non-negative number, got {value!r}.')
    decay = train_opt.get('ema_decay')
    if isinstance(decay, (int, float)) and not isinstance(decay, bool) and decay >= 1:
        problems.append(f'train.ema_decay: {decay!r} must be below 1 (e.g. 0.999; 0 turns the EMA off).')
    problems.extend(Mixup.check_options(train_opt.get('mixing_augs')))
    if _precision(opt.get('performance')) == torch.float16:
        problems.append(FP16_TRAINING)
    train_set = (opt.get('datasets') or {}).get('train')
    if isinstance(train_set, dict):
        problems.extend(ProgressiveSchedule.check_options(train_set, total_iter))
    return problems


def _precision(performance: Any) -> Optional[torch.dtype]:
    """The dtype of ``performance.precision``, or None when it is missing or invalid (perf.check_options reports it)."""
    if not isinstance(performance, dict):
        return None
    try:
        return resolve_precision(performance.get('precision'))
    except (TypeError, ValueError):
        return None


def check_val_options(opt: Dict[str, Any]) -> List[str]:
    """Problems with ImageCleanModel's ``val`` keys: names, image type and tiling, per-image tables.

    Args:
        opt: The whole option dict (``val`` is a mapping).

    Returns:
        One message per problem (empty when fine).
    """
    from restormer_arch.models.results_table import check_combined_rows
    from restormer_arch.models.val_utils import check_val_options as check_image_options

    val_opt = opt['val']
    problems: List[str] = []
    check_keys(val_opt, VAL_KEYS, 'val', problems, strict=True)
    problems.extend(check_image_options(val_opt))
    names = [d.get('name') for d in (opt.get('datasets') or {}).values() if isinstance(d, dict)]
    problems.extend(check_combined_rows(val_opt.get('combined_rows'), dataset_names=names))
    return problems
