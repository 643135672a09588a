"""Losses. Importing this package registers them in BasicSR's ``LOSS_REGISTRY``.

BasicSR already provides ``L1Loss``, ``MSELoss`` and ``CharbonnierLoss`` (all honour ``loss_weight``); only the losses
it lacks are defined here.
"""
from .psnr_loss import PSNRLoss

__all__ = ['PSNRLoss']
