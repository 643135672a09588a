"""Restormer: Efficient Transformer for High-Resolution Image Restoration (Zamir et al., CVPR 2022).

The classes are defined top-down, in the order of the paper:

* :class:`Restormer` - a 4-level U-Net of transformer blocks with pixel-unshuffle downsampling, pixel-shuffle
  upsampling, skip concatenation and a refinement stage at full resolution, plus a global residual.
* :class:`TransformerBlock` - ``x + MDTA(LN(x))`` followed by ``x + GDFN(LN(x))``.
* :class:`MDTA` - multi-Dconv head transposed attention: attention across channels (C/heads x C/heads per head), so the
  cost is linear in the number of pixels.
* :class:`GDFN` - gated-Dconv feed-forward network: ``GELU(x1) * x2`` after a depthwise 3x3 convolution.
* :class:`ChannelLayerNorm` - LayerNorm over the channels of every pixel, ``WithBias`` or ``BiasFree``.

Two equivalent implementations. :meth:`MDTA.forward_reference` and :meth:`GDFN.forward_reference` are the paper's
formulas written plainly; ``forward`` computes the same function faster (the tests compare the two, outputs and
gradients, to 1e-4):

* Activations stay channels_last (NHWC in memory) from the input to the output, so the channel LayerNorm is a plain
  ``F.layer_norm`` over the contiguous last dimension of an NHWC view and the convolutions run on oneDNN's NHWC kernels.
* MDTA never materialises the normalised q/k nor the attention output: the Gram matrix ``q k^T`` is divided by the
  outer product of the norms, and the per-head softmax matrix is folded into the ``project_out`` weight, so
  ``softmax(...) @ v`` and ``project_out`` are one GEMM that writes NHWC directly.
* GDFN computes the gate and value halves with the two halves of its weights, so GELU and the product run on
  contiguous tensors (GELU over a strided channel half is ~10x slower on CPU).

Precision: a network cast to bfloat16 (``net.to(torch.bfloat16)``, see :func:`restormer_arch.perf.prepare_inference`)
runs its convolutions, matmuls and elementwise work in bf16, while the attention norms and softmax and the global
residual stay in fp32; inputs and outputs keep the caller's dtype.

Training memory: in fp32 the default (``memory='full'``) stores less than plain autograd of the same ops, recomputing
nothing costly: GDFN's gate and projection (:class:`_GatedProjection`) and MDTA's Gram matrix (:class:`_Gram`) are
autograd functions that keep only their inputs, and up to 96 channels each norm's scale and shift are folded into the
next 1x1 convolutions so that only the normalised values are kept (:meth:`ChannelLayerNorm.normalized`).
``memory='lean'`` (selective recompute, see :func:`_lean_policy`) keeps, per transformer block, only
what is expensive to recompute - the outputs of the 1x1 convolutions and the small Gram/fused matrices - and recomputes
the LayerNorms, depthwise convolutions, norms, softmax, GELU, gate product and residual sums from them in the backward
pass; the gradients are those of the full graph. ``use_checkpoint`` recomputes every transformer block whole
(activation checkpointing), the smallest memory at about one extra forward.

Attribute names (``patch_embed.proj``, ``down1_2.body.0``, ``norm1.body``, ``attn.qkv_dwconv`` ...) are those of the
official implementation so that its released checkpoints load with ``strict=True``.
"""
import functools
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

__all__ = ['Restormer', 'TransformerBlock', 'MDTA', 'GDFN', 'ChannelLayerNorm']

LAYER_NORM_TYPES = ('WithBias', 'BiasFree')
# Training memory modes: 'full' recomputes nothing costly (module docstring), 'lean' recomputes the cheap ops too.
MEMORY_MODES = ('full', 'lean')
# Three pixel-unshuffle(2) steps: the spatial size must be divisible by 2**3.
SIZE_MULTIPLE = 8
# GDFN hidden channels are padded to a multiple of this (16 fp32 lanes of an AVX-512 register).
_CHANNEL_ALIGN = 16
# Norms are folded into the next convolutions up to this width: deeper, the fold's weight-sized work (~8 C^2 per block)
# outweighs the small activations (measured slower). A width rule keeps memory linear in batch x pixels (planner's fit).
_FOLD_MAX_CHANNELS = 96



