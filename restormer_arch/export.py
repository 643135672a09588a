"""ONNX export of Restormer checkpoints (``basicsr export``; needs the ``[onnx]`` extra: ``onnx``, ``onnxruntime``).

The exported graph takes ``input`` of shape ``(N, C, H, W)`` (float32, values in [0, 1]) with dynamic N, H and W and
returns ``output`` of the same shape (``(N, 3, H, W)`` for the 6-channel dual-pixel model). The padding to a multiple
of 8 and the crop back run inside the graph, with the same rule as :func:`restormer_arch.archs.restormer_arch.
pad_to_multiple`: reflect at the bottom/right, replicate when the image is too small to reflect.

The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) is used: it keeps the size arithmetic of the
padding symbolic in well under a second, where the ``torch.export`` based exporter took ~20 s and specialised the
padding mode of the example size (wrong results at other sizes; torch 2.14). Library use: docs/export.md.
"""
import argparse
import inspect
import io
import math
import os
import sys
import warnings
from os import path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from restormer_arch.archs.restormer_arch import SIZE_MULTIPLE, Restormer
from restormer_arch.atomic import atomic_write
from restormer_arch.errors import UserError

__all__ = ['DEFAULT_OPSET', 'MIN_OPSET', 'check_opset', 'max_opset', 'PaddedRestormer', 'export_onnx',
           'compare_onnx', 'main']

# Opset 17 is the first with LayerNormalization (one fused op per channel norm in onnxruntime); onnxruntime runs it
# since 1.12 (2022), so the files also work with older deployments than the onnxruntime pinned here.
DEFAULT_OPSET = 17
# Opset 13 is the first in which the exporter can express the channel split of MDTA's heads (aten::unflatten).
MIN_OPSET = 13
DEFAULT_CHECK_SIZES = ((37, 53), (31, 17), (5, 3))
# --check fails above this max |onnxruntime - PyTorch| (float32; the full-size models measure ~1e-6).
CHECK_TOLERANCE = 1e-4
# torch >= 2.5 has both exporters (torch.export-based is the default from 2.9); older ones only TorchScript.
_TORCHSCRIPT_EXPORTER = {'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}


def max_opset() -> int:
    """The newest opset this torch's TorchScript exporter writes (23 for torch 2.14)."""
    try:
        from torch.onnx import _constants
        return int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):  # a private module: fall back to the default rather than guess
        return DEFAULT_OPSET


