"""Restormer configurations: the released checkpoints and tasks, checking constructor arguments, reading them from
weights.

* :data:`RELEASES` - the one table of the released checkpoints: task, constructor arguments, description, test file;
  :data:`TASK_PRESETS` (the constructor arguments by task; the rest are defaults) is read from it.
* :func:`check_arch_options` - type/value checks of user-given constructor arguments (JSON, YAML) with errors that
  name the key, before the constructor fails deep inside with a ``TypeError``.
* :func:`arch_options_from_state_dict` - every hyper-parameter that shapes the weights, read from a state dict's key
  names and tensor shapes, so a checkpoint needs no ``--task`` / ``--arch-options`` to be loaded.

What a state dict tells, key by key: the table in docs/restore.md ("The network comes from the checkpoint").
"""
import inspect
import math
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

from torch import Tensor

from ..errors import UserError
from .restormer_arch import LAYER_NORM_TYPES, MEMORY_MODES, Restormer

__all__ = ['RELEASES', 'Release', 'TASK_PRESETS', 'TASK_KEYS', 'ArchOptionsError', 'default_arch_options',
           'check_arch_options', 'task_options', 'matching_tasks', 'arch_options_from_state_dict']


@dataclass(frozen=True)
class Release:
    """One checkpoint of the official v1.0 release (:mod:`restormer_arch.weights` fetches it by its name).

    Attributes:
        task: Its task, the ``--task`` name that fixes its configuration.
        arch_options: ``Restormer`` constructor arguments of the task (everything else is the default: dim 48, 4/6/6/8
            blocks, 4 refinement blocks, heads 1/2/4/8, ffn_expansion_factor 2.66, no bias).
        about: What the model restores (for listings).
        test_options: The option file under ``options/test/`` that evaluates it.
    """
    task: str
    arch_options: Dict[str, object]
    about: str
    test_options: str


_BIAS_FREE = {'LayerNorm_type': 'BiasFree'}
# The release file stems, each with its task and configuration.
RELEASES: Dict[str, Release] = {
    'deraining': Release('deraining', {}, 'deraining', 'Deraining.yml'),
    'motion_deblurring': Release('motion_deblurring', {}, 'motion deblurring', 'MotionDeblurring_GoPro_HIDE.yml'),
    'single_image_defocus_deblurring': Release('defocus_deblurring', {}, 'defocus deblurring, single image',
                                               'DefocusDeblurring_Single.yml'),
    'dual_pixel_defocus_deblurring': Release('dual_pixel_defocus_deblurring',
                                             {'inp_channels': 6, 'dual_pixel_task': True},
                                             'defocus deblurring, dual pixel (6 channels in)',
                                             'DefocusDeblurring_DualPixel.yml'),
    'real_denoising': Release('real_denoising', _BIAS_FREE, 'real denoising (SIDD)', 'RealDenoising_SIDD.yml'),
    **{f'gaussian_{kind}_denoising_{level}': Release(f'gaussian_{kind}_denoising', arch, f'{kind} Gaussian '
                                                     f'denoising, {level}',
                                                     f'GaussianDenoising_{kind.title()}_{level.title()}.yml')
       for kind, arch in (('color', _BIAS_FREE), ('gray', {'inp_channels': 1, 'out_channels': 1, **_BIAS_FREE}))
       for level in ('blind', 'sigma15', 'sigma25', 'sigma50')},
}
TASK_PRESETS: Dict[str, dict] = {release.task: release.arch_options for release in RELEASES.values()}
# What tells the tasks apart (the network size does not: the same task can be trained at any size).
TASK_KEYS = ('inp_channels', 'out_channels', 'LayerNorm_type', 'dual_pixel_task')

# The text arguments' choices (the constructor's own tables).
_CHOICES = {'LayerNorm_type': LAYER_NORM_TYPES, 'memory': MEMORY_MODES}


class ArchOptionsError(UserError, ValueError):
    """Constructor arguments that cannot build a Restormer, or a state dict they cannot be read from."""


