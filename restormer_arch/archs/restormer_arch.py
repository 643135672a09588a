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
  ``F.layer_norm`` over the contiguous last dimension of an NHWC view, the 1x1 convolutions are GEMMs over that view
  (:func:`_pointwise`) and the others run on oneDNN's NHWC kernels.
* MDTA never materialises the normalised q/k nor the attention output: the Gram matrix ``q k^T`` is divided by the
  outer product of the norms, and the per-head softmax matrix is folded into the ``project_out`` weight, so
  ``softmax(...) @ v`` and ``project_out`` are one GEMM that writes NHWC directly.
* GDFN computes the gate and value halves with the two halves of its weights, so GELU and the product run on
  contiguous tensors (GELU over a strided channel half is ~10x slower on CPU).

Precision: a network cast to bfloat16 (``net.to(torch.bfloat16)``, see :func:`restormer_arch.perf.prepare_inference`)
runs its convolutions, matmuls and elementwise work in bf16, while the attention norms and softmax and the global
residual stay in fp32; inputs and outputs keep the caller's dtype.

Training memory: MDTA and GDFN after their 1x1 input convolutions are autograd functions with hand-written backward
passes (:class:`_Attention`, :class:`_GatedFeedForward`) that keep only the 1x1 convolutions' outputs and small
matrices (and, with ``memory='full'``, the depthwise convolutions' outputs too), and up to 96 channels each norm's scale
and shift are folded into the next 1x1 convolutions so that only the normalised values are kept
(:meth:`ChannelLayerNorm.normalized`). The default ``memory='lean'`` recomputes the depthwise convolutions, GELU and
the gate product in the backward pass; the 1x1 convolutions run there as GEMMs over the NHWC view, which pays for it
on CPU. Gradients equal the plain math's either way. ``use_checkpoint`` recomputes every transformer block whole
(activation checkpointing), the smallest memory at about one extra forward.

Attribute names (``patch_embed.proj``, ``down1_2.body.0``, ``norm1.body``, ``attn.qkv_dwconv`` ...) are those of the
official implementation so that its released checkpoints load with ``strict=True``.
"""
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ['Restormer', 'TransformerBlock', 'MDTA', 'GDFN', 'ChannelLayerNorm']

LAYER_NORM_TYPES = ('WithBias', 'BiasFree')
# Training memory modes (module docstring): 'lean' recomputes the depthwise convolutions, 'full' keeps their outputs.
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
        memory: ``'lean'`` (the blocks keep their 1x1 convolutions' outputs for the backward pass and recompute the
            depthwise convolutions: ~0.56x the activations of ``'full'``, exact gradients) or ``'full'`` (keeps the
            depthwise outputs too, ~7% faster steps on CPU; see docs/performance.md). Training only; inference, weights
            and ONNX export are the same either way. ``use_checkpoint`` takes precedence.
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
                 memory: str = 'lean') -> None:
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

        # 3x3 convolution from image channels to features, never with a bias (as in the official model, named proj).
        self.patch_embed = nn.Sequential(OrderedDict(proj=nn.Conv2d(inp_channels, dim, 3, padding=1, bias=False)))

        self.encoder_level1 = stage(num_blocks[0], dim, heads[0])
        self.down1_2 = _Resample(dim, down=True)
        self.encoder_level2 = stage(num_blocks[1], dim * 2, heads[1])
        self.down2_3 = _Resample(dim * 2, down=True)
        self.encoder_level3 = stage(num_blocks[2], dim * 4, heads[2])
        self.down3_4 = _Resample(dim * 4, down=True)
        self.latent = stage(num_blocks[3], dim * 8, heads[3])

        self.up4_3 = _Resample(dim * 8, down=False)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = stage(num_blocks[2], dim * 4, heads[2])
        self.up3_2 = _Resample(dim * 4, down=False)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = stage(num_blocks[1], dim * 2, heads[1])
        # Level 1 keeps the concatenated 2*dim channels (no reduction) for the decoder and the refinement.
        self.up2_1 = _Resample(dim * 2, down=False)
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
                 memory: str = 'lean') -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim, LayerNorm_type)
        self.attn = MDTA(dim, num_heads, bias)
        self.norm2 = ChannelLayerNorm(dim, LayerNorm_type)
        self.ffn = GDFN(dim, ffn_expansion_factor, bias)
        self.use_checkpoint = use_checkpoint
        self.memory = memory

    def forward(self, x: Tensor) -> Tensor:
        if self.use_checkpoint and torch.is_grad_enabled() and not torch.jit.is_tracing():
            # Non-reentrant checkpointing: exact gradients, works with inputs that do not require grad, and keeps the
            # RNG state (the block has no randomness anyway).
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        # The hand-written backward functions run in training, neither traced (ONNX export) nor compiled (inductor
        # plans its own recomputation), and under autocast only for 'lean' (for 'full' they kept ~20% less there but
        # cost ~5% step time on CPU, measured: bf16 'full' keeps autograd's own ops). lean=None: plain operations.
        custom = torch.is_grad_enabled() and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
        autocast = custom and torch.is_autocast_enabled(x.device.type)  # (the meta device has no autocast state)
        lean = self.memory == 'lean' if custom and (self.memory == 'lean' or not autocast) else None
        fold = lean is not None and x.shape[1] <= _FOLD_MAX_CHANNELS and not autocast
        for norm, branch in ((self.norm1, self.attn), (self.norm2, self.ffn)):
            out = branch(*(norm.normalized(x) if fold else (norm(x),)), lean=lean)
            # Inference: the residual goes into the branch output, a fresh tensor, instead of a third one (unless
            # autocast made the branch bf16 while the residual stream stays fp32: the sum is then a new fp32 tensor).
            x = x + out if torch.is_grad_enabled() or out.dtype != x.dtype else out.add_(x)
        return x


class MDTA(nn.Module):
    r"""Multi-Dconv head Transposed Attention (paper, Sec. 3.1).

    With ``Q, K, V = W_d W_p LN(X)`` (1x1 convolution ``W_p`` then 3x3 depthwise ``W_d``) reshaped per head to
    ``(C/heads) x HW`` matrices and L2-normalised along the pixels (Q and K only), the block computes::

        Attention(Q, K, V) = softmax(Q K^T * temperature) V        # a (C/heads) x (C/heads) map per head
        MDTA(X) = W_out Attention(Q, K, V)                         # 1x1 convolution project_out

    The learnable temperature is one scalar per head. :meth:`forward_reference` is this formula step by step;
    :meth:`forward` is an equivalent implementation (same parameters, same result to float rounding) that divides the
    Gram matrix by the norms instead of normalising Q and K (in fp16 the Gram is summed in fp32: over H*W pixels it
    would overflow), folds the softmax map into ``W_out`` and keeps the norms and softmax in fp32 when the network
    runs in bf16/fp16.

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

    def forward(self, x: Tensor, affine: Optional[tuple] = None, lean: Optional[bool] = None) -> Tensor:
        """Same result as :meth:`forward_reference`, faster (see the class docstring).

        Args:
            x: ``(N, C, H, W)`` normalised features, preferably channels_last (otherwise one copy is made).
            affine: Per-channel ``(scale, shift or None)`` applied to ``x`` first (folded into the qkv weights).
            lean: None: autograd records the operations; False / True: the hand-written backward of
                :class:`_Attention`, True recomputing the depthwise convolutions rather than keeping their outputs.

        Returns:
            ``(N, C, H, W)`` attention output, channels_last, in the dtype of ``x`` (or of autocast).
        """
        # q, k and v each from its third of the weights (contiguous channels_last tensors, not strided thirds of one qkv
        # tensor); q and k as (N, H*W, C) views, which the matmuls read without copies.
        pointwise = _fold_affine(self.qkv, affine)
        branches = [t for part in range(3) for t in _pointwise_branch(x, pointwise, self.qkv_dwconv, part, 3)]
        args = (self.num_heads, self.temperature, self.project_out.weight, self.project_out.bias, *branches)
        return _Attention.forward(None, None, *args) if lean is None else _Attention.apply(lean, *args)


def _pixels(x: Tensor) -> Tensor:
    """``(N, C, H, W)`` as ``(N, H*W, C)``: a view of a channels_last tensor."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


def _image(x: Tensor, h: int, w: int) -> Tensor:
    """``(N, H*W, C)`` as a channels_last ``(N, C, H, W)`` view (the inverse of :func:`_pixels`)."""
    return x.view(-1, h, w, x.shape[2]).permute(0, 3, 1, 2)  # the batch as -1: ONNX export keeps it dynamic


def _pointwise(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """A 1x1 convolution of channels_last ``x`` as one GEMM over its ``(N*H*W, C)`` view: on one thread ATen runs 1x1
    convolutions below batch 16 as per-image GEMMs, up to 2x slower forward and 1.4x backward here (measured; never
    faster, fp32 or bf16). Traced (ONNX export) or compiled, a convolution: the graph keeps its ONNX form and inductor
    its convolution kernels."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return F.conv2d(x, weight, bias)
    return _image(F.linear(_pixels(x), weight.flatten(1), bias), *x.shape[2:])


def _gram(q: Tensor, k: Tensor, heads: int) -> Tensor:
    """Per-head ``q^T k`` of ``(N, P, C)`` views, fp32 ``(N, heads, C/heads, C/heads)``.

    fp16 inputs are multiplied in fp32: the raw Gram sums H*W products and overflows fp16 (max 65504) from ~256x256 on.
    """
    if q.dtype == torch.float16:
        with torch.autocast(q.device.type, enabled=False):
            return _gram(q.float(), k.float(), heads)
    n, _, c = q.shape
    q, k = q.unflatten(-1, (heads, c // heads)), k.unflatten(-1, (heads, c // heads))  # (N, P, heads, d)
    if heads == 1:  # BLAS reads the transposed view directly (autograd keeps views, not copies)
        return torch.bmm(q[:, :, 0].transpose(1, 2), k[:, :, 0]).unsqueeze(1).float()
    if not torch.is_grad_enabled():
        # Per image, the heads form a strided batch that bmm reads without copies.
        return torch.stack([torch.bmm(q[b].permute(1, 2, 0), k[b].transpose(0, 1)) for b in range(n)]).float()
    # One batched matmul (per-image indexing would zero-fill a full-size gradient per image).
    return torch.matmul(q.permute(0, 2, 3, 1), k.transpose(1, 2)).float()


def _fused_projection(gram: Tensor, q_sq: Tensor, k_sq: Tensor, temperature: Tensor, weight: Tensor) -> Tensor:
    """``W_out . blockdiag(softmax(q_hat k_hat^T * temperature))`` per image: fp32 ``(N, C, C)``.

    project_out(attn @ v) equals this matrix applied to v's pixels (:func:`_project`). q_hat and k_hat are
    F.normalize'd (divided by ``max(norm, 1e-12)``): the raw Gram ``(N, heads, d, d)`` is divided by the norms, from
    the fp32 sums of squares over the pixels ``(N, C)``, clamped before the square root so that an all-zero channel
    gets a zero gradient rather than 0 * inf.
    """
    _, heads, d, _ = gram.shape  # the batch as -1: ONNX export keeps it dynamic
    q_norm, k_norm = (t.clamp_min(1e-24).sqrt() for t in (q_sq, k_sq))
    attn = (gram / (q_norm.view(-1, heads, d, 1) * k_norm.view(-1, heads, 1, d)) * temperature.float()).softmax(-1)
    return torch.einsum('ohi,nhij->nohj', weight.reshape(heads * d, heads, d).float(), attn).flatten(2)


def _project(v: Tensor, fused: Tensor, bias: Optional[Tensor]) -> Tensor:
    """Per image, v's pixels times its ``(C_out, C)`` matrix of ``fused``: one batched GEMM over the NHWC view, as fast
    as a 1x1 convolution per image or faster (up to 2x for a batch, which the convolutions needed concatenated; fp32
    and bf16, measured), with the same ONNX form for every batch size."""
    pixels, fused = _pixels(v), fused.transpose(1, 2)
    out = torch.bmm(pixels, fused) if bias is None else torch.baddbmm(bias, pixels, fused)
    return _image(out, *v.shape[2:])


class _Attention(torch.autograd.Function):
    """MDTA after its 1x1 qkv convolution (depthwise convolutions, norms, Gram, softmax, folded projection), keeping the
    qkv outputs, the small matrices and, unless ``lean``, the depthwise outputs q, k, v for its backward (autograd
    would keep those and the inputs of every elementwise step). Runs in the dtype of the qkv outputs (autocast's);
    the norms and softmax in fp32, gradients in the parameters' dtypes."""

    @staticmethod
    def forward(ctx, lean: bool, heads: int, temperature: Tensor, weight: Tensor, bias: Optional[Tensor],
                *branches: Optional[Tensor]) -> Tensor:
        """Also the plain form: with ``ctx=None`` the same operations, for autograd (if recording) to differentiate."""
        q, k, v = (_depthwise(*branches[i:i + 3]) for i in (0, 3, 6))
        q2, k2 = _pixels(q), _pixels(k)
        squares = [t.float().square().sum(dim=1) for t in (q2, k2)]
        gram = _gram(q2, k2, heads)
        fused = _fused_projection(gram, *squares, temperature, weight).to(v.dtype)
        if ctx is not None:
            ctx.heads, ctx.has_bias, ctx.dtype = heads, bias is not None, weight.dtype
            ctx.save_for_backward(temperature, weight, gram, *squares, *branches, *(() if lean else (q, k, v)))
        return _project(v, fused, None if bias is None else bias.to(v.dtype))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:  # noqa: D102
        temperature, weight, gram, q_squares, k_squares, *saved = ctx.saved_tensors
        dtype = saved[0].dtype
        branches = [None if t is None else t.to(dtype) for t in saved[:9]]
        q, k, v = saved[9:] or [_depthwise(*branches[i:i + 3]) for i in (0, 3, 6)]
        n, c, h, w = q.shape
        grad = _pixels(grad.to(dtype).contiguous(memory_format=torch.channels_last))  # (N, P, C)
        # The small matrices' part by autograd: fused from the Gram, the sums of squares and the parameters again.
        small = [t.detach().requires_grad_() for t in (gram, q_squares, k_squares, temperature, weight)]
        with torch.enable_grad():
            fused = _fused_projection(*small)
        grad_v = _image(torch.bmm(grad, fused.detach().to(dtype)), h, w)
        grad_gram, grad_q_sq, grad_k_sq, grad_t, grad_w = torch.autograd.grad(
            fused, small, torch.bmm(grad.transpose(1, 2), _pixels(v)).float())
        # Gram backward per head (q gets k grad^T, k gets q grad), plus the sums of squares' 2 x grad.
        q2, k2 = (_pixels(t).unflatten(-1, (ctx.heads, c // ctx.heads)).transpose(1, 2) for t in (q, k))
        grads = [torch.matmul(b, g.to(dtype)).transpose(1, 2).reshape(n, h * w, c).addcmul_(
            _pixels(a), g_sq.to(dtype).unsqueeze(1), value=2).view(n, h, w, c).permute(0, 3, 1, 2)
            for a, b, g, g_sq in ((q, k2, grad_gram.transpose(-1, -2), grad_q_sq), (k, q2, grad_gram, grad_k_sq))]
        grad_bias = grad.float().sum((0, 1)).to(ctx.dtype) if ctx.has_bias else None
        return (None, None, grad_t, grad_w.to(ctx.dtype), grad_bias,
                *_depthwise_grads([*grads, grad_v], branches, ctx.dtype))


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

    def forward(self, x: Tensor, affine: Optional[tuple] = None, lean: Optional[bool] = None) -> Tensor:
        """Same result as :meth:`forward_reference`, faster (see the class docstring).

        Args:
            x: ``(N, dim, H, W)`` normalised features.
            affine: Per-channel ``(scale, shift or None)`` applied to ``x`` first (folded into project_in's weights).
            lean: None: autograd records the operations; False / True: the hand-written backward of
                :class:`_GatedFeedForward`, True recomputing the depthwise convolutions rather than keeping them.

        Returns:
            ``(N, dim, H, W)``.
        """
        hidden = self.project_out.in_channels
        # Hidden widths such as 127 or 255 (dim * 2.66) are padded to a multiple of 16 with zero channels: oneDNN's
        # vector kernels then run without remainder loops (1x1 ~10%, depthwise ~30-40% faster at these widths); a zero
        # channel gives GELU(0) * 0 = 0 and meets a zero column of project_out, so the result is unchanged.
        # Not in ONNX export: a padded (computed) kernel has no static shape there, and the padding is a oneDNN tuning.
        padded = hidden if torch.jit.is_tracing() else -(-hidden // _CHANNEL_ALIGN) * _CHANNEL_ALIGN
        pointwise = _fold_affine(self.project_in, affine)
        branches = [t for part in range(2) for t in _pointwise_branch(x, pointwise, self.dwconv, part, 2, padded)]
        weight = self.project_out.weight
        weight = F.pad(weight, (0, 0, 0, 0, 0, padded - hidden)) if padded != hidden else weight
        args = (weight, self.project_out.bias, *branches)
        return _GatedFeedForward.forward(None, None, *args) if lean is None else _GatedFeedForward.apply(lean, *args)


class _GatedFeedForward(torch.autograd.Function):
    """GDFN after project_in: ``conv1x1(GELU(dw(gate)) * dw(value))``, keeping project_in's outputs and, unless
    ``lean``, the depthwise outputs (autograd would also keep ``GELU(gate)`` and the product, 2 x hidden channels per
    pixel; the backward recomputes both, two elementwise passes). Runs in the dtype of the project_in outputs
    (autocast's); gradients come back in the parameters' dtypes."""

    @staticmethod
    def forward(ctx, lean: bool, weight: Tensor, bias: Optional[Tensor], *branches: Optional[Tensor]) -> Tensor:
        """Also the plain form: with ``ctx=None`` the same operations, for autograd (if recording) to differentiate
        (the product in place: GELU's backward needs its input, not its output; saves a full-size buffer)."""
        gate, value = _depthwise(*branches[:3]), _depthwise(*branches[3:])
        if ctx is not None:
            ctx.has_bias, ctx.dtype = bias is not None, weight.dtype
            ctx.save_for_backward(weight, *branches, *(() if lean else (gate, value)))
        bias = None if bias is None else bias.to(gate.dtype)
        return _pointwise(F.gelu(gate).mul_(value), weight.to(gate.dtype), bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:  # noqa: D102
        weight, *saved = ctx.saved_tensors
        dtype = saved[0].dtype
        branches = [None if t is None else t.to(dtype) for t in saved[:6]]
        gate, value = saved[6:] or (_depthwise(*branches[:3]), _depthwise(*branches[3:]))
        gelu = F.gelu(gate)
        grad = _pixels(grad.to(dtype).contiguous(memory_format=torch.channels_last))  # (N, P, C)
        grad_weight = (grad.flatten(0, 1).t() @ _pixels(gelu * value).flatten(0, 1)).view(weight.shape)
        grad_gated = _image(grad @ weight.to(dtype).flatten(1), *gate.shape[2:])
        grad_gate = torch.ops.aten.gelu_backward(grad_gated * value, gate)
        grad_value = grad_gated.mul_(gelu)
        grad_bias = grad.float().sum((0, 1)).to(ctx.dtype) if ctx.has_bias else None
        return (None, grad_weight.to(ctx.dtype), grad_bias,
                *_depthwise_grads([grad_gate, grad_value], branches, ctx.dtype))


def _depthwise(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """The 3x3 depthwise convolution of x (one channel block of a block's depthwise layer)."""
    return F.conv2d(x, weight, bias, padding=1, groups=x.shape[1])


def _depthwise_grads(grads: list, branches: list, dtype: torch.dtype) -> list:
    """Gradients of :func:`_depthwise` for each ``x, weight, bias`` triple of ``branches`` from its output's in
    ``grads``: ``[grad x, grad weight, grad bias or None]`` per triple, flat (weight's and bias's in ``dtype``)."""
    out = []
    for grad, (x, weight, bias) in zip(grads, zip(*[iter(branches)] * 3)):
        size, has_bias = weight.shape[0], bias is not None
        g = torch.ops.aten.convolution_backward(grad, x, weight, [size] if has_bias else None, [1, 1], [1, 1], [1, 1],
                                                False, [0, 0], size, [True, True, has_bias])
        out += [g[0], g[1].to(dtype), g[2].to(dtype) if has_bias else None]
    return out


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


def _pointwise_branch(x: Tensor, pointwise: tuple, depthwise: nn.Conv2d, part: int, parts: int,
                      padded: Optional[int] = None) -> list:
    """Channel block ``part`` of ``parts`` of ``pointwise(x)``, with that block's depthwise weight and bias.

    Computed with that block of the weights: :func:`_depthwise` of it equals the slice of the full output (the
    depthwise convolution mixes no channels), but as a contiguous tensor rather than a strided view, which elementwise
    kernels and bf16 matmuls process much faster. With ``padded`` the block is zero-padded to that many channels
    (zero weights and biases, so the extra channels are exactly 0). ``pointwise`` is the 1x1 convolution's
    ``(weight, bias or None)`` (see :func:`_fold_affine`), computed by :func:`_pointwise`.

    Returns:
        ``[pointwise output (N, size, H, W), depthwise weight (size, 1, 3, 3), depthwise bias (size,) or None]``.
    """
    size = pointwise[0].shape[0] // parts
    block = slice(part * size, (part + 1) * size)
    extra = 0 if padded is None else padded - size

    def pad(t: Optional[Tensor]) -> Optional[Tensor]:
        if t is None:
            return t
        t = t[block]
        return F.pad(t, (0, 0) * (t.dim() - 1) + (0, extra)) if extra else t

    return [_pointwise(x, pad(pointwise[0]), pad(pointwise[1])), pad(depthwise.weight), pad(depthwise.bias)]


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
        self.body = _Norm(num_channels, centred=layer_norm_type == 'WithBias')

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
        x_hat = _Normalize.apply(x.permute(0, 2, 3, 1), body.bias is not None, body.eps).permute(0, 3, 1, 2)
        return x_hat, (body.weight, body.bias)


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


class _Norm(nn.Module):
    """Normalisation over the last dimension. Centred (``WithBias``), the standard LayerNorm
    ``(x - mean) / sqrt(var + eps) * weight + bias``; otherwise (``BiasFree``) ``x / sqrt(var(x) + eps) * weight``:
    unlike a standard LayerNorm the numerator is *not* mean-centred (the variance is). This is the official
    definition and the released denoising checkpoints depend on it.
    """

    def __init__(self, num_channels: int, centred: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels)) if centred else None
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if self.bias is not None:
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
        return x * torch.rsqrt(x.var(dim=-1, keepdim=True, unbiased=False) + self.eps) * self.weight

    def over_channels(self, x: Tensor) -> Tensor:
        """The same normalisation over dim 1 of an ``(N, C, H, W)`` tensor."""
        centred = x - x.mean(dim=1, keepdim=True)
        rstd = torch.rsqrt(centred.square().mean(dim=1, keepdim=True) + self.eps)
        out = (x if self.bias is None else centred) * rstd * self.weight[:, None, None]
        return out if self.bias is None else out + self.bias[:, None, None]


class _Resample(nn.Module):
    """A 3x3 convolution, then a pixel-unshuffle(2) (``down``: conv to C/2, half the resolution, twice the channels)
    or a pixel-shuffle(2) (conv to 2C, twice the resolution, half the channels)."""

    def __init__(self, channels: int, down: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // 2 if down else channels * 2, kernel_size=3, padding=1, bias=False),
            nn.PixelUnshuffle(2) if down else nn.PixelShuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)
