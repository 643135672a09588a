"""Restore images with a Restormer from Python: load a checkpoint, run it whole or in tiles, in any precision.

The library behind ``basicsr restore`` (:mod:`restormer_arch.inference`), for users' scripts (an example:
docs/restore.md, 'Python API'). Precision names come from :mod:`restormer_arch.perf`, tile rules from
:mod:`restormer_arch.tiling`, checkpoint layouts from :mod:`restormer_arch.checkpoint` and network configurations
from :mod:`restormer_arch.archs.presets`.
"""
import json
import logging
import math
import os
from typing import Mapping, Optional, Union

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from restormer_arch import checkpoint, perf, tiling
from restormer_arch.archs.presets import (
    TASK_KEYS,
    ArchOptionsError,
    arch_options_from_state_dict,
    check_arch_options,
    default_arch_options,
    matching_tasks,
    task_options,
)
from restormer_arch.archs.restormer_arch import Restormer
from restormer_arch.errors import UserError

__all__ = ['RestoreError', 'Restorer', 'load_restormer', 'check_settings']

# Peak working memory of a forward pass, measured on CPU for the default model (dim 48): about 2,300 float32 values
# per pixel (docs/performance.md, 'Memory'). It scales with the width; half precision roughly halves the activations.
BYTES_PER_PIXEL_DIM48 = 9.2e3


class RestoreError(UserError, ValueError):
    """A user-facing restore error (bad input, checkpoint or option); the message says how to fix it."""


def check_settings(device: Union[str, torch.device, None] = 'auto', precision: str = 'fp32',
                   tile: Optional[int] = None, overlap: int = 32, blend: str = 'cosine') -> torch.device:
    """Refuse run settings that cannot work here, before any work starts (``basicsr restore`` and :class:`Restorer`).

    Args:
        device: ``'auto'``/None (CUDA when available, else CPU), ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or a device.
        precision: A name of :data:`restormer_arch.perf.PRECISIONS`.
        tile: Tile size in pixels, or None for whole images.
        overlap: Overlap of neighbouring tiles in pixels.
        blend: Window of the overlaps (:data:`restormer_arch.tiling.BLEND_MODES`).

    Returns:
        The device to run on.

    Raises:
        RestoreError: CUDA asked for but not available, an unknown device or precision, fp16 on CPU, bf16 on a GPU
            without bfloat16, or tile settings that break :func:`restormer_arch.tiling.check_tile_options`.
    """
    if device is None or device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise RestoreError(f'--device {device}: {err}; use auto, cpu, cuda or cuda:N.') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RestoreError('--device cuda: CUDA is not available here; use --device cpu (or auto).')
    try:
        dtype = perf.resolve_precision(precision)
    except ValueError as err:
        raise RestoreError(f'--precision: {err}') from None
    if device.type == 'cpu' and dtype == torch.float16:
        raise RestoreError('--precision fp16 is not supported on CPU; use bf16 (or fp32).')
    if device.type == 'cuda' and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise RestoreError('--precision bf16: this GPU has no bfloat16 support; use fp16 or fp32.')
    if tile is not None:
        try:
            tiling.check_tile_options(tile, overlap, blend)
        except ValueError as err:
            raise RestoreError(f'--tile {tile} --tile-overlap {overlap}: {err}') from None
    return device