def default_arch_options() -> dict:
    """Restormer's constructor defaults (lists for the per-level sequences)."""
    params = inspect.signature(Restormer.__init__).parameters
    return {name: list(p.default) if isinstance(p.default, tuple) else p.default
            for name, p in params.items() if name != 'self'}


def task_options(task: str) -> dict:
    """The full constructor arguments of a released task's network.

    Args:
        task: A key of :data:`TASK_PRESETS`.

    Returns:
        Defaults overridden by the task's preset.

    Raises:
        ArchOptionsError: Unknown task.
    """
    if task not in TASK_PRESETS:
        raise ArchOptionsError(f'unknown task {task!r}; choose one of: {", ".join(TASK_PRESETS)}.')
    return {**default_arch_options(), **TASK_PRESETS[task]}


def matching_tasks(options: Mapping) -> List[str]:
    """The tasks whose preset agrees with ``options`` on :data:`TASK_KEYS` (channels, norm type, dual-pixel)."""
    full = {**default_arch_options(), **options}
    return [task for task in TASK_PRESETS if all(task_options(task)[k] == full[k] for k in TASK_KEYS)]


def check_arch_options(options: Mapping, what: str = 'arch options') -> dict:
    """Check the names, types and ranges of Restormer constructor arguments against the constructor's defaults.

    Each value must have its default's type (an integer, never a boolean, where the default is one; any number for
    ``ffn_expansion_factor``; four of them for the per-level lists), numbers must be positive (block counts may be 0)
    and text one of the constructor's choices.

    Args:
        options: Some of Restormer's constructor arguments (from JSON or YAML).
        what: How the user gave them, for messages (e.g. ``'--arch-options'``).

    Returns:
        A copy with per-level sequences as lists and ``ffn_expansion_factor`` as a float.

    Raises:
        ArchOptionsError: Naming the first wrong key and what it needs.
    """
    defaults = default_arch_options()
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ArchOptionsError(f'{what}: unknown Restormer argument(s) {unknown}; valid: {list(defaults)}.')
    checked = dict(options)
    for key, value in options.items():
        problem = _problem(key, value, defaults[key])
        if problem:
            raise ArchOptionsError(f'{what}: {key} must be {problem}, e.g. {defaults[key]!r}; got {value!r} '
                                   f'({type(value).__name__}).')
        if isinstance(defaults[key], (list, float)):  # per-level sequences as lists, the factor as a float
            checked[key] = list(value) if isinstance(value, (list, tuple)) else float(value)
    return checked


def _problem(key: str, value: object, default: object) -> Optional[str]:
    """What ``value`` must be for ``key``, whose Restormer default is ``default``; None when it is fine."""
    least = '>= 0' if 'blocks' in key else '> 0'  # a level may have no blocks, but not zero channels or heads
    if isinstance(default, list):
        ok = isinstance(value, (list, tuple)) and len(value) == 4 and not any(_problem(key, v, 1) for v in value)
        return None if ok else f'a list of 4 integers {least} (levels 1-3 and the latent level)'
    if isinstance(default, bool):
        return None if isinstance(value, bool) else 'true or false'
    if isinstance(default, str):
        return None if value in _CHOICES[key] else f'one of {list(_CHOICES[key])}'
    kinds = (int, float) if isinstance(default, float) else int
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    return None if ok and (value >= 0 if 'blocks' in key else value > 0) else (
        f'{"a number" if isinstance(default, float) else "an integer"} {least}')


def _block_count(state_dict: Mapping[str, Tensor], stage: str) -> int:
    indices = [int(m.group(1)) for k in state_dict for m in [re.match(rf'{stage}\.(\d+)\.', k)] if m]
    return max(indices) + 1 if indices else 0


