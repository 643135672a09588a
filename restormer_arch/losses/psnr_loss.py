"""PSNR loss (Restormer's ``PSNRLoss``): minimising it maximises the PSNR of every image."""
import math

import torch
from basicsr.losses.loss_util import reduce_loss
from basicsr.utils.color_util import rgb2ycbcr_pt
from basicsr.utils.registry import LOSS_REGISTRY
from torch import Tensor, nn

_REDUCTIONS = ('none', 'mean', 'sum')


@LOSS_REGISTRY.register()
class PSNRLoss(nn.Module):
    """Negative PSNR (peak 1): ``loss_weight * 10 / ln(10) * log(mean((pred - target)^2) + 1e-8)`` per image.

    The mean squared error is taken per image (over C, H, W), so each image's PSNR counts equally whatever its error.

    Args:
        loss_weight: Multiplier of the loss.
        reduction: How per-image losses are combined: ``'mean'`` (default), ``'sum'`` or ``'none'`` (shape ``(N,)``).
        toY: Compare the BT.601 luma (Y in [16/255, 235/255]) of RGB images instead of all channels.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'mean', toY: bool = False) -> None:  # noqa: N803
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f'PSNRLoss: reduction must be one of {_REDUCTIONS}, got {reduction!r}.')
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.toY = toY  # noqa: N815 (official option name)
        self.scale = 10 / math.log(10)

    def forward(self, pred: Tensor, target: Tensor, **kwargs) -> Tensor:
        """Compute the loss.

        Args:
            pred: ``(N, C, H, W)`` prediction in [0, 1].
            target: Ground truth of the same shape.
            **kwargs: Ignored (BasicSR passes ``weight`` to some losses).

        Returns:
            The reduced loss (a scalar unless ``reduction='none'``).
        """
        if pred.shape != target.shape:
            raise ValueError(f'PSNRLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape.')
        if self.toY:
            if pred.shape[1] != 3:
                raise ValueError(f'PSNRLoss(toY=True) needs RGB (N, 3, H, W) inputs, got {tuple(pred.shape)}.')
            pred, target = rgb2ycbcr_pt(pred, y_only=True), rgb2ycbcr_pt(target, y_only=True)
        mse = (pred - target).pow(2).flatten(1).mean(dim=1)
        loss = self.loss_weight * self.scale * torch.log(mse + 1e-8)
        return reduce_loss(loss, self.reduction)