# ----------------------------------------------------------------------------------------------------------- network
def load_restormer(path: Optional[str], task: Optional[str] = None, arch_options: Optional[Mapping] = None,
                   param_key: Optional[str] = None, device: Union[str, torch.device, None] = 'cpu') -> Restormer:
    """Load a Restormer checkpoint into the network it was saved from, ready to run.

    Every hyper-parameter that shapes the weights is read from the state dict
    (:func:`~restormer_arch.archs.presets.arch_options_from_state_dict`), so released, ablation and custom
    checkpoints load without naming a configuration; ``task`` fixes the channels, norm type and dual-pixel, and
    ``arch_options`` win over both. The weights are loaded strictly.

    Args:
        path: Checkpoint file of any layout :mod:`restormer_arch.checkpoint` accepts (official, BasicSR, mmagic, bare),
            or None for a random network seeded with 0 (the same in every run; for tests and demos).
        task: Optional released task the checkpoint must be (an error names the task it is instead).
        arch_options: Optional constructor arguments to force (e.g. ``{'use_checkpoint': True}``); ones that
            contradict the weights are reported with the options that would load them.
        param_key: Checkpoint entry (``params_ema``, ``params`` ...); default: the first present.
        device: Where to put the network (``'auto'`` picks CUDA when available).

    Returns:
        The Restormer in eval mode on ``device``.

    Raises:
        RestoreError: Missing/unsafe/unreadable file, not a Restormer, or a mismatch with ``task``/``arch_options``.
    """
    try:
        state_dict, entry = checkpoint.load_state_dict(path, param_key, '--weights') if path is not None else (None, '')
        explicit = check_arch_options(arch_options or {}, '--arch-options')
        preset = {k: v for k, v in task_options(task).items() if k in TASK_KEYS} if task else {}
        base = arch_options_from_state_dict(state_dict) if state_dict is not None else default_arch_options()
    except (FileNotFoundError, checkpoint.CheckpointError, ArchOptionsError) as err:
        raise RestoreError(str(err)) from None
    if state_dict is None:
        torch.manual_seed(0)
    else:
        logging.getLogger('restormer_arch').info(f'{path}: loaded {entry}, {len(state_dict)} tensors')
    try:  # the weights first, then the task's channels/norm/dual-pixel, then what the user set explicitly
        net = Restormer(**{**base, **preset, **explicit}).eval()
    except ValueError as err:  # the constructor's own refusals (e.g. inp_channels != out_channels)
        raise RestoreError(str(err)) from None
    if state_dict is not None:
        report = checkpoint.compare_state_dicts(net.state_dict(), state_dict, sep='\n  ')[1]
        if report:
            raise RestoreError(_mismatch_message(report, base, path, task, arch_options))
        net.load_state_dict(state_dict, strict=True)
    return net.to(check_settings(device))


def _mismatch_message(report: str, own: dict, path: str, task: Optional[str], arch_options: Optional[Mapping]) -> str:
    # `own`: the configuration read from the checkpoint, which loads it unless the file holds more than a Restormer.
    if task:
        given = f'the --task {task} configuration' + (' with the --arch-options given' if arch_options else '')
    else:
        given = 'the configuration of the --arch-options given' if arch_options else 'its own configuration'
    message = f'{path} does not match {given}:\n  {report}'
    tasks = matching_tasks(own)
    if task and task not in tasks:  # tasks sharing the given task's configuration would be no help
        message += (f'\n  The checkpoint is a {" / ".join(tasks)} model: try --task {tasks[0]} (or leave out --task).'
                    if tasks else '\n  The checkpoint fits none of the released tasks: leave out --task.')
    message += ('\n  Leave out --task and --arch-options to use the configuration read from the checkpoint: '
                f'--arch-options \'{json.dumps(own)}\'')
    return message