@ARCH_REGISTRY.register()
class Restormer(nn.Module):
    """Restormer image restoration network.

    Constructor arguments keep the official names and defaults, so official option files and checkpoints work as-is.

    Args:
        inp_channels: Input image channels (3 for RGB, 1 for gray, 6 for the dual-pixel left+right views).
        out_channels: Output image channels.
        dim: Channels of the first level; level ``i`` has ``dim * 2**i``.
        num_blocks: Transformer blocks at encoder levels 1-3 and the latent level (the decoder mirrors 1-3).
        num_refinement_blocks: Transformer blocks of the full-resolution refinement stage.
        heads: Attention heads per level.
        ffn_expansion_factor: GDFN expansion factor.
        bias: Bias in the convolutions of the blocks, the channel reductions and the output (never in the patch
            embedding or the up/down-sampling convolutions).
        LayerNorm_type: ``'WithBias'`` or ``'BiasFree'`` (the released denoising models use ``'BiasFree'``).
        dual_pixel_task: Dual-pixel defocus deblurring: the input holds both views (``inp_channels=6``), a 1x1 skip
            from the patch embedding replaces the image residual.
        use_checkpoint: Activation checkpointing per transformer block when training (less memory for large patches,
            about one extra forward of compute). Not part of the weights: checkpoints load either way. Can be changed
            later with :meth:`set_checkpointing`.
        memory: ``'full'`` or ``'lean'`` (selective recompute: the blocks keep only their 1x1 convolution outputs for
            the backward pass, ~0.55x the activations of ``'full'``, exact gradients, ~1.3x the step time on CPU; see
            docs/performance.md). Training only; inference, weights and ONNX export are the same either way.
            ``use_checkpoint`` takes precedence.
    """

    def __init__(self,
                 inp_channels: int = 3,
                 out_channels: int = 3,
                 dim: int = 48,
                 num_blocks: Sequence[int] = (4, 6, 6, 8),
                 num_refinement_blocks: int = 4,
                 heads: Sequence[int] = (1, 2, 4, 8),
                 ffn_expansion_factor: float = 2.66,
                 bias: bool = False,
                 LayerNorm_type: str = 'WithBias',  # noqa: N803 (official argument name)
                 dual_pixel_task: bool = False,
                 use_checkpoint: bool = False,
                 memory: str = 'full') -> None:
        super().__init__()
        if memory not in MEMORY_MODES:
            raise ValueError(f'Restormer: memory must be one of {list(MEMORY_MODES)}, got {memory!r}.')
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError(f'Restormer: num_blocks and heads need 4 entries (levels 1-3 and latent), '
                             f'got num_blocks={list(num_blocks)}, heads={list(heads)}.')
        if not dual_pixel_task and inp_channels != out_channels:
            raise ValueError(f'Restormer: the global residual needs inp_channels == out_channels, got {inp_channels} '
                             f'and {out_channels}. Set dual_pixel_task: true for the 6-channel dual-pixel model.')
        self.inp_channels = inp_channels
        self.out_channels = out_channels
        self.dual_pixel_task = dual_pixel_task

        def stage(n: int, channels: int, num_heads: int) -> nn.Sequential:
            return nn.Sequential(*[TransformerBlock(channels, num_heads, ffn_expansion_factor, bias, LayerNorm_type,
                                                    use_checkpoint, memory) for _ in range(n)])

        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)

        self.encoder_level1 = stage(num_blocks[0], dim, heads[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = stage(num_blocks[1], dim * 2, heads[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = stage(num_blocks[2], dim * 4, heads[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(num_blocks[3], dim * 8, heads[3])

        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = stage(num_blocks[2], dim * 4, heads[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = stage(num_blocks[1], dim * 2, heads[1])
        # Level 1 keeps the concatenated 2*dim channels (no reduction) for the decoder and the refinement.
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = stage(num_blocks[0], dim * 2, heads[0])
        self.refinement = stage(num_refinement_blocks, dim * 2, heads[0])

        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.output = nn.Conv2d(dim * 2, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, inp_img: Tensor) -> Tensor:
        """Restore a batch of images of any size.

        Args:
            inp_img: ``(N, inp_channels, H, W)`` tensor, values nominally in [0, 1].

        Returns:
            ``(N, out_channels, H, W)`` restored images (not clamped), a contiguous NCHW tensor whatever the
            internal memory format: BasicSR's discriminators and losses call ``.view`` on it.
        """
        if inp_img.dim() != 4 or inp_img.shape[1] != self.inp_channels:
            raise ValueError(f'Restormer expects an (N, {self.inp_channels}, H, W) input, got shape '
                             f'{tuple(inp_img.shape)}. Set network_g.inp_channels to match your data '
                             '(3 for RGB, 1 for gray, 6 for dual-pixel).')
        h, w = inp_img.shape[-2:]
        out = self.forward_features(pad_to_multiple(inp_img))
        return out[..., :h, :w].contiguous()

    def set_checkpointing(self, enabled: bool) -> None:
        """Turn activation checkpointing of every transformer block on or off.

        Args:
            enabled: Recompute blocks in the backward pass when True.
        """
        for module in self.modules():
            if isinstance(module, TransformerBlock):
                module.use_checkpoint = enabled

    def forward_features(self, inp_img: Tensor) -> Tensor:
        """Run the U-Net on an input whose height and width are already multiples of 8."""
        # channels_last from the first layer on: every later op keeps NHWC memory (see the module docstring). The body
        # runs in the weights' dtype; the global residual is added in the input's dtype (fp32 for a bf16 network).
        inp_img = inp_img.contiguous(memory_format=torch.channels_last)
        inp_enc_level1 = self.patch_embed(inp_img.to(self.patch_embed.proj.weight.dtype))
        out_enc_level1 = self.encoder_level1(inp_enc_level1)
        out_enc_level2 = self.encoder_level2(self.down1_2(out_enc_level1))
        out_enc_level3 = self.encoder_level3(self.down2_3(out_enc_level2))
        latent = self.latent(self.down3_4(out_enc_level3))

        dec_level3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), out_enc_level3], dim=1))
        dec_level3 = self.decoder_level3(dec_level3)
        dec_level2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec_level3), out_enc_level2], dim=1))
        dec_level2 = self.decoder_level2(dec_level2)
        dec_level1 = self.decoder_level1(torch.cat([self.up2_1(dec_level2), out_enc_level1], dim=1))
        features = self.refinement(dec_level1)

        if self.dual_pixel_task:
            return self.output(features + self.skip_conv(inp_enc_level1)).to(inp_img.dtype)
        return self.output(features).to(inp_img.dtype) + inp_img


