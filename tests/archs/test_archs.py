"""Restormer architecture: official state_dict layout, golden outputs, any input size, registry, gradients."""
import json

import pytest
import torch

from restormer_arch.archs.restormer_arch import ChannelLayerNorm, Restormer, pad_to_multiple
from tests.conftest import DATA_DIR

with open(DATA_DIR / 'restormer_state_dicts.json', encoding='utf-8') as _f:
    OFFICIAL_LAYOUTS = json.load(_f)

TINY = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 4, 8])


@pytest.mark.parametrize('config_name', sorted(OFFICIAL_LAYOUTS))
def test_state_dict_matches_official_layout(config_name):
    layout = OFFICIAL_LAYOUTS[config_name]
    net = Restormer(**layout['constructor_kwargs'])
    state = net.state_dict()
    assert list(state) == list(layout['keys']), 'keys (and their order) must match the official model'
    for key, shape in layout['keys'].items():
        assert list(state[key].shape) == shape, key
    assert sum(p.numel() for p in net.parameters()) == layout['num_params']
    # A checkpoint saved by the official code ({'params': state_dict}) loads strictly.
    fake_checkpoint = {'params': {k: torch.zeros(s) for k, s in layout['keys'].items()}}
    net.load_state_dict(fake_checkpoint['params'], strict=True)


def test_golden_outputs(golden_cases):
    assert set(golden_cases) == {'withbias_rgb', 'biasfree_gray', 'dual_pixel', 'withbias_rgb_convbias'}
    for name, case in golden_cases.items():
        net = Restormer(**case['constructor_kwargs']).eval()
        net.load_state_dict(case['state_dict'], strict=True)
        with torch.no_grad():
            out = net(case['input'])
        assert out.shape == case['output'].shape, name
        assert (out - case['output']).abs().max().item() < 1e-5, name


@pytest.mark.parametrize('size', [(37, 53), (8, 8), (5, 3), (64, 41)])
def test_any_size_equals_padded_then_cropped(size):
    net = Restormer(**TINY).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        out = net(x)
        reference = net.forward_features(pad_to_multiple(x))[..., :size[0], :size[1]]
    assert out.shape == x.shape
    assert torch.equal(out, reference)


def test_multiple_of_8_is_not_padded():
    net = Restormer(**TINY).eval()
    x = torch.rand(1, 3, 32, 24)
    assert pad_to_multiple(x) is x
    with torch.no_grad():
        assert torch.equal(net(x), net.forward_features(x))


def test_reflect_padding_matches_official_recipe():
    x = torch.rand(1, 3, 37, 53)
    padded = pad_to_multiple(x)
    assert padded.shape[-2:] == (40, 56)
    assert torch.equal(padded, torch.nn.functional.pad(x, (0, 3, 0, 3), mode='reflect'))


@pytest.mark.parametrize('kwargs,shape', [({}, (1, 1, 16, 16)), ({'inp_channels': 6, 'dual_pixel_task': True},
                                                                   (1, 3, 16, 16)), ({}, (3, 16, 16))])
def test_wrong_input_shape_gives_clear_error(kwargs, shape):
    net = Restormer(**TINY, **kwargs)
    with pytest.raises(ValueError, match='inp_channels'):
        net(torch.rand(*shape))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match='LayerNorm_type'):
        Restormer(**TINY, LayerNorm_type='withbias')
    with pytest.raises(ValueError, match='dual_pixel_task'):
        Restormer(**TINY, inp_channels=6)
    with pytest.raises(ValueError, match='4 entries'):
        Restormer(dim=8, num_blocks=[1, 1, 1], heads=[1, 2, 4, 8])
    with pytest.raises(ValueError, match="'full', 'lean'"):
        Restormer(**TINY, memory='low')


@pytest.mark.parametrize('kwargs', [{}, {'LayerNorm_type': 'BiasFree', 'bias': True},
                                    {'inp_channels': 6, 'dual_pixel_task': True}])
def test_gradients_reach_every_parameter(kwargs):
    net = Restormer(**TINY, **kwargs)
    # Non-default LayerNorm/temperature values so that no gradient is zero by symmetry.
    x = torch.rand(2, net.inp_channels, 24, 16)
    net(x).abs().mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize('layer_norm_type', ['WithBias', 'BiasFree'])
def test_channel_layer_norm_formula(layer_norm_type):
    norm = ChannelLayerNorm(6, layer_norm_type)
    with torch.no_grad():
        norm.body.weight.uniform_(0.5, 1.5)
        if layer_norm_type == 'WithBias':
            norm.body.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, keepdim=True, unbiased=False)
    weight = norm.body.weight.view(1, -1, 1, 1)
    if layer_norm_type == 'WithBias':
        expected = (x - mean) / torch.sqrt(var + 1e-5) * weight + norm.body.bias.view(1, -1, 1, 1)
    else:  # not mean-centred in the numerator
        expected = x / torch.sqrt(var + 1e-5) * weight
    torch.testing.assert_close(norm(x), expected, rtol=1e-5, atol=1e-5)


def test_registry_and_build_network():
    from basicsr.archs import build_network
    from basicsr.utils.registry import ARCH_REGISTRY

    assert ARCH_REGISTRY.get('Restormer') is Restormer
    net = build_network({'type': 'Restormer', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1,
                         'LayerNorm_type': 'BiasFree', 'inp_channels': 1, 'out_channels': 1})
    assert isinstance(net, Restormer)
    assert net(torch.rand(1, 1, 9, 10)).shape == (1, 1, 9, 10)


@pytest.mark.parametrize('size', [(16, 16), (13, 21)])
def test_output_is_contiguous_nchw(size):
    # BasicSR's discriminators (VGGStyleDiscriminator) and some losses call .view on the generator output.
    net = Restormer(**TINY).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size).contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous()
    assert out.view(2, -1).shape == (2, 3 * size[0] * size[1])