# ---------------------------------------------------------------------------------------------------------- running
def _available_memory(device: torch.device) -> int:
    # Bytes free for activations: CUDA free device memory; CPU MemAvailable, or the physical memory where there is no
    # /proc/meminfo (macOS has no SC_AVPHYS_PAGES either).
    if device.type == 'cuda':
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open('/proc/meminfo', encoding='ascii') as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith('MemAvailable:'))
    except (OSError, StopIteration):
        return int(os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE'))


def _size(num_bytes: float) -> str:
    return f'{num_bytes / 2**30:.1f} GiB' if num_bytes >= 2**29 else f'{num_bytes / 2**20:.1f} MiB'


class Restorer:
    """Runs a Restormer on images: whole or in blended tiles, under autocast, with a memory check up front.

    Args:
        network: A Restormer (e.g. from :func:`load_restormer`); it is put in eval mode on ``device``.
        device: ``'auto'`` (default), ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or a torch device.
        precision: ``'fp32'`` (default), ``'bf16'`` (CPU/GPU) or ``'fp16'`` (GPU), see :mod:`restormer_arch.perf`.
        tile: Tile size in pixels (None: whole images).
        tile_overlap: Overlap of neighbouring tiles in pixels (below ``tile / 2``).
        blend: Window of the tile overlaps: ``'cosine'`` (default), ``'linear'`` or ``'box'``.
        max_memory: Memory budget in bytes for the size check (None: what is free on the device now).
        progress: Show a progress bar over the tiles.
        compile: ``torch.compile`` the network with freezing (:func:`restormer_arch.perf.compile_for_inference`).
            The first image (or tile) of each size compiles, 1-3 minutes for the full model on a CPU; tiles then keep
            one size (no fitted last tiles), so one compilation serves a whole folder of large images.

    Half precision: a Restormer is converted to bf16/fp16 end to end (:func:`restormer_arch.perf.prepare_inference`:
    weights and activations in half precision, attention norms, softmax and the global residual in fp32); any other
    network runs under autocast.

    Raises:
        RestoreError: Bad device, precision or tile settings.
    """

    def __init__(self, network: nn.Module, device: Union[str, torch.device, None] = 'auto', precision: str = 'fp32',
                 tile: Optional[int] = None, tile_overlap: int = 32, max_memory: Optional[int] = None,
                 progress: bool = False, blend: str = 'cosine', compile: bool = False) -> None:
        self.device = check_settings(device, precision, tile, tile_overlap, blend)
        self.precision, self.tile, self.tile_overlap, self.blend = precision, tile, tile_overlap, blend
        self.max_memory, self.progress, self.compiled = max_memory, progress, compile
        self.network = network.eval().to(self.device)
        if isinstance(network, Restormer):
            self.network = perf.prepare_inference(self.network, precision)
        if compile:
            self.network = perf.compile_for_inference(self.network)
        self.inp_channels = int(getattr(network, 'inp_channels', 3))
        self.out_channels = int(getattr(network, 'out_channels', self.inp_channels))
        # Two views only for a 6-channel input: a Restormer may keep skip_conv (dual_pixel_task) for one RGB image
        # (MST++'s 3 -> 31 channel network does).
        self.dual_pixel = bool(getattr(network, 'dual_pixel_task', False)) and self.inp_channels == 6
        self.view_channels = 3 if self.dual_pixel else self.inp_channels  # channels of one input image
        embed = getattr(getattr(network, 'patch_embed', None), 'proj', None)
        self.dim = int(embed.weight.shape[0]) if embed is not None else 48

    def check_image_channels(self) -> None:
        """Refuse a network whose input or output is not an image (1 gray or 3 colour channels per view).

        Raises:
            RestoreError: Naming the channels the network maps from and to (``restore_tensor`` still runs it).
        """
        if self.view_channels in (1, 3) and self.out_channels in (1, 3):
            return
        views = ' (two views)' if self.dual_pixel else ''
        raise RestoreError(f'the network maps {self.inp_channels} input channels{views} to {self.out_channels} output '
                           'channels, but images have 1 (gray) or 3 (colour) per view (a hyperspectral or feature '
                           'network?). Run it from Python: load_restormer and Restorer.restore_tensor.')

    def restore_tensor(self, image: Tensor) -> Tensor:
        """Restore a batch.

        Args:
            image: ``(N, inp_channels, H, W)`` float tensor in [0, 1], any size, on any device.

        Returns:
            ``(N, out_channels, H, W)`` float32 tensor in [0, 1] on the input's device.

        Raises:
            RestoreError: The network produced NaN/inf (e.g. fp16 overflow).
        """
        out = tiling.run_network(self.network, image, tile=self.tile, overlap=self.tile_overlap, blend=self.blend,
                                 device=self.device, precision=self.precision, progress=self.progress,
                                 fit_tile=not self.compiled)
        if not torch.isfinite(out).all():
            raise RestoreError(f'The network produced NaN/inf values in --precision {self.precision}; use fp32 '
                               '(or bf16).')
        return out.clamp_(0, 1)

    def check_fits(self, height: int, width: int, name: str = 'the image') -> None:
        """Refuse an image whose forward pass would likely not fit in memory, suggesting a tile size.

        Args:
            height: Image height in pixels.
            width: Image width in pixels.
            name: What to call the image in the message.

        Raises:
            RestoreError: The estimate for the whole image (or one tile) is above ``max_memory`` or what is free.
        """
        window = tiling.fixed_tile_shape(height, width, self.tile)
        half = perf.resolve_precision(self.precision) != torch.float32
        per_pixel = BYTES_PER_PIXEL_DIM48 * self.dim / 48 * (0.6 if half else 1.0)
        need = window[0] * window[1] * per_pixel
        budget = self.max_memory if self.max_memory is not None else _available_memory(self.device)
        if need > budget:
            suggestion = max(16, int(math.sqrt(0.7 * budget / per_pixel)) // 8 * 8)
            what = f'a {window[1]}x{window[0]} tile' if self.tile else f'{name} ({width}x{height})'
            raise RestoreError(f'{what} likely needs about {_size(need)} for the forward pass, but only '
                               f'{_size(budget)} is available. Use --tile {suggestion} --tile-overlap '
                               f'{min(32, suggestion // 4)} (tiles are blended smoothly), or --max-memory GB to '
                               'override the estimate.')

    def restore(self, image: np.ndarray, *views: np.ndarray, bgr: bool = False,
                name: str = 'the image') -> np.ndarray:
        """Restore one image given as a numpy array (or the two views of a dual-pixel pair).

        Gray images go through a colour network as three equal channels and come back gray; colour images given to
        a gray network are converted to gray. An alpha channel (4th channel) is passed through unchanged.

        Args:
            image: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``; uint8, uint16 or float in [0, 1]. RGB
                channel order unless ``bgr``.
            *views: The right view for the dual-pixel network (same shape as ``image``, the left view).
            bgr: The arrays are in OpenCV's BGR order (the result is too).
            name: What to call the image in messages (e.g. its file name).

        Returns:
            The restored image: same shape (channels of ``image``), same dtype.

        Raises:
            RestoreError: A network whose channels are not an image's, wrong number or sizes of views, or too large
                for memory.
        """
        self.check_image_channels()
        if len(views) != (1 if self.dual_pixel else 0):
            raise RestoreError('the dual-pixel network needs the left and the right view; other networks one image.'
                               if self.dual_pixel else 'only the dual-pixel network takes a second view.')
        arrays = (image, *views)
        if any(a.shape[:2] != image.shape[:2] for a in arrays):
            raise RestoreError(f'{name}: the left and right views differ in size.')
        self.check_fits(*image.shape[:2], name)
        color, alpha = _split(image)
        gray = color.shape[2] == 1
        model_in = np.concatenate([_model_channels(_split(a)[0], self.view_channels, bgr) for a in arrays], axis=2)
        x = torch.from_numpy(np.ascontiguousarray(model_in.transpose(2, 0, 1)))[None]
        out = self.restore_tensor(x)[0].permute(1, 2, 0).cpu().numpy()
        if bgr and out.shape[2] == 3:
            out = out[..., ::-1]
        if gray and out.shape[2] == 3 and self.view_channels == 3:  # not the colour of a 1 -> 3 channel network
            out = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY)[..., None]
        if image.dtype in (np.uint8, np.uint16):
            out = np.round(np.clip(out, 0, 1) * np.iinfo(image.dtype).max)
        result = out.astype(image.dtype)
        if alpha is not None:
            result = np.concatenate([result, alpha], axis=2)
        return result.reshape(image.shape) if image.ndim == 2 else result


def _split(image: np.ndarray):
    """``(H, W, C)`` colour/gray part and the ``(H, W, 1)`` alpha (or None)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise RestoreError(f'images must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {image.shape}.')
    return (image[..., :3], image[..., 3:]) if image.shape[2] == 4 else (image, None)


def _model_channels(color: np.ndarray, channels: int, bgr: bool) -> np.ndarray:
    """float32 ``(H, W, channels)`` RGB for the network from gray or colour (RGB, or BGR when ``bgr``)."""
    if color.dtype not in (np.uint8, np.uint16) and not np.issubdtype(color.dtype, np.floating):
        raise RestoreError(f'images must be uint8, uint16 or float in [0, 1], got {color.dtype}.')
    pixels = color.astype(np.float32) / (np.iinfo(color.dtype).max if color.dtype in (np.uint8, np.uint16) else 1)
    if pixels.shape[2] == 3 and bgr:
        pixels = pixels[..., ::-1]
    if pixels.shape[2] == channels:
        return pixels
    if channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)[..., None]
    return np.repeat(pixels, channels, axis=2)