def _read_ffn_factor(state_dict: Mapping[str, Tensor]) -> Optional[float]:
    """A factor that reproduces every level's hidden width, preferring the default 2.66, then the shortest decimal."""
    widths: Dict[int, int] = {}
    for key, weight in state_dict.items():
        if key.endswith('.ffn.project_out.weight') and weight.dim() == 4:
            channels, hidden = int(weight.shape[0]), int(weight.shape[1])
            if widths.setdefault(channels, hidden) != hidden:
                raise ArchOptionsError(f'{key}: hidden width {hidden}, but other {channels}-channel blocks have '
                                       f'{widths[channels]}; one ffn_expansion_factor cannot build this network.')
    if not widths:
        return None  # no transformer blocks at all: the factor shapes no weight
    low = max(h / c for c, h in widths.items())
    high = min((h + 1) / c for c, h in widths.items())
    # The default first, then the shortest decimals from `low` up (three per length: float rounding of the bounds).
    starts = [(d, math.floor(low / 10.0 ** -d)) for d in range(9)]
    candidates = [default_arch_options()['ffn_expansion_factor']] + [
        round(k * 10.0 ** -d, d) for d, start in starts for k in range(start, start + 3)]
    for candidate in candidates:
        if candidate > 0 and all(int(c * candidate) == h for c, h in widths.items()):  # GDFN's hidden width
            return float(candidate)
    shown = ', '.join(f'{c} channels -> {h}' for c, h in sorted(widths.items()))
    raise ArchOptionsError(f'the feed-forward hidden widths ({shown}) do not follow int(channels * factor) for any '
                           f'single ffn_expansion_factor (range tried: {low:.6f} to {high:.6f}).')


def arch_options_from_state_dict(state_dict: Mapping[str, Tensor]) -> dict:
    """Read every Restormer constructor argument that shapes the weights from a state dict (see the module docstring).

    Args:
        state_dict: A Restormer state dict, wrapper prefixes already removed
            (:func:`restormer_arch.checkpoint.load_state_dict` does that).

    Returns:
        Complete constructor arguments (``use_checkpoint`` excluded): building ``Restormer(**options)`` gives a network
        whose ``state_dict`` has the same keys and shapes (the caller still loads strictly, which checks that).
        Heads of a level without blocks and the factor of a network without blocks do not shape any weight; they
        keep their defaults (a head count of 1 where the default does not divide the width).

    Raises:
        ArchOptionsError: Not a Restormer state dict, or feed-forward widths no single factor reproduces.
    """
    embed = state_dict.get('patch_embed.proj.weight')
    if embed is None or embed.dim() != 4:
        raise ArchOptionsError('this is not a Restormer state dict: it has no patch_embed.proj.weight (first keys: '
                               f'{sorted(state_dict)[:5]}).')
    dim, heads, defaults = int(embed.shape[0]), [], default_arch_options()
    # The stages of each level, the first of which counts its blocks.
    levels = (('encoder_level1', 'decoder_level1', 'refinement'), ('encoder_level2', 'decoder_level2'),
              ('encoder_level3', 'decoder_level3'), ('latent',))
    for level, stages in enumerate(levels):
        keys = [f'{stage}.0.attn.temperature' for stage in stages]
        temperature = next((state_dict[k] for k in keys if k in state_dict), None)
        default = defaults['heads'][level]
        heads.append(int(temperature.shape[0]) if temperature is not None
                     else default if (dim * 2**level) % default == 0 else 1)
    factor = _read_ffn_factor(state_dict)
    output = state_dict.get('output.weight')
    any_norm = any(k.endswith('norm1.body.weight') for k in state_dict)
    with_bias = any(k.endswith('norm1.body.bias') for k in state_dict)
    return {'inp_channels': int(embed.shape[1]),  # the constructor's order
            'out_channels': int(output.shape[0]) if output is not None else int(embed.shape[1]),
            'dim': dim,
            'num_blocks': [_block_count(state_dict, stages[0]) for stages in levels],
            'num_refinement_blocks': _block_count(state_dict, 'refinement'),
            'heads': heads,
            'ffn_expansion_factor': defaults['ffn_expansion_factor'] if factor is None else factor,
            'bias': 'output.bias' in state_dict or any(k.endswith('attn.qkv.bias') for k in state_dict),
            'LayerNorm_type': 'WithBias' if with_bias or not any_norm else 'BiasFree',
            'dual_pixel_task': 'skip_conv.weight' in state_dict}