def check_opset(opset: Any) -> None:
    """Raise :class:`UserError` unless ``opset`` is an integer from :data:`MIN_OPSET` to :func:`max_opset`."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= max_opset():
        raise UserError(f'--opset {opset}: Restormer exports with opsets {MIN_OPSET} to {max_opset()} (this torch); '
                          f'the default {DEFAULT_OPSET} runs on onnxruntime >= 1.12.')


def _pad_indices(size, padded, reflect: Tensor, device: torch.device) -> Tensor:
    """Source row (or column) of every padded position: reflect about the last one, or repeat it."""
    index = torch.arange(padded, device=device)
    reflected = torch.where(index < size, index, 2 * (size - 1) - index)
    return torch.where(reflect, reflected, index.clamp(max=size - 1))


class PaddedRestormer(nn.Module):
    """A Restormer whose padding and crop are tensor operations, so that a traced graph keeps H and W dynamic.

    Same values as ``network(x)``; ``Restormer.forward`` decides the padding with Python ``if``s on the sizes, which
    tracing would freeze at the example size.

    Args:
        network: The Restormer (any configuration).
        pad: False runs ``forward_features`` only (H and W must then be multiples of 8).
    """

    def __init__(self, network: Restormer, pad: bool = True) -> None:
        super().__init__()
        self.network, self.pad = network, pad

    def forward(self, x: Tensor) -> Tensor:
        """Restore ``x`` of shape ``(N, C, H, W)``; returns ``(N, out_channels, H, W)``."""
        if not self.pad:
            return self.network.forward_features(x)
        # Plain ints when run eagerly; while tracing, shape entries are tensors and these lines become graph nodes.
        h, w = x.shape[-2], x.shape[-1]
        pad_h, pad_w = -h % SIZE_MULTIPLE, -w % SIZE_MULTIPLE
        reflect = torch.as_tensor((pad_h < h) & (pad_w < w), device=x.device)  # pad_to_multiple's rule, both axes
        x = x.index_select(2, _pad_indices(h, h + pad_h, reflect, x.device))
        x = x.index_select(3, _pad_indices(w, w + pad_w, reflect, x.device))
        return self.network.forward_features(x)[..., :h, :w]


def export_onnx(network: nn.Module, path: str, opset: int = DEFAULT_OPSET,
                example_size: Tuple[int, int] = (64, 64), pad_in_graph: bool = True) -> str:
    """Write ``network`` as an ONNX model with dynamic batch, height and width (atomically).

    Args:
        network: A :class:`Restormer` (eval mode is set on it). Its device and dtype are used for the example input.
        path: Destination ``.onnx`` file (its folder is created).
        opset: ONNX opset version (default :data:`DEFAULT_OPSET`).
        example_size: ``(H, W)`` of the example input used for tracing; the result does not depend on it.
        pad_in_graph: Pad to a multiple of 8 and crop back inside the graph (any H, W). False exports
            ``forward_features`` only: H and W must then be multiples of 8 (no pad/crop nodes, e.g. for benchmarks).

    Returns:
        ``path``.

    Raises:
        UserError: ``opset`` outside ``MIN_OPSET..max_opset()``, or ``onnx`` is not installed.
    """
    check_opset(opset)
    onnx = _require('onnx')
    network.eval()
    param = next(network.parameters())
    h, w = example_size
    example = torch.rand(2, network.inp_channels, h, w, device=param.device, dtype=param.dtype)
    module = PaddedRestormer(network, pad=pad_in_graph)
    axes = {0: 'batch', 2: 'height', 3: 'width'}
    graph = io.BytesIO()
    # Grad mode selects MDTA's batched Gram matmul; its no-grad path loops over the batch in Python, which tracing
    # would freeze at the example batch size (MDTA and GDFN also switch to ONNX-expressible forms while tracing).
    # Nothing is differentiated.
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer warnings about size arithmetic, the legacy-exporter notice
        torch.onnx.export(module, (example,), graph, opset_version=opset, input_names=['input'],
                          output_names=['output'], dynamic_axes={'input': axes, 'output': axes},
                          do_constant_folding=True, **_TORCHSCRIPT_EXPORTER)
    # torch's TorchScript exporter no longer runs the checker; a graph it rejects is our bug (a traceback).
    onnx.checker.check_model(onnx.load_from_string(graph.getvalue()), full_check=True)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with atomic_write(path, 'wb') as f:
        f.write(graph.getvalue())
    return path


def _require(package: str):
    try:
        return __import__(package)
    except ImportError:
        raise UserError(f'{package} is not installed: pip install "restormer-basicsr[onnx]" '
                          '(onnx and onnxruntime).') from None


def compare_onnx(path: str, network: nn.Module, sizes: Sequence[Tuple[int, int]] = DEFAULT_CHECK_SIZES,
                 batch: int = 1) -> Dict[Tuple[int, int], float]:
    """Run the ONNX file with onnxruntime on the CPU and the network in PyTorch on the same random inputs.

    Args:
        path: An ``.onnx`` file from :func:`export_onnx` (with the padding in the graph).
        network: The network it was exported from (float32).
        sizes: ``(H, W)`` sizes to try (odd sizes exercise the padding).
        batch: Batch size of the inputs.

    Returns:
        ``{(H, W): max |onnxruntime - PyTorch|}``.
    """
    ort = _require('onnxruntime')
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    generator = torch.Generator().manual_seed(0)  # the same inputs (uniform in [0, 1)) every run
    param = next(network.parameters())
    diffs = {}
    for h, w in sizes:
        x = torch.rand(batch, network.inp_channels, h, w, generator=generator)
        with torch.no_grad():
            expected = network.eval()(x.to(device=param.device, dtype=param.dtype)).float().cpu().numpy()
        (got,) = session.run(['output'], {'input': x.numpy()})
        diffs[(h, w)] = float(np.abs(got - expected).max()) if got.shape == expected.shape else math.inf
    return diffs


# ------------------------------------------------------------------------------------------------------------- CLI
def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='basicsr export',
        description='Export a Restormer checkpoint to ONNX (dynamic batch/height/width, padding inside the graph). '
                    'Run the file with onnxruntime: see docs/export.md.')
    parser.add_argument('--weights', required=True,
                        help='checkpoint file, or a released name (e.g. deraining; see basicsr weights)')
    parser.add_argument('-o', '--output', help='the .onnx file (default: the checkpoint name with .onnx, here)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET, help='ONNX opset (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output file (default: refuse)')
    parser.add_argument('--check', action='store_true',
                        help='compare onnxruntime (CPU) with PyTorch on random odd-sized inputs; print max |diff|')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """``basicsr export --weights CKPT [-o FILE.onnx] [--opset N] [--check]``.

    Args:
        argv: Arguments after ``export``.

    Returns:
        Exit code: 0; 1 when ``--check`` finds a difference above :data:`CHECK_TOLERANCE`.

    Raises:
        UserError: An existing output without ``--overwrite``, a bad opset or checkpoint (``basicsr`` prints it as
            one line and exits 2), before anything is written.
    """
    from restormer_arch.restorer import load_restormer
    from restormer_arch.weights import resolve

    args = _build_parser().parse_args(argv)
    output = args.output or f'{osp.splitext(osp.basename(args.weights))[0]}.onnx'
    if osp.exists(output) and not args.overwrite:
        raise UserError(f'{output} exists already; choose another -o or pass --overwrite to replace it.')
    check_opset(args.opset)
    if args.check:
        _require('onnxruntime')
    network = load_restormer(resolve(args.weights))  # the architecture is read from the weights
    export_onnx(network, output, opset=args.opset)
    print(output)
    if args.check:
        diffs = compare_onnx(output, network)
        for (h, w), diff in diffs.items():
            print(f'{h}x{w}: max |onnxruntime - pytorch| = {diff:.3g}')
        if max(diffs.values()) > CHECK_TOLERANCE:
            print(f'basicsr export: onnxruntime differs from PyTorch by more than {CHECK_TOLERANCE}.', file=sys.stderr)
            return 1
    return 0
