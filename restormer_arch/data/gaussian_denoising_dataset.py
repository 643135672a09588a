"""``Dataset_GaussianDenoising``: clean images; noisy inputs are synthesised with additive white Gaussian noise.

Noise in training: a fresh sigma per sample (``sigma_type``), noise from torch's RNG (seeded per DataLoader worker).
Noise in validation/test: reproducible per image, independent of reading order and workers. The generator for an image
is ``numpy.random.default_rng([noise_seed, crc32(name)])`` where ``name`` is the image's path relative to
``dataroot_gt`` without extension, with ``/`` separators, which is also its key in an LMDB built by
``datasets/make_lmdb.py`` (so disk and LMDB give the same noise), and ``noise_seed`` defaults to 0.
The noise is drawn in float64 with ``normal(0, sigma_test / 255)`` and not clipped, as in the official evaluation,
which however re-seeds numpy with 0 for every image, so that same-sized images share one noise field.
``noise_protocol: official`` reproduces that noise exactly, for the paper's tables.
"""
import random
import zlib
from numbers import Real
from os import path as osp
from typing import Any, Dict

import numpy as np
import torch
from basicsr.utils.registry import DATASET_REGISTRY

from .base_dataset import FolderDataset, to_tensor

# sigma_type -> the sigma_range it takes.
SIGMA_TYPES = {'constant': 'one number (e.g. 25)', 'random': '[low, high] with 0 <= low <= high (e.g. [0, 50])',
               'choice': 'a non-empty list of noise levels (e.g. [15, 25, 50])'}
NOISE_PROTOCOLS = ('per_image', 'official')


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and value >= 0


def eval_noise(name: str, shape: tuple, sigma: float, seed: int = 0) -> np.ndarray:
    """Reproducible float64 evaluation noise N(0, sigma/255) for the image called ``name`` (see module docstring)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode('utf-8'))])
    return rng.normal(0.0, sigma / 255.0, size=shape)


def _official_eval_noise(shape: tuple, sigma: float) -> np.ndarray:
    # The official scripts' np.random.seed(0); np.random.normal(0, sigma / 255, shape) per image, drawn for the RGB
    # image: shape is that of the BGR (or gray HxWx1) image read here, so the colour planes are reversed. numpy's
    # global generator is left untouched.
    noise = np.random.RandomState(0).normal(0.0, sigma / 255.0, size=shape)
    return noise[..., ::-1] if shape[2] == 3 else noise


@DATASET_REGISTRY.register()
class Dataset_GaussianDenoising(FolderDataset):  # noqa: N801  (official Restormer name, used by its option files)
    """Clean images (``dataroot_gt``); the input is the clean image plus white Gaussian noise, never clipped.

    ``dataroot_lq`` is ignored (the official files set it to ``none``). Folder, ``meta_info_file`` and LMDB modes as
    in :class:`Dataset_PairedImage`. ``in_ch: 1`` reads images as grayscale, ``in_ch: 3`` as RGB. Training crops and
    augments the clean image like the paired dataset, then adds noise of level sigma (0-255 scale): ``sigma_type``
    ``constant`` (``sigma_range`` is a number), ``random`` (uniform in ``sigma_range: [low, high]``) or ``choice``
    (one of the list ``sigma_range``), drawn per sample. Validation/test adds ``sigma_test`` noise that is fixed per
    image (seeded by ``noise_seed``, default 0, and the image name).

    Args:
        opt: Dataset options: ``dataroot_gt``, ``io_backend``, ``phase``, ``in_ch``, ``gt_size``, ``geometric_augs``,
            ``use_padding``, ``sigma_type``, ``sigma_range`` (train), ``sigma_test``, ``noise_seed``,
            ``noise_protocol`` (``per_image``, default, or ``official``: seed 0 for every image) (val/test),
            ``meta_info_file``, ``mean``/``std``, ``check_images`` (see :class:`Dataset_PairedImage`).

    Returns (per item):
        dict with ``lq`` (noisy), ``gt`` (CHW float32 tensors) and ``lq_path`` = ``gt_path``.
    """

    folder_keys = ('gt',)

    def __init__(self, opt: Dict[str, Any]) -> None:
        name = type(self).__name__  # the noise options are checked before any file is listed
        if str(opt['phase']) != 'train':
            if opt.get('noise_protocol', 'per_image') not in NOISE_PROTOCOLS:
                raise ValueError(f'{name}: noise_protocol must be one of {NOISE_PROTOCOLS}, got '
                                 f'{opt.get("noise_protocol")!r}.')
            if not _is_number(opt['sigma_test']):
                raise ValueError(f'{name}: sigma_test must be a non-negative number (noise level on the 0-255 '
                                 f'scale, e.g. 25), got {opt["sigma_test"]!r}.')
        else:
            sigma_type, rng = opt['sigma_type'], opt['sigma_range']
            if sigma_type not in list(SIGMA_TYPES):
                raise ValueError(f'{name}: sigma_type must be one of {tuple(SIGMA_TYPES)}, got {sigma_type!r}.')
            listed = isinstance(rng, (list, tuple)) and all(_is_number(v) for v in rng)
            if not {'constant': _is_number(rng), 'random': listed and len(rng) == 2 and rng[0] <= rng[1],
                    'choice': listed and len(rng) > 0}[sigma_type]:
                raise ValueError(f'{name}: with sigma_type {sigma_type}, sigma_range must be '
                                 f'{SIGMA_TYPES[sigma_type]}, got {rng!r}.')
        self.noise_seed = int(opt.get('noise_seed', 0))
        super().__init__(opt)

    def image_name(self, path: str) -> str:
        """Order-independent image name that seeds its eval noise: LMDB key, or relative path without extension."""
        if self.backend['type'] == 'lmdb':
            return path
        return osp.splitext(osp.relpath(path, self.folders['gt']))[0].replace(osp.sep, '/')

    def __getitem__(self, index: int) -> Dict[str, Any]:
        paths, (gt,) = self.read_sample(index)
        path, gt_t = paths['gt_path'], to_tensor(gt)
        if self.phase == 'train':
            sigma_type, rng = self.opt['sigma_type'], self.opt['sigma_range']  # one level per sample, Python's random
            if sigma_type == 'constant':
                sigma = float(rng)
            else:
                sigma = random.uniform(rng[0], rng[1]) if sigma_type == 'random' else float(random.choice(rng))
            lq_t = gt_t + torch.randn_like(gt_t) * (sigma / 255.0)
        else:
            sigma = float(self.opt['sigma_test'])
            if self.opt.get('noise_protocol') == 'official':
                noise = _official_eval_noise(gt.shape, sigma)
            else:
                noise = eval_noise(self.image_name(path), gt.shape, sigma, self.noise_seed)
            lq_t = to_tensor((gt.astype(np.float64) + noise).astype(np.float32))
        if self.mean is not None:
            mean, std = (torch.tensor(v, dtype=torch.float32).view(-1, 1, 1) for v in (self.mean, self.std))
            gt_t, lq_t = (gt_t - mean) / std, (lq_t - mean) / std
        return {'lq': lq_t, 'gt': gt_t, 'lq_path': path, 'gt_path': path}
