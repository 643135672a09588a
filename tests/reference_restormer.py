"""Plain, obviously-correct Restormer written straight from the paper's equations (the *reference math*).

It is deliberately naive: NCHW everywhere, LayerNorm as explicit mean/variance over the channel dimension, MDTA with
explicit L2 normalisation, softmax and a separate projection. Module names equal those of
:class:`restormer_arch.Restormer`, so the same ``state_dict`` loads into both with ``strict=True``.
The tests compare the optimised network against it (outputs and gradients) and ``benchmarks/benchmark.py``
times it as the baseline.
"""
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _NormBody(nn.Module):
    def __init__(self, channels: int, with_bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        if with_bias:
            self.bias = nn.Parameter(torch.zeros(channels))
        self.with_bias = with_bias


class PlainLayerNorm(nn.Module):
    """LayerNorm over C of an NCHW tensor: WithBias ``(x-mu)/sigma*w+b``, BiasFree ``x/sigma*w``."""

    def __init__(self, channels: int, layer_norm_type: str) -> None:
        super().__init__()
        self.body = _NormBody(channels, layer_norm_type != 'BiasFree')

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
        weight = self.body.weight.view(1, -1, 1, 1)
        if self.body.with_bias:
            return (x - mean) / torch.sqrt(var + 1e-5) * weight + self.body.bias.view(1, -1, 1, 1)
        return x / torch.sqrt(var + 1e-5) * weight


class PlainAttention(nn.Module):
    def __init__(self, dim: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x))
        q, k, v = qkv[:, :c], qkv[:, c:2 * c], qkv[:, 2 * c:]
        heads = self.num_heads
        q = q.reshape(n, heads, c // heads, h * w)
        k = k.reshape(n, heads, c // heads, h * w)
        v = v.reshape(n, heads, c // heads, h * w)
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        k = k / k.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.temperature, dim=-1)
        return self.project_out(torch.matmul(attn, v).reshape(n, c, h, w))


class PlainFeedForward(nn.Module):
    def __init__(self, dim: int, factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        t = self.dwconv(self.project_in(x))
        half = t.shape[1] // 2
        return self.project_out(F.gelu(t[:, :half]) * t[:, half:])


class PlainBlock(nn.Module):
    def __init__(self, dim: int, heads: int, factor: float, bias: bool, norm: str) -> None:
        super().__init__()
        self.norm1 = PlainLayerNorm(dim, norm)
        self.attn = PlainAttention(dim, heads, bias)
        self.norm2 = PlainLayerNorm(dim, norm)
        self.ffn = PlainFeedForward(dim, factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class _Proj(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 3, padding=1, bias=False)


class _Resample(nn.Module):
    def __init__(self, cin: int, cout: int, shuffle: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), shuffle)


class PlainRestormer(nn.Module):
    """Reference Restormer (same constructor arguments and state_dict keys as the optimised one)."""

    def __init__(self, inp_channels: int = 3, out_channels: int = 3, dim: int = 48,
                 num_blocks: Sequence[int] = (4, 6, 6, 8), num_refinement_blocks: int = 4,
                 heads: Sequence[int] = (1, 2, 4, 8), ffn_expansion_factor: float = 2.66, bias: bool = False,
                 LayerNorm_type: str = 'WithBias', dual_pixel_task: bool = False) -> None:  # noqa: N803
        super().__init__()

        def stage(n: int, channels: int, h: int) -> nn.Sequential:
            return nn.Sequential(*[PlainBlock(channels, h, ffn_expansion_factor, bias, LayerNorm_type)
                                   for _ in range(n)])

        self.dual_pixel_task = dual_pixel_task
        self.patch_embed = _Proj(inp_channels, dim)
        self.encoder_level1 = stage(num_blocks[0], dim, heads[0])
        self.down1_2 = _Resample(dim, dim // 2, nn.PixelUnshuffle(2))
        self.encoder_level2 = stage(num_blocks[1], dim * 2, heads[1])
        self.down2_3 = _Resample(dim * 2, dim, nn.PixelUnshuffle(2))
        self.encoder_level3 = stage(num_blocks[2], dim * 4, heads[2])
        self.down3_4 = _Resample(dim * 4, dim * 2, nn.PixelUnshuffle(2))
        self.latent = stage(num_blocks[3], dim * 8, heads[3])
        self.up4_3 = _Resample(dim * 8, dim * 16, nn.PixelShuffle(2))
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)
        self.decoder_level3 = stage(num_blocks[2], dim * 4, heads[2])
        self.up3_2 = _Resample(dim * 4, dim * 8, nn.PixelShuffle(2))
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = stage(num_blocks[1], dim * 2, heads[1])
        self.up2_1 = _Resample(dim * 2, dim * 4, nn.PixelShuffle(2))
        self.decoder_level1 = stage(num_blocks[0], dim * 2, heads[0])
        self.refinement = stage(num_refinement_blocks, dim * 2, heads[0])
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, dim * 2, 1, bias=bias)
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Restore ``x`` (N, C, H, W) with H and W multiples of 8 (no padding here, keep it plain)."""
        e1_in = self.patch_embed.proj(x)
        e1 = self.encoder_level1(e1_in)
        e2 = self.encoder_level2(self.down1_2.body(e1))
        e3 = self.encoder_level3(self.down2_3.body(e2))
        lat = self.latent(self.down3_4.body(e3))
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3.body(lat), e3], 1)))
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2.body(d3), e2], 1)))
        d1 = self.decoder_level1(torch.cat([self.up2_1.body(d2), e1], 1))
        features = self.refinement(d1)
        if self.dual_pixel_task:
            return self.output(features + self.skip_conv(e1_in))
        return self.output(features) + x
