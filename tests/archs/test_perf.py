"""Fast path vs the plain reference math, checkpointing, mixed precision, compile, tiling and the CPU allocator."""
import ctypes
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from restormer_arch.archs.restormer_arch import GDFN, MDTA, ChannelLayerNorm, Restormer, TransformerBlock
from restormer_arch.perf import (
    PRECISIONS,
    apply_performance_options,
    autocast_context,
    compile_for_inference,
    configure_allocator,
    prepare_inference,
    resolve_precision,
)
from restormer_arch.tiling import (
    blend_window,
    check_tile_options,
    fixed_tile_shape,
    tile_grid,
    tiled_forward,
)
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
    plain = PlainRestormer(**{k: v for k, v in config.items() if k != 'memory'})
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


@pytest.mark.parametrize('memory', ['lean', 'full'])
@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_fast_path_matches_plain_math_outputs_and_gradients(name, memory):
    fast, plain = _pair(dict(CONFIGS[name], memory=memory))
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


@pytest.mark.parametrize('bias', [False, True])
@pytest.mark.parametrize('module', ['mdta', 'gdfn'])
def test_fast_forward_equals_the_reference_formula(module, bias):
    """MDTA/GDFN.forward (fused, with their own backward functions) against forward_reference (the paper's formula),
    outputs, input gradients and parameter gradients."""
    torch.manual_seed(2)
    block = MDTA(16, 4, bias=bias) if module == 'mdta' else GDFN(16, 2.66, bias=bias)
    if module == 'mdta':
        nn.init.uniform_(block.temperature, 0.5, 2.0)
    x = torch.randn(2, 16, 8, 12)
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        grads = []
        for forward in (block.forward, block.forward_reference):
            block.zero_grad()
            leaf = inp.clone().requires_grad_()
            out = forward(leaf)
            out.square().sum().backward()
            grads.append([out.detach(), leaf.grad] + [p.grad for p in block.parameters()])
        assert (grads[0][0] - grads[1][0]).abs().max().item() < 1e-5
        for fast, ref in zip(grads[0][1:], grads[1][1:]):
            assert (fast - ref).abs().max().item() < 1e-4 * ref.abs().max().item()


def test_attention_with_an_all_zero_query_channel_has_finite_gradients():
    """The fast pixel norm clamps before its square root: a dead q channel gets the reference's gradient, not NaN."""
    torch.manual_seed(3)
    block = MDTA(16, 2, bias=False)
    with torch.no_grad():
        block.qkv.weight[0].zero_()  # q channel 0 is 0 everywhere
    x = torch.randn(1, 16, 8, 8)
    out, ref = block(x), block.forward_reference(x)
    assert (out - ref).abs().max().item() < 1e-5
    out.square().sum().backward()
    fast_grad = block.qkv.weight.grad.clone()
    block.zero_grad()
    ref.square().sum().backward()
    assert torch.isfinite(fast_grad).all()
    assert (fast_grad - block.qkv.weight.grad).abs().max().item() < 1e-4 * block.qkv.weight.grad.abs().max().item()


@pytest.mark.parametrize('dim', [16, 48, 24])  # hidden widths 42, 127, 63: padded to 48, 128, 64 channels
def test_gdfn_padded_hidden_width_equals_the_formula(dim):
    torch.manual_seed(4)
    block = GDFN(dim, 2.66, bias=True)
    x = torch.randn(2, dim, 8, 8)
    with torch.no_grad():
        assert (block(x) - block.forward_reference(x)).abs().max().item() < 1e-5


@pytest.mark.parametrize('layer_norm_type', ['WithBias', 'BiasFree'])
def test_channel_norm_over_dim_1_equals_the_nhwc_form(layer_norm_type):
    """ChannelLayerNorm's formula over dim 1 (what torch.compile traces) equals the eager NHWC form."""
    norm = ChannelLayerNorm(12, layer_norm_type)
    with torch.no_grad():
        norm.body.weight.uniform_(0.5, 1.5)
        if layer_norm_type == 'WithBias':
            norm.body.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 12, 5, 7).contiguous(memory_format=torch.channels_last) * 3 + 1
    assert (norm.body.over_channels(x) - norm(x)).abs().max().item() < 1e-5


