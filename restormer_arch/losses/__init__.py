"""Losses. Importing this package registers them in BasicSR's ``LOSS_REGISTRY``.

BasicSR already provides ``L1Loss``, ``MSELoss``, ``CharbonnierLoss`` (all honour ``loss_weight``) and
``PerceptualLoss``; only the losses it lacks are defined here. When ``PerceptualLoss`` cannot download torchvision's
VGG weights (no network), a :class:`~restormer_arch.errors.UserError` says which file to put where.
"""
import functools
import http.client
import os

import torch
import torchvision
from basicsr.archs.vgg_arch import VGGFeatureExtractor

from restormer_arch.errors import UserError

from .psnr_loss import PSNRLoss

__all__ = ['PSNRLoss']


def _vgg_weights_hint(init):
    @functools.wraps(init)
    def wrapper(self, layer_name_list, vgg_type='vgg19', *args, **kwargs):
        try:
            init(self, layer_name_list, vgg_type, *args, **kwargs)
        except (OSError, http.client.HTTPException) as err:  # urllib's URLError is an OSError
            url = torchvision.models.get_model_weights(vgg_type).IMAGENET1K_V1.url
            where = os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(url))
            raise UserError(f'PerceptualLoss: the {vgg_type} weights could not be downloaded '
                            f'({getattr(err, "reason", err)}); download {url} and save it as {where} (the torch hub '
                            'cache, moved by $TORCH_HOME).') from err
    return wrapper


if not hasattr(VGGFeatureExtractor.__init__, '__wrapped__'):
    VGGFeatureExtractor.__init__ = _vgg_weights_hint(VGGFeatureExtractor.__init__)
