"""Fast path vs the plain reference math, checkpointing, mixed precision, compile, tiling and the CPU allocator."""
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

from restormer_arch.archs.restormer_arch import MDTA, Restormer
from restormer_arch.perf import apply_performance_options, autocast_context, configure_allocator, resolve_precision
from restormer_arch.tiling import blend_window, tile_starts, tiled_forward
from tests.conftest import REPO_ROOT
from tests.reference_restormer import PlainRestormer

TINY = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 4, 8])
CONFIGS = {
    'withbias': dict(TINY),
    'biasfree': dict(TINY, LayerNorm_type='BiasFree', inp_channels=1, out_channels=1),
    'dual_pixel': dict(TINY, inp_channels=6, out_channels=3, dual_pixel_task=True),
    'conv_bias': dict(TINY, bias=True),
}


def _randomise(net: nn.Module) -> dict:
    """Random weights everywhere, LayerNorm scales/biases and temperatures included (so folding them is tested)."""
    state = net.state_dict()
    for key, value in state.items():
        if key.endswith('temperature') or value.dim() == 1 and 'norm' in key and key.endswith('weight'):
            state[key] = torch.rand_like(value) + 0.5
        elif value.dim() == 1:
            state[key] = torch.randn_like(value) * 0.1
        else:
            state[key] = torch.randn_like(value) * (1.0 / value[0].numel()) ** 0.5
    return state


def _pair(config: dict):
    fast = Restormer(**config)
    plain = PlainRestormer(**config)
    state = _randomise(fast)
    fast.load_state_dict(state, strict=True)
    plain.load_state_dict(state, strict=True)
    return fast, plain


def _relative_grad_errors(fast: nn.Module, plain: nn.Module) -> dict:
    plain_params = dict(plain.named_parameters())
    errors = {}
    for name, param in fast.named_parameters():
        ref = plain_params[name].grad
        errors[name] = ((param.grad - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()
    return errors


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_fast_path_matches_plain_math_outputs_and_gradients(name):
    fast, plain = _pair(CONFIGS[name])
    x = torch.rand(2, CONFIGS[name].get('inp_channels', 3), 32, 24)
    target = torch.rand(2, CONFIGS[name].get('out_channels', 3), 32, 24)
    out_fast, out_plain = fast(x), plain(x)
    assert (out_fast - out_plain).abs().max().item() < 1e-4
    nn.functional.l1_loss(out_fast, target).backward()
    nn.functional.l1_loss(out_plain, target).backward()
    errors = _relative_grad_errors(fast, plain)
    assert max(errors.values()) < 1e-4, max(errors.items(), key=lambda kv: kv[1])


def test_fast_path_output_is_channels_last_and_accepts_both_layouts():
    fast, plain = _pair(CONFIGS['withbias'])
    x = torch.rand(1, 3, 40, 24)
    with torch.no_grad():
        ref = plain(x)
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            assert (fast(inp) - ref).abs().max().item() < 1e-4


def test_folded_attention_accepts_nchw_input():
    torch.manual_seed(1)
    attn = MDTA(16, 4, bias=True)
    nn.init.uniform_(attn.temperature, 0.5, 2.0)
    x = torch.randn(2, 16, 8, 12)
    n, c, h, w = x.shape
    q, k, v = attn.qkv_dwconv(attn.qkv(x)).reshape(n, 3, 4, c // 4, h * w).unbind(1)
    q, k = nn.functional.normalize(q, dim=-1), nn.functional.normalize(k, dim=-1)
    ref = attn.project_out(((q @ k.transpose(-2, -1)) * attn.temperature).softmax(-1).matmul(v).reshape(n, c, h, w))
    assert (attn(x) - ref).abs().max().item() < 1e-5


def test_checkpointing_matches_plain_forward_and_gradients():
    config = CONFIGS['withbias']
    fast, _ = _pair(config)
    ckpt = Restormer(**config, use_checkpoint=True)
    ckpt.load_state_dict(fast.state_dict(), strict=True)
    assert list(ckpt.state_dict()) == list(fast.state_dict())
    x = torch.rand(2, 3, 32, 32)
    out_a, out_b = fast(x), ckpt(x)
    assert torch.allclose(out_a, out_b, atol=1e-6)
    out_a.square().mean().backward()
    out_b.square().mean().backward()
    ckpt_params = dict(ckpt.named_parameters())
    for name, param in fast.named_parameters():
        assert torch.allclose(param.grad, ckpt_params[name].grad, rtol=1e-5, atol=1e-7), name
    ckpt.set_checkpointing(False)
    assert not any(getattr(m, 'use_checkpoint', False) for m in ckpt.modules())


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return (10 * torch.log10(1.0 / (a.float() - b.float()).square().mean())).item()


# Default initialisation (residual ~0.06): bf16 measures ~60 dB, fp16 ~77 dB against fp32 here.
MIN_PSNR_DB = {'bf16': 50.0, 'fp16': 60.0}


@pytest.mark.parametrize('precision', sorted(MIN_PSNR_DB))
def test_autocast_stays_close_to_fp32_for_inference_and_training(precision):
    torch.manual_seed(0)
    fast = Restormer(**TINY).eval()
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing='ij')
    x = torch.stack([yy, xx, (yy + xx) / 2])[None]  # smooth image in [0, 1]
    with torch.no_grad():
        ref = fast(x)
        with autocast_context(precision):
            low = fast(x)
    assert not torch.equal(low, ref)  # autocast really ran (the fp32 input residual keeps the output fp32)
    assert _psnr(low, ref) > MIN_PSNR_DB[precision]
    fast.train()
    with autocast_context(precision):
        loss = nn.functional.l1_loss(fast(x).float(), x)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in fast.parameters())


def test_precision_names_and_errors():
    assert resolve_precision(None) == torch.float32
    assert resolve_precision('BF16') == torch.bfloat16
    assert resolve_precision('half') == torch.float16
    with pytest.raises(ValueError, match='performance.precision'):
        resolve_precision('int8')
    with autocast_context('fp32'):
        assert not torch.is_autocast_enabled('cpu')


def test_apply_performance_options_channels_last_keeps_weights():
    fast, plain = _pair(CONFIGS['withbias'])
    keys = {k: v.shape for k, v in fast.state_dict().items()}
    out = apply_performance_options(fast, {'channels_last': True, 'precision': 'fp32'})
    assert out is fast
    assert fast.patch_embed.proj.weight.is_contiguous(memory_format=torch.channels_last)
    assert {k: v.shape for k, v in fast.state_dict().items()} == keys
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (fast(x) - plain(x)).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match='unknown key'):
        apply_performance_options(fast, {'chanels_last': True})
    with pytest.raises(ValueError, match='compile'):
        apply_performance_options(fast, {'compile': {'moed': 'default'}})