def pad_to_multiple(x: Tensor, multiple: int = SIZE_MULTIPLE) -> Tensor:
    """Pad the bottom/right of an ``(N, C, H, W)`` tensor so that H and W are multiples of ``multiple``.

    Reflect padding is used (as the official test scripts do); images too small to reflect fall back to replicate.

    Args:
        x: Input tensor.
        multiple: Target multiple of the spatial size.

    Returns:
        The padded tensor (``x`` itself when no padding is needed).
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class TransformerBlock(nn.Module):
    """Restormer transformer block: ``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``.

    Args:
        dim: Number of channels.
        num_heads: Attention heads of the MDTA.
        ffn_expansion_factor: GDFN expansion factor.
        bias: Whether the convolutions have a bias.
        LayerNorm_type: ``'WithBias'`` or ``'BiasFree'`` (official argument name, kept for YAML compatibility).
        use_checkpoint: Recompute the block in the backward pass instead of storing its activations (training only).
        memory: ``'lean'`` or ``'full'`` (see :class:`Restormer`).
    """

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool,
                 LayerNorm_type: str, use_checkpoint: bool = False,  # noqa: N803 (official argument name)
                 memory: str = 'full') -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, LayerNorm_type)
        self.attn = MDTA(dim, num_heads, bias)
        self.norm2 = ChannelLayerNorm(dim, LayerNorm_type)
        self.ffn = GDFN(dim, ffn_expansion_factor, bias)
        self.use_checkpoint = use_checkpoint
        self.memory = memory

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and not torch.jit.is_tracing():
            # Non-reentrant checkpointing: exact gradients, works with inputs that do not require grad, and keeps the
            # RNG state (the block has no randomness anyway). 'lean' is the same mechanism with a policy that keeps
            # the expensive intermediates instead of recomputing them.
            if self.use_checkpoint:
                return checkpoint(self._forward, x, use_reentrant=False)
            if self.memory == 'lean':
                return checkpoint(self._forward, x, use_reentrant=False, context_fn=_LEAN_CONTEXTS)
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        if _custom_backward(x) and not torch.compiler.is_compiling() and x.shape[1] <= _FOLD_MAX_CHANNELS:
            x = x + self.attn(*self.norm1.normalized(x))
            return x + self.ffn(*self.norm2.normalized(x))
        if torch.is_grad_enabled():
            x = x + self.attn(self.norm1(x))
            return x + self.ffn(self.norm2(x))
        # Inference: add the residual into the branch output, a fresh tensor, instead of allocating a third one.
        x = _add_residual(self.attn(self.norm1(x)), x)
        return _add_residual(self.ffn(self.norm2(x)), x)


def _custom_backward(x: Tensor) -> bool:
    """Whether the memory-lean autograd functions run: fp32 training, not traced (under bf16 autocast they kept ~20%
    less but cost ~5% step time on CPU, measured: autocast keeps autograd's own ops)."""
    return torch.is_grad_enabled() and not torch.jit.is_tracing() and not torch.is_autocast_enabled(x.device.type)


def _lean_policy(ctx, op, *args, **kwargs) -> CheckpointPolicy:  # noqa: ARG001 (the checkpoint API's signature)
    """Which intermediates of a block a lean training step keeps (the rest is recomputed in the backward pass).

    Kept: the outputs of the 1x1 convolutions (qkv, the folded MDTA projection, GDFN's project_in and project_out: each
    costs a GEMM to recompute) and of the matrix products (the Gram and folded matrices, C/heads wide). Recomputed:
    LayerNorms, depthwise convolutions, pixel norms, softmax, GELU, the gate product, slices, casts and residual sums.
    The ops are aten's, so the same rule holds eagerly, under autocast and in torch.compile's traced graph.
    """
    if op in (torch.ops.aten.bmm.default, torch.ops.aten.mm.default):
        return CheckpointPolicy.MUST_SAVE
    groups_and_kernel = (args[8], tuple(args[1].shape[2:])) if op is torch.ops.aten.convolution.default else None
    if groups_and_kernel == (1, (1, 1)):
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


_LEAN_CONTEXTS = functools.partial(create_selective_checkpoint_contexts, _lean_policy)


def _add_residual(branch: Tensor, x: Tensor) -> Tensor:
    """``x + branch``, written into ``branch`` when that loses nothing (same dtype and shape; under autocast the branch
    is bf16 while the residual stream stays fp32, and the sum must then be a new fp32 tensor)."""
    if branch.dtype == x.dtype and branch.shape == x.shape:
        return branch.add_(x)
    return x + branch


class MDTA(nn.Module):
    r"""Multi-Dconv head Transposed Attention (paper, Sec. 3.1).

    With ``Q, K, V = W_d W_p LN(X)`` (1x1 convolution ``W_p`` then 3x3 depthwise ``W_d``) reshaped per head to
    ``(C/heads) x HW`` matrices and L2-normalised along the pixels (Q and K only), the block computes::

        Attention(Q, K, V) = softmax(Q K^T * temperature) V        # a (C/heads) x (C/heads) map per head
        MDTA(X) = W_out Attention(Q, K, V)                         # 1x1 convolution project_out

    The learnable temperature is one scalar per head. :meth:`forward_reference` is this formula step by step;
    :meth:`forward` is an equivalent implementation (same parameters, same result to float rounding) that divides the
    Gram matrix by the norms instead of normalising Q and K (in fp16 it normalises first: the raw Gram sum over
    H*W pixels would overflow), folds the softmax map into ``W_out`` and keeps the norms and softmax in fp32 when the
    network runs in bf16/fp16.

    Args:
        dim: Number of channels.
        num_heads: Number of attention heads; must divide ``dim``.
        bias: Whether the convolutions have a bias.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'MDTA: dim={dim} is not divisible by num_heads={num_heads}.')
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward_reference(self, x: Tensor) -> Tensor:
        """The paper's formula, written plainly (the definition that :meth:`forward` is tested against).

        Args:
            x: ``(N, C, H, W)`` normalised features.

        Returns:
            ``(N, C, H, W)`` attention output.
        """
        _, _, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (rearrange(t, 'n (head c) h w -> n head c (h w)', head=self.num_heads) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        out = rearrange(attn @ v, 'n head c (h w) -> n (head c) h w', h=h, w=w)
        return self.project_out(out)

    def forward(self, x: Tensor, affine: Optional[tuple] = None) -> Tensor:
        """Same result as :meth:`forward_reference`, faster (see the class docstring).

        Args:
            x: ``(N, C, H, W)`` normalised features, preferably channels_last (otherwise one copy is made).
            affine: Per-channel ``(scale, shift or None)`` applied to ``x`` first (folded into the qkv weights).

        Returns:
            ``(N, C, H, W)`` attention output, channels_last, in the dtype of ``x`` (or of autocast).
        """
        n, c, h, w = x.shape
        heads, d = self.num_heads, c // self.num_heads
        # q, k and v each from its third of the weights (contiguous channels_last tensors, not strided thirds of one qkv
        # tensor); q and k as (N, H*W, C) views, which the matmuls read without copies.
        pointwise = _fold_affine(self.qkv, affine)
        q, k, v = (_depthwise_branch(x, pointwise, self.qkv_dwconv, part, 3) for part in range(3))
        q, k = (t.permute(0, 2, 3, 1).reshape(n, h * w, c) for t in (q, k))
        # F.normalize divides by max(norm, 1e-12); norms accumulate in fp32 for bf16 inputs.
        q_norm, k_norm = _pixel_norm(q), _pixel_norm(k)
        if q.dtype == torch.float16:
            # The raw Gram sums H*W products and overflows fp16 (max 65504) from ~256x256 on; normalising q and k
            # first, as the formula does, bounds every entry by 1.
            q, k = q / q_norm.unsqueeze(1).to(q.dtype), k / k_norm.unsqueeze(1).to(k.dtype)
            gram = self._gram(q, k, heads).float()
        else:
            gram = self._gram(q, k, heads).float() / (q_norm.reshape(n, heads, d, 1) * k_norm.reshape(n, heads, 1, d))
        attn = (gram * self.temperature.float()).softmax(dim=-1)
        # project_out(attn @ v) == (W_out . blockdiag(attn)) v: per image, one 1x1 convolution of v whose weight is
        # the folded C x C matrix (oneDNN's NHWC convolution is ~3x faster than a BLAS bmm of the same shape here).
        weight = self.project_out.weight.reshape(c, heads, d).float()
        fused = torch.einsum('ohi,nhij->nohj', weight, attn).reshape(n, c, c).to(v.dtype)
        bias = None if self.project_out.bias is None else self.project_out.bias.to(v.dtype)
        if torch.jit.is_tracing():
            # ONNX export traces the graph: a convolution with a computed kernel has no ONNX form, and a loop over the
            # batch would freeze the example's batch size. One batched GEMM instead (same math).
            out = torch.bmm(fused, v.reshape(n, c, h * w)).view(n, c, h, w)
            return out if bias is None else out + bias.view(1, c, 1, 1)
        if n == 1:
            return F.conv2d(v, fused[0, :, :, None, None], bias)
        return torch.cat([F.conv2d(v[b:b + 1], fused[b, :, :, None, None], bias) for b in range(n)])

    @staticmethod
    def _gram(q: Tensor, k: Tensor, heads: int) -> Tensor:
        """Per-head ``q^T k`` of ``(N, P, C)`` views, shape ``(N, heads, C/heads, C/heads)``."""
        n, _, c = q.shape
        q, k = q.unflatten(-1, (heads, c // heads)), k.unflatten(-1, (heads, c // heads))  # (N, P, heads, d)
        if heads == 1:
            # BLAS reads the transposed view directly.
            return torch.bmm(q[:, :, 0].transpose(1, 2), k[:, :, 0]).unsqueeze(1)
        if not torch.is_grad_enabled():
            # Per image, the heads form a strided batch that bmm also reads without copies.
            return torch.stack([
                torch.bmm(q[b].permute(1, 2, 0), k[b].transpose(0, 1)) for b in range(n)
            ])
        # Training: one batched matmul (per-image indexing would zero-fill a full-size gradient per image), whose
        # backward keeps q and k themselves rather than autograd's contiguous per-head copies (2C per pixel less).
        return _Gram.apply(q, k) if _custom_backward(q) else torch.matmul(q.permute(0, 2, 3, 1), k.transpose(1, 2))


class _Gram(torch.autograd.Function):
    """``q^T k`` per head of ``(N, P, heads, d)`` views, keeping only q and k (which the pixel norms keep anyway)."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(q, k)
        return torch.matmul(q.permute(0, 2, 3, 1), k.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:  # noqa: D102
        q, k = (t.transpose(1, 2) for t in ctx.saved_tensors)  # (N, heads, P, d)
        grad = grad.to(q.dtype)
        return (torch.matmul(k, grad.transpose(-1, -2)).transpose(1, 2),
                torch.matmul(q, grad).transpose(1, 2))


class GDFN(nn.Module):
    """Gated-Dconv Feed-forward Network (paper, Sec. 3.2).

    With ``X1, X2`` the two channel halves of ``W_d W_p LN(X)`` (1x1 convolution to ``2 * hidden`` channels, then 3x3
    depthwise)::

        GDFN(X) = W_out (GELU(X1) * X2)

    :meth:`forward_reference` is this formula; :meth:`forward` computes each half with its half of the weights, so
    GELU and the product run on contiguous tensors instead of strided channel halves.

    Args:
        dim: Number of input/output channels.
        ffn_expansion_factor: Hidden width is ``int(dim * ffn_expansion_factor)``.
        bias: Whether the convolutions have a bias.
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward_reference(self, x: Tensor) -> Tensor:
        """The paper's formula, written plainly (the definition that :meth:`forward` is tested against).

        Args:
            x: ``(N, dim, H, W)`` normalised features.

        Returns:
            ``(N, dim, H, W)``.
        """
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)

    def forward(self, x: Tensor, affine: Optional[tuple] = None) -> Tensor:
        """Same result as :meth:`forward_reference`, faster (see the class docstring).

        Args:
            x: ``(N, dim, H, W)`` normalised features.
            affine: Per-channel ``(scale, shift or None)`` applied to ``x`` first (folded into project_in's weights).

        Returns:
            ``(N, dim, H, W)``.
        """
        hidden = self.project_out.in_channels
        # Hidden widths such as 127 or 255 (dim * 2.66) are padded to a multiple of 16 with zero channels: oneDNN's
        # vector kernels then run without remainder loops (1x1 ~10%, depthwise ~30-40% faster at these widths); a zero
        # channel gives GELU(0) * 0 = 0 and meets a zero column of project_out, so the result is unchanged.
        padded = -(-hidden // _CHANNEL_ALIGN) * _CHANNEL_ALIGN
        if torch.jit.is_tracing():
            # ONNX export: a padded (computed) kernel has no static shape there, and the padding is a oneDNN tuning.
            padded = hidden
        pointwise = _fold_affine(self.project_in, affine)
        gate, value = (_depthwise_branch(x, pointwise, self.dwconv, part, 2, padded) for part in range(2))
        weight = self.project_out.weight
        if padded != hidden:
            weight = F.pad(weight, (0, 0, 0, 0, 0, padded - hidden))
        if _custom_backward(gate):
            return _GatedProjection.apply(gate, value, weight, self.project_out.bias)
        # In place when no autograd graph is recorded (saves one full-size buffer per block).
        return F.conv2d(F.gelu(gate).mul_(value), weight, self.project_out.bias)


class _GatedProjection(torch.autograd.Function):
    """``conv1x1(GELU(gate) * value)`` keeping only gate and value (autograd would also keep ``GELU(gate)`` and the
    product, 2 x hidden channels per pixel; the backward recomputes both, two elementwise passes). Runs in the dtype of
    ``gate``; gradients come back in the parameters' dtypes."""

    @staticmethod
    def forward(ctx, gate: Tensor, value: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:  # noqa: D102
        ctx.save_for_backward(gate, value, weight)
        ctx.bias_dtype = None if bias is None else bias.dtype
        bias = None if bias is None else bias.to(gate.dtype)
        return F.conv2d(F.gelu(gate).mul_(value), weight.to(gate.dtype), bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:  # noqa: D102
        gate, value, weight = ctx.saved_tensors
        gelu = F.gelu(gate)
        has_bias = ctx.bias_dtype is not None
        grad_gated, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad.to(gate.dtype), gelu * value, weight.to(gate.dtype), [weight.shape[0]] if has_bias else None,
            [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, has_bias])
        return (torch.ops.aten.gelu_backward(grad_gated * value, gate), grad_gated.mul_(gelu),
                grad_weight.to(weight.dtype), None if grad_bias is None else grad_bias.to(ctx.bias_dtype))


def _pixel_norm(x: Tensor) -> Tensor:
    """``max(||x||_2, 1e-12)`` over dim 1 of an ``(N, P, C)`` tensor, as fp32 ``(N, C)`` (the F.normalize divisor).

    A sum of squares over the pixels: ~3x faster than ``torch.linalg.vector_norm`` over this strided dimension. The
    clamp comes before the square root so that an all-zero channel gets a zero gradient rather than 0 * inf.
    """
    return x.float().square().sum(dim=1).clamp_min(1e-24).sqrt()


def _fold_affine(conv: nn.Conv2d, affine: Optional[tuple]) -> tuple:
    """``(weight, bias)`` of a 1x1 ``conv`` applied to ``x * scale + shift``: ``(W * scale) x + (W shift + b)``."""
    weight, bias = conv.weight, conv.bias
    if affine is None:
        return weight, bias
    scale, shift = affine
    if shift is not None:
        folded = weight.flatten(1) @ shift
        bias = folded if bias is None else bias + folded
    return weight * scale.view(1, -1, 1, 1), bias


def _depthwise_branch(x: Tensor, pointwise: tuple, depthwise: nn.Conv2d, part: int, parts: int,
                      padded: Optional[int] = None) -> Tensor:
    """Channel block ``part`` of ``parts`` of ``depthwise(pointwise(x))``, computed with that block of the weights.

    Equal to slicing the full output (the depthwise convolution mixes no channels), but the result is a contiguous
    tensor rather than a strided view, which elementwise kernels and bf16 matmuls process much faster. With ``padded``
    the block is zero-padded to that many channels (zero weights and biases, so the extra channels are exactly 0).
    ``pointwise`` is the 1x1 convolution's ``(weight, bias or None)`` (see :func:`_fold_affine`).
    """
    size = pointwise[0].shape[0] // parts
    block = slice(part * size, (part + 1) * size)
    extra = 0 if padded is None else padded - size

    def pad(t: Optional[Tensor]) -> Optional[Tensor]:
        if t is None or extra == 0:
            return t
        return F.pad(t, (0, 0) * (t.dim() - 1) + (0, extra))

    def bias(b: Optional[Tensor]) -> Optional[Tensor]:
        return None if b is None else pad(b[block])

    y = F.conv2d(x, pad(pointwise[0][block]), bias(pointwise[1]))
    return F.conv2d(y, pad(depthwise.weight[block]), bias(depthwise.bias), padding=1, groups=size + extra)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel dimension of every pixel of an ``(N, C, H, W)`` tensor.

    Args:
        num_channels: Number of channels ``C``.
        layer_norm_type: ``'WithBias'`` (mean-centred, with bias) or ``'BiasFree'`` (scale only, no mean subtraction).
    """

    def __init__(self, num_channels: int, layer_norm_type: str = 'WithBias') -> None:
        super().__init__()
        if layer_norm_type not in LAYER_NORM_TYPES:
            raise ValueError(f'LayerNorm_type must be one of {LAYER_NORM_TYPES}, got {layer_norm_type!r}. '
                             "Use 'BiasFree' for the denoising checkpoints and 'WithBias' for the others.")
        self.body = _BiasFreeNorm(num_channels) if layer_norm_type == 'BiasFree' else _WithBiasNorm(num_channels)

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling():
            # Under torch.compile the same formula over dim 1: inductor fuses it into one kernel that writes a proper
            # channels_last buffer. The permuted view below would reach the next convolutions with a stride-0 batch
            # dimension, which ATen does not recognise as channels_last: it copies to NCHW and convolves ~4x slower.
            return self.body.over_channels(x)
        # For a channels_last x the NHWC view is contiguous: the norm reduces over contiguous memory and its output,
        # viewed back as NCHW, is channels_last again. No copy either way.
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def normalized(self, x: Tensor) -> tuple:
        """The training form: ``(x_hat, (weight, bias or None))`` with ``forward(x) == x_hat * weight + bias``.

        The caller folds the scale and shift into its 1x1 convolutions: a training step keeps ``x_hat`` (which they
        keep anyway) and a per-pixel ``rstd``, not the norm's input and output (C channels per pixel less).

        Args:
            x: ``(N, C, H, W)``, preferably channels_last.

        Returns:
            ``x_hat`` ``(N, C, H, W)`` (channels_last for a channels_last ``x``) and the ``(C,)`` parameters.
        """
        body = self.body
        centred = isinstance(body, _WithBiasNorm)
        x_hat = _Normalize.apply(x.permute(0, 2, 3, 1), centred, body.eps).permute(0, 3, 1, 2)
        return x_hat, (body.weight, body.bias if centred else None)


class _Normalize(torch.autograd.Function):
    """``(x - mean) * rstd`` (centred) or ``x * rstd`` (BiasFree) over the last dim, keeping only output and rstd."""

    @staticmethod
    def forward(ctx, x: Tensor, centred: bool, eps: float) -> Tensor:  # noqa: D102
        if centred:
            out, _, rstd = torch.native_layer_norm(x, x.shape[-1:], None, None, eps)
        else:
            rstd = torch.rsqrt(x.var(dim=-1, keepdim=True, unbiased=False) + eps)
            out = x * rstd
        ctx.centred, ctx.dtype = centred, x.dtype
        ctx.save_for_backward(out, rstd)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:  # noqa: D102
        out, rstd = ctx.saved_tensors
        out, grad = out.to(rstd.dtype), grad.to(rstd.dtype)
        if ctx.centred:
            # aten's fused LayerNorm backward of out with mean 0, rstd 1: grad - mean(grad) - out * mean(grad * out).
            grad = torch.ops.aten.native_layer_norm_backward(
                grad, out, out.shape[-1:], torch.zeros_like(rstd), torch.ones_like(rstd), None, None,
                [True, False, False])[0]
        else:
            # d(x * rstd)/dx with the variance centred: grad - (out - mean(out)) * mean(grad * out).
            grad = grad - (out - out.mean(-1, keepdim=True)) * (grad * out).mean(-1, keepdim=True)
        return (grad * rstd).to(ctx.dtype), None, None


class _BiasFreeNorm(nn.Module):
    """Scale-only normalisation over the last dimension: ``x / sqrt(var(x) + eps) * weight``.

    Unlike a standard LayerNorm, the numerator is *not* mean-centred (the variance is). This is the official
    definition and the released denoising checkpoints depend on it.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        variance = x.var(dim=-1, keepdim=True, unbiased=False)
        return x * torch.rsqrt(variance + self.eps) * self.weight

    def over_channels(self, x: Tensor) -> Tensor:
        """The same normalisation over dim 1 of an ``(N, C, H, W)`` tensor."""
        variance = x.var(dim=1, keepdim=True, unbiased=False)
        return x * torch.rsqrt(variance + self.eps) * self.weight[:, None, None]


class _WithBiasNorm(nn.Module):
    """Standard LayerNorm over the last dimension: ``(x - mean) / sqrt(var + eps) * weight + bias``."""

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)

    def over_channels(self, x: Tensor) -> Tensor:
        """The same normalisation over dim 1 of an ``(N, C, H, W)`` tensor."""
        mean = x.mean(dim=1, keepdim=True)
        variance = (x - mean).square().mean(dim=1, keepdim=True)
        return (x - mean) * torch.rsqrt(variance + self.eps) * self.weight[:, None, None] + self.bias[:, None, None]


class OverlapPatchEmbed(nn.Module):
    """3x3 convolution from image channels to features (never has a bias, as in the official model)."""

    def __init__(self, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halve the resolution, double the channels: 3x3 conv to C/2, then pixel-unshuffle(2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution, halve the channels: 3x3 conv to 2C, then pixel-shuffle(2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * 2, kernel_size=3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)