@pytest.mark.parametrize('mode', ['autocast', 'half'])
def test_fp16_attention_does_not_overflow_on_large_images(mode):
    """The Gram matrix sums H*W products: at 256x256 with correlated q and k the raw sum exceeds fp16's 65504."""
    torch.manual_seed(6)
    attn = MDTA(16, 2).eval()
    x = (2 + 0.1 * torch.randn(1, 16, 256, 256)).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = attn.forward_reference(x)
        if mode == 'autocast':
            with autocast_context('fp16'):
                out = attn(x)
        else:
            out = attn.half()(x.half())
    assert out.dtype == torch.float16
    assert torch.isfinite(out).all()
    assert (out.float() - ref).abs().max().item() < 0.01 * ref.abs().max().item()


def test_inference_residual_keeps_fp32_under_autocast():
    """In-place residual adds at inference must not store the fp32 residual stream in a bf16 branch output."""
    torch.manual_seed(5)
    block = TransformerBlock(16, 2, 2.66, False, 'WithBias').eval()
    x = torch.randn(1, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        with autocast_context('bf16'):
            low = block(x)
        ref = block(x)
    assert low.dtype == torch.float32
    assert (low - ref).abs().max().item() < 0.05 * ref.abs().max().item()
    with torch.no_grad():  # fp32 inference (in place) equals the training form (out of place)
        inplace = block(x)
    assert torch.allclose(inplace, block(x.clone().requires_grad_()).detach(), atol=1e-5)


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


class _LiveStorages(TorchDispatchMode):
    """Records the storage of every tensor the enclosed ops create; :meth:`live_bytes` sums those still alive.

    After a forward pass, what is alive is the output plus what the autograd graph keeps for the backward pass (saved
    tensors, and the cache of selective recompute, which saved-tensor hooks do not see). Storage lifetime follows
    reference counts, so the count is deterministic.
    """

    def __init__(self) -> None:
        super().__init__()
        self.storages = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()  # an address reused later belongs to a freed storage: replace it
                self.storages[storage.data_ptr()] = (StorageWeakRef(storage), storage.nbytes())
        return out

    def live_bytes(self, exclude: list) -> int:
        """Bytes of the live storages created in the mode (views of the tensors in ``exclude`` are not counted)."""
        old = {t.untyped_storage().data_ptr() for t in exclude}
        return sum(nbytes for ptr, (ref, nbytes) in self.storages.items() if not ref.expired() and ptr not in old)


def _kept_for_backward(block: nn.Module, x: torch.Tensor, precision: str) -> int:
    tracker = _LiveStorages()
    with tracker, autocast_context(precision):
        out = block(x)
    return tracker.live_bytes([x, out, *block.parameters()])


@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
@pytest.mark.parametrize('layer_norm_type', ['WithBias', 'BiasFree'])
def test_normalized_form_with_folded_affine_equals_the_norm(layer_norm_type, precision):
    """ChannelLayerNorm.normalized (what training folds into the convolutions): the same values and gradients."""
    torch.manual_seed(6)
    norm = ChannelLayerNorm(12, layer_norm_type)
    nn.init.uniform_(norm.body.weight, 0.5, 1.5)
    x = (torch.randn(2, 12, 5, 7) * 3 + 1).contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(2, 12, 5, 7)
    results = []
    for form in ('forward', 'normalized'):
        norm.zero_grad()
        leaf = x.clone().requires_grad_()
        with autocast_context(precision):
            if form == 'forward':
                out = norm(leaf)
            else:
                x_hat, (weight, bias) = norm.normalized(leaf)
                out = x_hat.float() * weight.view(-1, 1, 1) + (0 if bias is None else bias.view(-1, 1, 1))
        (out.float() * upstream).sum().backward()
        results.append([out.float().detach(), leaf.grad] + [p.grad for p in norm.parameters()])
    tolerance = {'fp32': 1e-5, 'bf16': 1e-2}[precision]  # bf16: the normalised values are rounded to bf16
    for fast, ref in zip(*results):
        assert (fast - ref).abs().max().item() <= tolerance * ref.abs().max().item()


@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_lean_block_keeps_less_for_backward_and_gives_the_same_gradients(precision):
    """memory='full' keeps ~19.0 C per pixel in fp32 (the hand-written backward functions keep the norms' outputs, the
    1x1 and depthwise convolutions' outputs and small matrices; the norms' affine parts are folded into the next
    convolutions), ~16.8 C under bf16 autocast (autograd's own ops there); memory='lean' recomputes the depthwise
    convolutions in the backward pass instead of keeping their outputs (the default): ~10.6 C (fp32), ~7.9 C (bf16).
    Gradients equal the full graph's (fp32: to float rounding; bf16: lean's functions round differently from autograd's
    ops)."""
    torch.manual_seed(7)
    full = TransformerBlock(48, 2, 2.66, True, 'WithBias', memory='full')
    lean = TransformerBlock(48, 2, 2.66, True, 'WithBias')  # lean is the default
    lean.load_state_dict(full.state_dict())
    x = torch.randn(2, 48, 32, 48).contiguous(memory_format=torch.channels_last)
    kept, grads = {}, {}
    for name, block in (('full', full), ('lean', lean)):
        inp = x.clone().requires_grad_()
        kept[name] = _kept_for_backward(block, inp, precision) / x.nbytes
        with autocast_context(precision):
            out = block(inp)
        out.float().square().sum().backward()
        grads[name] = [inp.grad] + [p.grad for p in block.parameters()]
    assert 10 < kept['full'] < {'fp32': 19.5, 'bf16': 17.0}[precision] and kept['lean'] < 0.6 * kept['full'], kept
    tolerance = {'fp32': 1e-5, 'bf16': 1e-2}[precision]
    for a, b in zip(grads['full'], grads['lean']):
        assert (a - b).abs().max().item() <= tolerance * b.abs().max().item()
    with torch.no_grad():  # inference keeps nothing either way
        assert _kept_for_backward(lean, x, precision) == 0
    for block in (full, lean):  # ONNX export traces the plain path: no checkpoint, no Python autograd functions
        traced = torch.jit.trace(block, x.clone().requires_grad_(), check_trace=False)
        assert not any('checkpoint' in node.kind() or 'PythonOp' in node.kind() for node in traced.graph.nodes())


@pytest.mark.parametrize('memory', ['full', 'lean'])
def test_training_under_ddp_matches_the_plain_math(tmp_path, memory):
    """DDP (gloo, world size 1): the reducer sees every gradient of the custom-backward and the recomputed blocks."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    lean, plain = _pair(dict(TINY, memory=memory))
    x, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    nn.functional.l1_loss(plain(x), target).backward()
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/rendezvous', rank=0, world_size=1)
    try:
        nn.functional.l1_loss(DistributedDataParallel(lean)(x), target).backward()
    finally:
        dist.destroy_process_group()
    assert max(_relative_grad_errors(lean, plain).values()) < 1e-4


@pytest.mark.skipif(not os.environ.get('RESTORMER_TEST_COMPILE'),
                    reason='compiling a training step takes 1-3 min on a CPU; set RESTORMER_TEST_COMPILE=1 to run it')
@pytest.mark.parametrize('memory', ['full', 'lean'])
def test_training_step_compiles_and_matches_eager(memory):
    """torch.compile traces the custom backward functions and the selective-recompute policy into its graphs."""
    torch.manual_seed(8)
    block = TransformerBlock(16, 2, 2.66, False, 'WithBias', memory=memory)
    x = torch.randn(2, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    grads = []
    for net in (block, torch.compile(block)):
        block.zero_grad()
        inp = x.clone().requires_grad_()
        net(inp).square().sum().backward()
        grads.append([inp.grad] + [p.grad.clone() for p in block.parameters()])
    for a, b in zip(*grads):
        assert (a - b).abs().max().item() < 1e-4 * b.abs().max().item()


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


@pytest.mark.parametrize('name', ['withbias', 'biasfree', 'dual_pixel', 'conv_bias'])
def test_bf16_network_end_to_end_stays_close_to_fp32(name):
    """prepare_inference('bf16'): weights and activations in bf16, fp32 in and out, >= 50 dB against fp32."""
    torch.manual_seed(0)
    config = CONFIGS[name]
    net = Restormer(**config).eval()
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 32), indexing='ij')
    x = torch.stack([yy, xx, (yy + xx) / 2] * 2)[None, :config.get('inp_channels', 3)]
    with torch.no_grad():
        ref = net(x)
        low_net = prepare_inference(net, 'bf16')
        assert all(p.dtype == torch.bfloat16 for p in low_net.parameters())
        low = low_net(x)
    assert low.dtype == torch.float32 and low.shape == ref.shape
    assert not torch.equal(low, ref)
    assert _psnr(low, ref) > MIN_PSNR_DB['bf16']


def test_prepare_inference_fp32_is_exact_and_keeps_weights():
    fast, plain = _pair(CONFIGS['withbias'])
    state = {k: v.clone() for k, v in fast.state_dict().items()}
    x = torch.rand(1, 3, 24, 16)
    with torch.no_grad():
        out = prepare_inference(fast, 'fp32')(x)
        assert (out - plain(x)).abs().max().item() < 1e-4
    assert not fast.training
    assert all(torch.equal(v, state[k]) for k, v in fast.state_dict().items())
    with pytest.raises(ValueError, match='precision'):
        prepare_inference(fast, 'int8')


def test_precision_names_and_errors():
    assert set(PRECISIONS) == {'fp32', 'bf16', 'fp16'}
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
    with pytest.raises(TypeError, match='moed'):  # torch.compile judges its arguments
        apply_performance_options(fast, {'compile': {'moed': 'default'}})
    with pytest.raises(RuntimeError, match='mode or options'):  # freezing is an inductor option: no mode with it
        apply_performance_options(fast, {'compile': {'mode': 'max-autotune', 'freezing': True}})


@pytest.mark.skipif(not os.environ.get('RESTORMER_TEST_COMPILE'),
                    reason='torch.compile takes 1-2 min on this CPU; set RESTORMER_TEST_COMPILE=1 to run it')
def test_torch_compile_matches_eager():
    fast, _ = _pair(CONFIGS['withbias'])
    compiled = apply_performance_options(fast, {'compile': True})
    frozen = apply_performance_options(fast, {'compile': {'freezing': True}})
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        ref = fast(x)
        assert (compiled(x) - ref).abs().max().item() < 1e-4
        assert (frozen(x) - ref).abs().max().item() < 1e-4
        assert (compile_for_inference(fast)(x) - ref).abs().max().item() < 1e-4


@pytest.mark.slow
def test_compiled_block_convolves_channels_last_without_layout_copies():
    """Under torch.compile the channel norm must hand the convolutions a real channels_last buffer: a permuted view
    reached them with a stride-0 batch dimension, and ATen then copied every input to NCHW (compiled 1.2x slower than
    eager). Compiling one small block takes ~5 s."""
    torch.manual_seed(6)
    block = TransformerBlock(16, 2, 2.66, False, 'WithBias').eval()
    compiled = compile_for_inference(block)
    x = torch.randn(1, 16, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert (compiled(x) - block(x)).abs().max().item() < 1e-5
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            compiled(x)
    names = [event.name for event in prof.events()]
    assert names.count('aten::convolution') >= 10
    assert names.count('aten::copy_') == 0


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


@pytest.mark.parametrize('batch_size', [1, 3])
@pytest.mark.parametrize('fit_tile', [True, False])
def test_tiling_grids_and_batches_equal_whole_image_for_a_local_network(fit_tile, batch_size):
    net = LocalNet().eval()
    x = torch.rand(2, 3, 83, 61)
    with torch.no_grad():
        tiled = tiled_forward(net, x, tile=32, overlap=12, fit_tile=fit_tile, batch_size=batch_size)
        assert (tiled - net(x)).abs().max().item() < 1e-5


@pytest.mark.parametrize('length', [33, 100, 257, 512, 1000, 1024, 2160, 3840])
@pytest.mark.parametrize('tile, overlap', [(32, 8), (256, 32), (96, 0)])
def test_tile_grid_is_even_minimal_and_covers(length, tile, overlap):
    for fit in (True, False):
        size, starts = tile_grid(length, tile, overlap, fit)
        assert size <= tile and starts[0] == 0 and starts[-1] + size == length
        steps = [b - a for a, b in zip(starts, starts[1:])]
        assert all(size - step >= overlap for step in steps)  # every overlap at least the requested one
        assert max(steps, default=0) - min(steps, default=0) <= 1  # evenly spread
        if length > tile:
            # The fewest tiles of size `tile` that overlap by `overlap`.
            assert (len(starts) - 1) * (tile - overlap) + tile >= length > (len(starts) - 2) * (tile - overlap) + tile
            if not fit:
                assert size == tile
            elif tile % 8 == 0:
                assert size % 8 == 0


def test_fitted_tiles_recompute_fewer_pixels():
    size, starts = tile_grid(1024, 256, 32)
    assert (size, len(starts)) == (232, 5)  # 5 x 232 = 1160 px processed per axis instead of 5 x 256 = 1280
    assert tile_grid(512, 256, 32) == (192, [0, 160, 320])


def test_check_tile_options_names_the_bad_value():
    check_tile_options(256, 32)
    check_tile_options(8, 0)
    for tile, overlap, bad in [(0, 0, 'tile'), (256, 128, 'overlap'), (256, -1, 'overlap'), (2.5, 0, 'tile'),
                               (True, 0, 'tile'), (64, '8', 'overlap')]:
        with pytest.raises(ValueError, match=bad):
            check_tile_options(tile, overlap)
    with pytest.raises(ValueError, match='batch_size'):
        tiled_forward(LocalNet(), torch.rand(1, 3, 8, 8), tile=8, overlap=0, batch_size=0)


def test_tiling_windows_and_positions():
    assert tile_grid(100, 32, 8, fit_tile=False)[1] == [0, 22, 45, 68]  # evenly spread, tiles of exactly 32
    assert tile_grid(20, 32, 8, fit_tile=False)[1] == [0]
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


@pytest.mark.slow
@pytest.mark.parametrize('setting, expected', [('', 'tuned'), ('system', 'system')])
def test_allocator_switch_controls_page_faults(setting, expected):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), RESTORMER_ALLOCATOR=setting)
    result = subprocess.run([sys.executable, '-c', _FAULT_PROBE], env=env, capture_output=True, text=True,
                            check=True, timeout=120)
    state, faults = result.stdout.split()
    assert state == expected
    # Default glibc maps the 64 MiB result afresh every time: 16384 faults of 4 KiB. Tuned: it reuses the heap.
    assert (int(faults) < 1000) == (expected == 'tuned'), result.stdout


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks',
                                                     'fsmblks', 'uordblks', 'fordblks', 'keepcost')]


def _mmapped_blocks() -> int:
    libc = ctypes.CDLL('libc.so.6')
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().hblks


@pytest.mark.skipif(not sys.platform.startswith('linux') or not hasattr(os, 'confstr')
                    or 'glibc' not in (os.confstr('CS_GNU_LIBC_VERSION') or ''), reason='glibc only')
def test_configure_allocator_in_process_takes_effect_and_is_idempotent(monkeypatch):
    monkeypatch.setenv('RESTORMER_ALLOCATOR', 'system')
    assert configure_allocator() == 'system'
    monkeypatch.delenv('RESTORMER_ALLOCATOR')
    start = time.perf_counter()
    assert configure_allocator() == 'tuned'
    assert configure_allocator() == 'tuned'
    assert time.perf_counter() - start < 5
    # The setting really applies: a 64 MiB tensor (above glibc's default mmap threshold) comes from the heap.
    before = _mmapped_blocks()
    big = torch.empty(16 * 1024 * 1024)
    assert _mmapped_blocks() == before
    del big


# ------------------------------------------------------------------------------------------ training step


@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_training_step_uses_fused_adamw_and_bf16_autocast(tmp_path, precision):
    """ImageCleanModel: AdamW is fused unless the option file says otherwise; bf16 steps train the fp32 weights."""
    from basicsr.models import build_model

    from tests.models.test_models import batch, make_opt

    model = build_model(make_opt(tmp_path / precision, performance={'precision': precision, 'channels_last': True}))
    assert model.optimizer_g.param_groups[0]['fused'] is True
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert all(p.dtype == torch.float32 for p in model.net_g.parameters())  # master weights stay fp32
    assert model.net_g.patch_embed.proj.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(torch.as_tensor(model.log_dict['l_pix'])).all()
    assert any(not torch.equal(v, before[k]) for k, v in model.net_g.state_dict().items())
    explicit = build_model(make_opt(tmp_path / 'explicit', train={'optim_g': {'type': 'AdamW', 'lr': 1e-3,
                                                                             'foreach': False}}))
    assert not explicit.optimizer_g.param_groups[0].get('fused')  # the user's choice is kept


@pytest.mark.skipif(not os.environ.get('RESTORMER_TEST_COMPILE'),
                    reason='torch.compile takes 1-2 min on this CPU; set RESTORMER_TEST_COMPILE=1 to run it')
def test_basicsr_test_with_compile_equals_eager(tmp_path):
    from basicsr.models import build_model

    from tests.models.test_models import batch, make_opt

    outputs, states = [], []
    data = batch(n=1)
    for compile_opt in (False, True):
        model = build_model(make_opt(tmp_path / str(compile_opt), is_train=False, performance={'compile': compile_opt}))
        if states:
            model.net_g.load_state_dict(states[0], strict=True)
        states.append(model.net_g.state_dict())
        model.feed_data(data)
        model.test()
        outputs.append(model.output)
    assert model._compiled_test_net is not None
    assert (outputs[0] - outputs[1]).abs().max().item() < 1e-4


@pytest.mark.parametrize('size', [(40, 48), (20, 70), (16, 16), (10, 12)])
def test_fixed_tile_shape_is_what_fixed_tiles_feed_the_network(size):
    """The shape restore/test warn about for --compile must be the one tiled_forward(fit_tile=False) really runs."""
    seen = set()

    def network(x):
        seen.add(tuple(x.shape[-2:]))
        return x

    tiled_forward(network, torch.rand(1, 3, *size), tile=16, overlap=4, fit_tile=False)
    assert seen == {fixed_tile_shape(*size, 16)}
    assert fixed_tile_shape(*size, None) == size