@pytest.mark.skipif(not os.environ.get('RESTORMER_TEST_COMPILE'),
                    reason='torch.compile takes 1-2 min on this CPU; set RESTORMER_TEST_COMPILE=1 to run it')
def test_torch_compile_matches_eager():
    fast, _ = _pair(CONFIGS['withbias'])
    compiled = apply_performance_options(fast, {'compile': True})
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (compiled(x) - fast(x)).abs().max().item() < 1e-4


# ----------------------------------------------------------------------------------------------- tiling


class LocalNet(nn.Module):
    """Three 3x3 convolutions: receptive-field radius 3, so tiles with overlap >= 12 reproduce the whole image."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 8, 3, padding=1),
                                  nn.GELU(), nn.Conv2d(8, 2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize('size', [(67, 45), (33, 101), (20, 19), (40, 40)])
@pytest.mark.parametrize('blend', ['cosine', 'linear', 'box'])
def test_tiling_equals_whole_image_for_a_local_network(size, blend):
    net = LocalNet().eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        whole = net(x)
        tiled = tiled_forward(net, x, tile=32, overlap=12, blend=blend)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max().item() < 1e-5


def test_tiling_windows_and_positions():
    assert tile_starts(100, 32, 8) == [0, 24, 48, 68]
    assert tile_starts(20, 32, 8) == [0]
    window = blend_window(32, 16, lead=True, trail=True)
    assert window[:4].eq(0).all() and window[-4:].eq(0).all() and window[12:20].eq(1).all()
    assert torch.all(window[4:12].diff() > 0)  # smooth monotone ramp
    assert blend_window(32, 16, lead=False, trail=False).eq(1).all()


def test_tiling_restormer_smaller_than_tile_is_exact_and_big_image_runs():
    net = Restormer(**TINY).eval()
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        assert torch.allclose(tiled_forward(net, x, tile=64, overlap=16), net(x), atol=1e-6)
        out = tiled_forward(net, torch.rand(1, 3, 70, 45), tile=32, overlap=8)
    assert out.shape == (1, 3, 70, 45) and torch.isfinite(out).all()


def test_tiling_rejects_bad_arguments():
    with pytest.raises(ValueError, match='overlap'):
        tiled_forward(LocalNet(), torch.rand(1, 3, 8, 8), tile=16, overlap=8)
    with pytest.raises(ValueError, match='blend'):
        tiled_forward(LocalNet(), torch.rand(1, 3, 8, 8), blend='gauss')
    with pytest.raises(ValueError, match='same spatial size'):
        tiled_forward(nn.PixelUnshuffle(2), torch.rand(1, 3, 8, 8), tile=8, overlap=0)


# -------------------------------------------------------------------------------------------- allocator

_FAULT_PROBE = textwrap.dedent('''
    import resource, sys, torch
    from restormer_arch.perf import configure_allocator
    state = configure_allocator()
    x = torch.rand(16 * 1024 * 1024)  # 64 MiB: above glibc's mmap threshold
    (x * 2).sum()
    faults = []
    for _ in range(5):  # the fewest faults of 5 runs: robust to a stray fault from another thread or process
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        (x * 2).sum()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(state, min(faults))
''')


@pytest.mark.parametrize('setting, expected', [('', 'tuned'), ('system', 'system')])
def test_allocator_switch_controls_page_faults(setting, expected):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), RESTORMER_ALLOCATOR=setting)
    result = subprocess.run([sys.executable, '-c', _FAULT_PROBE], env=env, capture_output=True, text=True,
                            check=True, timeout=120)
    state, faults = result.stdout.split()
    assert state == expected
    # Default glibc maps the 64 MiB result afresh every time: 16384 faults of 4 KiB. Tuned: it reuses the heap.
    assert (int(faults) < 1000) == (expected == 'tuned'), result.stdout


def test_configure_allocator_in_process_is_idempotent(monkeypatch):
    monkeypatch.setenv('RESTORMER_ALLOCATOR', 'system')
    assert configure_allocator() == 'system'
    monkeypatch.delenv('RESTORMER_ALLOCATOR')
    start = time.perf_counter()
    assert configure_allocator() in ('tuned', 'unsupported')
    assert configure_allocator() in ('tuned', 'unsupported')
    assert time.perf_counter() - start < 5
