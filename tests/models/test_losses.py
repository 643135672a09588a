"""Losses: PSNRLoss (Restormer's) and the BasicSR losses the option files use."""
import math

import pytest
import torch
from basicsr.losses import build_loss
from basicsr.utils.registry import LOSS_REGISTRY

from restormer_arch.losses import PSNRLoss


def _psnr(pred, target):
    return -10 * math.log10(float(((pred.double() - target.double()) ** 2).mean()) + 1e-8)


def test_psnr_loss_is_negative_psnr_per_image():
    target = torch.rand(2, 3, 8, 8)
    pred = target.clone()
    pred[0] += 0.1 * torch.randn(3, 8, 8)
    pred[1] += 0.01 * torch.randn(3, 8, 8)
    expected = [-_psnr(pred[i], target[i]) for i in range(2)]
    per_image = PSNRLoss(reduction='none')(pred, target)
    assert per_image.shape == (2, )
    assert per_image.tolist() == pytest.approx(expected, abs=1e-3)
    # The mean is over per-image PSNRs, not the PSNR of the pooled MSE (which the noisier image would dominate).
    assert float(PSNRLoss()(pred, target)) == pytest.approx(sum(expected) / 2, abs=1e-3)
    assert float(PSNRLoss(reduction='sum')(pred, target)) == pytest.approx(sum(expected), abs=1e-3)


def test_psnr_loss_weight_and_gradient():
    target = torch.rand(1, 3, 8, 8)
    pred = (target + 0.05 * torch.randn_like(target)).requires_grad_()
    base = PSNRLoss()(pred, target)
    weighted = PSNRLoss(loss_weight=0.5)(pred, target)
    assert float(weighted.detach()) == pytest.approx(0.5 * float(base.detach()), rel=1e-6)
    weighted.backward()
    # Descending the loss moves the prediction towards the target.
    with torch.no_grad():
        stepped = pred - 1e-4 * pred.grad
    assert float(PSNRLoss()(stepped, target)) < float(base.detach())


def test_psnr_loss_to_y_ignores_luma_preserving_changes():
    target = torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    pred = target.clone()
    pred[:, 0] += 0.1  # change R and compensate with G so that BT.601 luma is unchanged
    pred[:, 1] -= 0.1 * 65.481 / 128.553
    assert float(PSNRLoss(toY=True)(pred, target)) < -70  # only the 1e-8 floor: about -80 dB
    assert float(PSNRLoss()(pred, target)) > -30
    with pytest.raises(ValueError, match='RGB'):
        PSNRLoss(toY=True)(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))


def test_psnr_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match='reduction'):
        PSNRLoss(reduction='avg')
    with pytest.raises(ValueError, match='shape'):
        PSNRLoss()(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))


def test_losses_are_registered_without_clashing_with_basicsr():
    loss = build_loss({'type': 'PSNRLoss', 'loss_weight': 2.0, 'toY': False})
    assert isinstance(loss, PSNRLoss) and loss.loss_weight == 2.0
    assert LOSS_REGISTRY.get('PSNRLoss').__module__.startswith('restormer_arch.')
    for name in ('L1Loss', 'MSELoss', 'CharbonnierLoss'):  # the option files use BasicSR's own
        assert LOSS_REGISTRY.get(name).__module__.startswith('basicsr.')


@pytest.mark.parametrize('name', ['L1Loss', 'MSELoss', 'CharbonnierLoss', 'PSNRLoss'])
def test_every_pixel_loss_honours_loss_weight(name):
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    one = build_loss({'type': name, 'loss_weight': 1.0})(pred, target)
    three = build_loss({'type': name, 'loss_weight': 3.0})(pred, target)
    assert float(three) == pytest.approx(3 * float(one), rel=1e-5)


@pytest.mark.slow
def test_perceptual_loss_offline_says_what_to_download_and_where(tmp_path, monkeypatch):
    import http.server
    import threading

    from restormer_arch.errors import UserError

    # A real HTTP proxy on 127.0.0.1 that refuses every tunnel: the download fails as it does without a network.
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = f'http://127.0.0.1:{server.server_address[1]}'
    for name in ('https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY'):
        monkeypatch.setenv(name, proxy)
    for name in ('no_proxy', 'NO_PROXY'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))  # an empty cache
    monkeypatch.chdir(tmp_path)  # no experiments/pretrained_models/vgg19-dcbb9e9d.pth here
    try:
        with pytest.raises(UserError) as err:
            build_loss({'type': 'PerceptualLoss', 'layer_weights': {'conv1_2': 1.0}})
    finally:
        server.shutdown()
    message = str(err.value)
    assert '\n' not in message
    assert 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth' in message
    assert str(tmp_path / 'torch' / 'hub' / 'checkpoints' / 'vgg19-dcbb9e9d.pth') in message
