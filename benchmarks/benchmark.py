"""Benchmark the fast Restormer against the plain reference math (same weights, same run, interleaved).

Examples::

    python benchmarks/benchmark.py --output benchmarks/results_cpu.md            # all default rows on CPU
    python benchmarks/benchmark.py --device cuda --infer 1x3x512x512 --train 4x3x128x128 --sections infer train
    python benchmarks/benchmark.py --sections memory --memory-sizes 512x512 3840x2160

Sections:
    peers     one table, interleaved in one process, ratios against the plain math in fp32 eager (the official model's
              math): ours fp32 eager / compiled with freezing / bf16 autocast / bf16 network (+ compiled), the plain
              model compiled, and the plain model exported to ONNX Runtime and OpenVINO (fp32, bf16) when those
              packages are installed (``pip install -e .[bench]``); bf16 rows give PSNR against our fp32 output
    infer     forward (eval, inference_mode) per input shape: fast vs plain, interleaved; GFLOP/s (FlopCounterMode)
    train     training step (zero_grad + forward + L1 + backward + AdamW step): plain fp32 (for-loop AdamW) vs ours
              fp32 and bf16 autocast (fused AdamW), memory 'full' and 'lean', fp32 use_checkpoint, interleaved
    trainmem  training step peak memory above the process's baseline (fresh process per row) for the official math
              (fp32) and ours (fp32/bf16, memory full/lean, use_checkpoint): measured at small shapes, fitted as
              a + b * batch * pixels, then measured at each --train-memory shape whose fitted peak is under --max-gib
              (else the fitted value is printed, marked)
    plan      the memory planner: per progressive stage of --plan-options (mini_batch_sizes x gt_sizes, network_g),
              the fitted peak of every trainmem variant and the smallest of 12/24/40/80 GB it fits in
    allocator fast forward in two subprocesses, glibc default (RESTORMER_ALLOCATOR=system) vs configure_allocator()
    e2e       what the ``basicsr`` command does (configure_allocator + fast network) vs the plain math with the default
              environment, each in a fresh subprocess
    memory    peak RSS of a subprocess restoring an image whole vs with :func:`restormer_arch.tiling.tiled_forward`,
              and the tiled/whole time-per-pixel ratio

The machine may be shared: every sample records its CPU share (process CPU time / (threads x wall time)); medians are
reported. Default network: the 26.1M-parameter Restormer with random weights (speed does not depend on the values).
"""
import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from functools import cache
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from restormer_arch.archs.restormer_arch import Restormer  # noqa: E402
from restormer_arch.perf import (  # noqa: E402
    autocast_context,
    compile_for_inference,
    configure_allocator,
    prepare_inference,
)
from restormer_arch.tiling import tile_grid, tiled_forward  # noqa: E402
from tests.reference_restormer import PlainRestormer  # noqa: E402

# Training-memory variants: worker specs (the official math is the plain model with a for-loop AdamW).
MEMORY_VARIANTS = {
    'official math fp32': {'network': 'plain', 'precision': 'fp32'},
    'ours fp32 full': {'precision': 'fp32', 'memory': 'full'},
    'ours fp32 lean': {'precision': 'fp32', 'memory': 'lean'},
    'ours bf16 full': {'precision': 'bf16', 'memory': 'full'},
    'ours bf16 lean': {'precision': 'bf16', 'memory': 'lean'},
    'ours fp32 use_checkpoint': {'precision': 'fp32', 'use_checkpoint': True},
}
CARDS_GB = (12, 24, 40, 80)

Shape = Tuple[int, ...]


def parse_shape(text: str) -> Shape:
    """``'1x3x256x256'`` -> ``(1, 3, 256, 256)``."""
    return tuple(int(v) for v in text.lower().split('x'))


def sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


class Timer:
    """Wall time and CPU share of one sample."""

    def __init__(self, device: str) -> None:
        self.device = device

    def __call__(self, fn: Callable[[], object]) -> Tuple[float, float]:
        sync(self.device)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        fn()
        sync(self.device)
        wall = time.perf_counter() - wall0
        share = (time.process_time() - cpu0) / (torch.get_num_threads() * wall)
        return wall, share


def build_pair(device: str, **kwargs) -> Tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    fast = Restormer(**kwargs)
    plain = PlainRestormer(**kwargs)
    plain.load_state_dict(fast.state_dict(), strict=True)
    return fast.to(device), plain.to(device)


def count_flops(net: nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x)
    return float(counter.get_total_flops())


def matmul_rate(device: str, n: int = 2048, repeats: int = 7) -> float:
    """Measured fp32 GEMM rate (GFLOP/s), the practical ceiling for the 1x1 convolutions."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    timer = Timer(device)
    timer(lambda: a @ b)
    times = [timer(lambda: a @ b)[0] for _ in range(repeats)]
    return 2 * n**3 / statistics.median(times) / 1e9


def interleave(variants: Dict[str, Callable[[], object]], device: str, warmup: int, repeats: int) -> Dict[str, dict]:
    timer = Timer(device)
    for fn in variants.values():
        for _ in range(warmup):
            timer(fn)
    samples: Dict[str, List[Tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            samples[name].append(timer(fn))
    # CPU seconds (process CPU time, all threads) are far less disturbed than wall time when other processes compete
    # for the cores; on a shared machine compare those.
    threads = torch.get_num_threads()
    return {name: {'median_s': statistics.median(t for t, _ in s), 'min_s': min(t for t, _ in s),
                   'cpu_share': statistics.median(c for _, c in s),
                   'cpu_s': statistics.median(t * c * threads for t, c in s)} for name, s in samples.items()}


def peak_cuda_mb(device: str, fn: Callable[[], object]) -> Optional[float]:
    if device != 'cuda':
        return None
    torch.cuda.reset_peak_memory_stats()
    fn()
    return torch.cuda.max_memory_allocated() / 2**20


def bench_infer(shape: Shape, device: str, warmup: int, repeats: int, precision: str) -> dict:
    fast, plain = build_pair(device, inp_channels=shape[1], out_channels=shape[1])
    fast.eval(), plain.eval()
    x = torch.rand(*shape, device=device)
    flops = count_flops(plain, x)

    def run(net: nn.Module) -> Callable[[], object]:
        def fn() -> object:
            with torch.inference_mode(), autocast_context(precision, device):
                return net(x)
        return fn

    result = interleave({'fast': run(fast), 'plain': run(plain)}, device, warmup, repeats)
    for name, net in (('fast', fast), ('plain', plain)):
        result[name]['gflops'] = flops / result[name]['median_s'] / 1e9
        result[name]['peak_cuda_mb'] = peak_cuda_mb(device, run(net))
    result['flops'] = flops
    return result


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of ``a`` against ``b`` for signals in [0, 1]."""
    return float(10 * torch.log10(1.0 / (a.float() - b.float()).square().mean()))


def smooth_image(shape: Shape, device: str) -> torch.Tensor:
    """A smooth test image in [0, 1] (bf16 accuracy is measured on it; speed does not depend on the content)."""
    n, c, h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing='ij')
    planes = [yy, xx, (yy + xx) / 2, 1 - yy, 1 - xx, (2 - yy - xx) / 2][:c]
    return torch.stack(planes)[None].repeat(n, 1, 1, 1).to(device)


def export_onnx(net: nn.Module, x: torch.Tensor, path: str) -> None:
    """The plain model as ONNX (opset 17, fixed shape)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(net, (x,), path, opset_version=17, input_names=['input'], output_names=['output'],
                          dynamo=False)


def peer_variants(shape: Shape, device: str, compile_rows: bool,
                  runtimes: bool) -> Tuple[Dict[str, Callable], Dict[str, str]]:
    """Callables for the peers table (each returns the output) and a note per row (compile time, skipped peers)."""
    fast, plain = build_pair(device, inp_channels=shape[1], out_channels=shape[1])
    fast.eval(), plain.eval()
    x = smooth_image(shape, device)
    fast_bf16 = prepare_inference(copy.deepcopy(fast), 'bf16')
    notes: Dict[str, str] = {}

    def eager(net: nn.Module, precision: str = 'fp32') -> Callable:
        def fn() -> torch.Tensor:
            with torch.inference_mode(), autocast_context(precision, device):
                return net(x)
        return fn

    variants = {'plain fp32 eager (official math)': eager(plain), 'ours fp32 eager': eager(fast),
                'ours bf16 autocast': eager(fast, 'bf16'), 'ours bf16 network (prepare_inference)': eager(fast_bf16)}
    if compile_rows:
        for name, net in (('ours fp32 compiled (freezing)', fast), ('ours bf16 network compiled (freezing)', fast_bf16),
                          ('plain fp32 compiled (freezing)', plain)):
            compiled = compile_for_inference(net)
            start = time.perf_counter()
            eager(compiled)()
            notes[name] = f'first call (compile) {time.perf_counter() - start:.0f} s'
            variants[name] = eager(compiled)
    if device == 'cpu' and runtimes:
        variants.update(runtime_variants(plain, x, notes))
    return variants, notes


def runtime_variants(plain: nn.Module, x: torch.Tensor, notes: Dict[str, str]) -> Dict[str, Callable]:
    """ONNX Runtime and OpenVINO running the exported plain model, when installed."""
    variants: Dict[str, Callable] = {}
    path = os.path.join(tempfile.mkdtemp(prefix='restormer_bench_'), 'plain.onnx')
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
        notes['ONNX Runtime'] = 'not installed (pip install -e .[bench])'
    try:
        import openvino as ov
    except ImportError:
        ov = None
        notes['OpenVINO'] = 'not installed (pip install -e .[bench])'
    if ort is None and ov is None:
        return variants
    export_onnx(plain, x, path)
    feed = x.cpu().numpy()
    if ort is not None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        variants[f'ONNX Runtime {ort.__version__} fp32 (plain export)'] = (
            lambda: torch.from_numpy(session.run(None, {'input': feed})[0]))
    if ov is not None:
        core = ov.Core()
        for hint in ('f32', 'bf16'):
            config = {'INFERENCE_PRECISION_HINT': hint, 'INFERENCE_NUM_THREADS': torch.get_num_threads()}
            try:
                compiled = core.compile_model(path, 'CPU', config)
            except Exception as exc:  # noqa: BLE001 (a runtime without bf16 support is a row note, not a failure)
                notes[f'OpenVINO {hint}'] = f'unavailable: {exc}'[:120]
                continue
            request = compiled.create_infer_request()
            variants[f'OpenVINO {ov.__version__.split("-")[0]} {hint} (plain export)'] = (
                lambda r=request: torch.from_numpy(r.infer({0: feed})[0].copy()))
    return variants


def bench_peers(shape: Shape, device: str, warmup: int, repeats: int, compile_rows: bool,
                runtimes: bool = True) -> Tuple[dict, dict]:
    variants, notes = peer_variants(shape, device, compile_rows, runtimes)
    reference = variants['ours fp32 eager']()
    result = interleave(variants, device, warmup, repeats)
    for name, fn in variants.items():
        result[name]['psnr_vs_fp32'] = psnr(fn(), reference)
    return result, notes


def train_step_fn(net: nn.Module, x: torch.Tensor, target: torch.Tensor, precision: str, device: str,
                  fused: bool) -> Callable[[], object]:
    """One step as ImageCleanModel takes it: zero_grad + forward (autocast) + L1 in fp32 + backward + AdamW."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-6, fused=fused or None)

    def fn() -> object:
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(precision, device):
            out = net(x)
        loss = nn.functional.l1_loss(out.float(), target)
        loss.backward()
        optimizer.step()
        return loss
    return fn


def bench_train(shape: Shape, device: str, warmup: int, repeats: int) -> dict:
    fast, plain = build_pair(device, inp_channels=shape[1], out_channels=shape[1])
    fast = fast.to(memory_format=torch.channels_last)
    x = torch.rand(*shape, device=device)
    target = torch.rand(*shape, device=device)
    variants = {'plain fp32, for-loop AdamW': train_step_fn(plain, x, target, 'fp32', device, fused=False)}
    for precision in ('fp32', 'bf16'):
        for memory in ('full', 'lean'):
            net = copy.deepcopy(fast)
            for block in net.modules():
                if hasattr(block, 'memory'):
                    block.memory = memory
            variants[f'ours {precision} {memory}, fused AdamW'] = train_step_fn(net, x, target, precision, device,
                                                                              fused=True)
    net = copy.deepcopy(fast)
    net.set_checkpointing(True)
    variants['ours fp32 use_checkpoint, fused AdamW'] = train_step_fn(net, x, target, 'fp32', device, fused=True)
    result = interleave(variants, device, warmup, repeats)
    for name, fn in variants.items():
        result[name]['peak_cuda_mb'] = peak_cuda_mb(device, fn)
    return result


# ------------------------------------------------------------------------------------------ subprocesses


def peak_rss_gib() -> float:
    """This process's own peak RSS. ``ru_maxrss`` is not used: Linux carries the parent's value over fork+exec."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 2**20  # kB -> GiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def worker(spec: dict) -> dict:
    """Runs in a fresh process: one network, one job; prints timings and its own peak RSS."""
    if spec.get('configure_allocator'):
        configure_allocator()
    torch.manual_seed(0)
    device = spec['device']
    if spec.get('job') == 'train':
        return train_worker(spec)
    net = (PlainRestormer() if spec['network'] == 'plain' else Restormer()).eval().to(device)
    if spec.get('precision', 'fp32') != 'fp32':
        net = prepare_inference(net, spec['precision'])
    h, w = spec['size']
    x = torch.rand(1, 3, h, w, device=device)
    rss0 = peak_rss_gib()
    times, shares = [], []
    timer = Timer(device)
    for _ in range(spec['runs']):
        if spec.get('tile'):
            fn = lambda: tiled_forward(net, x, tile=spec['tile'], overlap=spec['overlap'],  # noqa: E731
                                       fit_tile=spec.get('fit_tile', True))
        else:
            fn = lambda: net(x)  # noqa: E731
        with torch.inference_mode():
            t, share = timer(fn)
        times.append(t)
        shares.append(share)
    peak = peak_rss_gib()
    return {'times': times, 'cpu_share': shares, 'peak_rss_gib': peak, 'rss_before_gib': rss0,
            'minor_faults': resource.getrusage(resource.RUSAGE_SELF).ru_minflt, 'peak_cuda_mb': peak_cuda_total(device)}


def peak_cuda_total(device: str) -> Optional[float]:
    return torch.cuda.max_memory_allocated() / 2**20 if device == 'cuda' else None


def train_worker(spec: dict) -> dict:
    """Training steps at one shape: ours (fused AdamW, channels_last; precision, memory, use_checkpoint) or the
    official math (``network: plain``, fp32, for-loop AdamW). ``arch`` holds extra constructor arguments."""
    device = spec['device']
    arch = dict(spec.get('arch', {}))
    if spec.get('network') == 'plain':
        net = PlainRestormer(**arch).to(device)
    else:
        net = Restormer(**arch, use_checkpoint=spec.get('use_checkpoint', False), memory=spec.get('memory', 'lean'))
        net = net.to(device, memory_format=torch.channels_last)
    n, _, h, w = spec['shape']
    x = torch.rand(n, net.patch_embed.proj.in_channels, h, w, device=device)
    target = torch.rand(n, arch.get('out_channels', 3), h, w, device=device)
    step = train_step_fn(net, x, target, spec.get('precision', 'fp32'), device, fused=spec.get('network') != 'plain')
    rss0 = peak_rss_gib()
    timer = Timer(device)
    samples = [timer(step) for _ in range(spec['runs'])]
    return {'times': [t for t, _ in samples], 'cpu_share': [c for _, c in samples], 'peak_rss_gib': peak_rss_gib(),
            'rss_before_gib': rss0, 'peak_cuda_mb': peak_cuda_total(device)}


def train_peak_gib(spec: dict) -> Tuple[float, dict]:
    """Peak memory of a training step above the process's baseline (RSS; CUDA: max allocated), fresh process."""
    r = run_worker(dict(spec, job='train', configure_allocator=True))
    if r['peak_cuda_mb'] is not None:
        return r['peak_cuda_mb'] / 1024, r
    return r['peak_rss_gib'] - r['rss_before_gib'], r


@cache
def memory_fit(variant: str, device: str, arch_json: str, fit_shapes: Tuple[str, ...]) -> Tuple[float, float]:
    """Least-squares ``peak GiB = a + b * batch * pixels`` from measurements at the small ``fit_shapes``."""
    points = []
    for text in fit_shapes:
        n, c, h, w = parse_shape(text)
        spec = dict(MEMORY_VARIANTS[variant], device=device, shape=(n, c, h, w), runs=2, arch=json.loads(arch_json))
        points.append((n * h * w, train_peak_gib(spec)[0]))
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return mean_y - slope * mean_x, slope


def arch_key(arch: dict) -> str:
    """The constructor arguments that differ from Restormer's defaults, as JSON (one fit per network)."""
    import inspect

    def plain(value: object) -> object:
        return list(value) if isinstance(value, (list, tuple)) else value

    defaults = {k: plain(p.default) for k, p in inspect.signature(Restormer).parameters.items()}
    return json.dumps({k: v for k, v in arch.items() if defaults.get(k) != plain(v)}, sort_keys=True)


def plan_stages(path: Path) -> Tuple[List[Tuple[int, int]], dict]:
    """``(batch, patch)`` per progressive stage and the Restormer arguments of an option file."""
    import yaml

    opt = yaml.safe_load(path.read_text(encoding='utf-8'))
    train = opt['datasets']['train']
    batches = train.get('mini_batch_sizes') or [train['batch_size_per_gpu']]
    sizes = train.get('gt_sizes') or [train['gt_size']]
    arch = {k: v for k, v in opt['network_g'].items() if k not in ('type', 'use_checkpoint', 'memory')}
    return list(zip(batches, sizes)), arch


def run_worker(spec: dict, allocator: str = '') -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), RESTORMER_ALLOCATOR=allocator)
    proc = subprocess.run([sys.executable, __file__, '--worker', json.dumps(spec)], env=env, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        killed = f' (killed by signal {-proc.returncode}: out of memory? run this section on its own)' \
            if proc.returncode < 0 else ''
        raise RuntimeError(f'benchmark worker failed{killed} ({spec}):\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def grid_cost(height: int, width: int, tile: int, overlap: int, fit_tile: bool) -> Tuple[int, float]:
    """Tiles of the grid and pixels the network computes per image pixel (tile padding to a multiple of 8 included).

    This is the floor of the tiled/whole time ratio when a pixel costs the same in a tile as in the whole image.
    """
    if not tile:
        return 1, (-(-height // 8) * 8) * (-(-width // 8) * 8) / (height * width)
    size_h, rows = tile_grid(height, tile, overlap, fit_tile)
    size_w, cols = tile_grid(width, tile, overlap, fit_tile)
    computed = len(rows) * (-(-size_h // 8) * 8) * len(cols) * (-(-size_w // 8) * 8)
    return len(rows) * len(cols), computed / (height * width)


def median_time(result: dict, skip_first: bool) -> float:
    times = result['times'][1:] if skip_first and len(result['times']) > 1 else result['times']
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------- report


def fmt(value: Optional[float], digits: int = 2) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    sections = ['peers', 'infer', 'train', 'trainmem', 'plan', 'allocator', 'e2e', 'memory']
    parser.add_argument('--sections', nargs='+', default=[s for s in sections if s != 'plan'], choices=sections)
    parser.add_argument('--peers', default='1x3x256x256', help='peers table input shape NxCxHxW')
    parser.add_argument('--no-compile', action='store_true', help='peers: skip the torch.compile rows (1-2 min each)')
    parser.add_argument('--no-runtimes', action='store_true',
                        help='peers: skip ONNX Runtime / OpenVINO (their arenas take several GiB at 256x256)')
    parser.add_argument('--infer', nargs='*', default=['1x3x256x256'], help='inference shapes NxCxHxW')
    parser.add_argument('--train', nargs='*', default=['2x3x128x128'], help='training shapes NxCxHxW')
    parser.add_argument('--train-memory', nargs='*', default=['2x3x128x128', '8x3x128x128'],
                        help='trainmem shapes (8x3x128x128 is the paper\'s first progressive stage)')
    parser.add_argument('--fit-shapes', nargs='+', default=['1x3x48x48', '1x3x64x64', '2x3x64x64'],
                        help='trainmem/plan: small shapes measured for the linear memory fit')
    parser.add_argument('--max-gib', type=float, default=6.0,
                        help='trainmem: run a shape only when its fitted peak is below this (GiB); else print the fit')
    parser.add_argument('--plan-options', type=Path, default=REPO_ROOT / 'options' / 'Deraining.yml',
                        help='plan: the option file whose progressive stages to plan')
    parser.add_argument('--precision', default='fp32', choices=['fp32', 'bf16', 'fp16'],
                        help='infer section: autocast precision; memory section: network precision')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--e2e-size', default='256x256')
    parser.add_argument('--memory-sizes', nargs='*', default=['512x512', '1024x1024'])
    parser.add_argument('--whole-max-pixels', type=int, default=1024 * 1024,
                        help='memory section: also run whole-image inference up to this many pixels')
    parser.add_argument('--tile', type=int, default=256)
    parser.add_argument('--overlap', type=int, default=32)
    parser.add_argument('--output', type=Path, help='write the markdown table here')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    state = configure_allocator()  # in-process sections: the same allocator for both variants
    lines = [f'# Restormer benchmark ({args.device})', '',
             f'- torch {torch.__version__}, {platform.processor() or platform.machine()}, '
             f'{torch.get_num_threads()} threads, allocator in-process: {state}, precision: {args.precision}',
             f'- measured fp32 matmul rate (2048^3): {matmul_rate(args.device):.0f} GFLOP/s',
             f'- warm-up {args.warmup}, medians of {args.repeats} interleaved runs; "CPU share" = CPU time / '
             '(threads x wall), below ~0.85 means another process took CPU', '']
    print('\n'.join(lines), flush=True)

    def emit(*new: str) -> None:
        lines.extend(new)
        print('\n'.join(new), flush=True)

    if 'peers' in args.sections:
        emit(f'## Peers: inference at {args.peers}, one process, interleaved (ratio = plain fp32 eager / row)', '',
             '| path | median s | ratio | CPU s | ratio (CPU s) | PSNR vs ours fp32 (dB) | CPU share | note |',
             '|---|---|---|---|---|---|---|---|')
        result, notes = bench_peers(parse_shape(args.peers), args.device, args.warmup, args.repeats,
                                    not args.no_compile, not args.no_runtimes)
        base = result['plain fp32 eager (official math)']
        for name, r in result.items():
            db = r['psnr_vs_fp32']
            emit(f"| {name} | {r['median_s']:.3f} | **{base['median_s'] / r['median_s']:.2f}x** | {r['cpu_s']:.2f} "
                 f"| {base['cpu_s'] / r['cpu_s']:.2f}x | {'exact' if db > 100 else f'{db:.1f}'} "
                 f"| {r['cpu_share']:.2f} | {notes.get(name, '')} |")
        for name, note in notes.items():
            if name not in result:
                emit(f'| {name} | - | - | - | - | - | - | {note} |')
        emit('')
    if 'infer' in args.sections:
        emit('## Inference (eval, inference_mode)', '',
             '| input | fast s | plain s | speed-up | fast GFLOP/s | plain GFLOP/s | GFLOP | CPU share f/p '
             '| peak CUDA MiB f/p |', '|---|---|---|---|---|---|---|---|---|')
        for text in args.infer:
            r = bench_infer(parse_shape(text), args.device, args.warmup, args.repeats, args.precision)
            f, p = r['fast'], r['plain']
            emit(f"| {text} | {f['median_s']:.3f} | {p['median_s']:.3f} | **{p['median_s'] / f['median_s']:.2f}x** "
                 f"| {f['gflops']:.0f} | {p['gflops']:.0f} | {r['flops'] / 1e9:.1f} "
                 f"| {f['cpu_share']:.2f}/{p['cpu_share']:.2f} | {fmt(f['peak_cuda_mb'], 0)}/"
                 f"{fmt(p['peak_cuda_mb'], 0)} |")
        emit('')
    if 'train' in args.sections:
        emit('## Training step (zero_grad + forward + L1 + backward + AdamW step), interleaved', '',
             '| input | variant | median s | ratio | CPU s | ratio (CPU s) | CPU share | peak CUDA MiB |',
             '|---|---|---|---|---|---|---|---|')
        for text in args.train:
            r = bench_train(parse_shape(text), args.device, args.warmup, args.repeats)
            base = r['plain fp32, for-loop AdamW']
            for name, v in r.items():
                emit(f"| {text} | {name} | {v['median_s']:.3f} | **{base['median_s'] / v['median_s']:.2f}x** "
                     f"| {v['cpu_s']:.2f} | {base['cpu_s'] / v['cpu_s']:.2f}x | {v['cpu_share']:.2f} "
                     f"| {fmt(v['peak_cuda_mb'], 0)} |")
        emit('')
    fit_shapes = tuple(args.fit_shapes)
    if 'trainmem' in args.sections:
        emit('## Training step peak memory above the baseline (fresh process per row, forward + L1 + backward + AdamW)',
             '', f'Fit: a + b * batch * pixels from {", ".join(fit_shapes)}; shapes whose fitted peak exceeds '
             f'--max-gib {args.max_gib} are not run (*fitted*). Ratio: against the official math fp32 at that shape.',
             '', '| input | variant | peak GiB | vs official fp32 | step s (2nd) | CPU share | fit a GiB '
             '| fit b KiB/px |', '|---|---|---|---|---|---|---|---|')
        for text in args.train_memory:
            n, c, h, w = parse_shape(text)
            rows = {}
            for name, spec in MEMORY_VARIANTS.items():
                a, b = memory_fit(name, args.device, arch_key({'inp_channels': c, 'out_channels': c}), fit_shapes)
                peak, r = a + b * n * h * w, None
                if peak <= args.max_gib:
                    peak, r = train_peak_gib(dict(spec, device=args.device, shape=(n, c, h, w), runs=2,
                                                  arch={'inp_channels': c, 'out_channels': c}))
                rows[name] = (peak, r, a, b)
            base = rows['official math fp32'][0]
            for name, (peak, r, a, b) in rows.items():
                emit(f"| {text} | {name} | {peak:.2f}{'' if r else ' *fitted*'} | **{peak / base:.2f}x** "
                     f"| {fmt(r and r['times'][-1])} | {fmt(r and r['cpu_share'][-1])} | {a:.2f} "
                     f"| {b * 2**20:.1f} |")
        emit('')
    if 'plan' in args.sections:
        stages, arch = plan_stages(args.plan_options)
        fits = {name: memory_fit(name, args.device, arch_key(arch), fit_shapes)
                for name in MEMORY_VARIANTS}
        emit(f'## Memory plan for {args.plan_options} ({args.device}; fitted from {", ".join(fit_shapes)})', '',
             'Peak training memory per progressive stage, GiB (and the smallest of '
             f'{"/".join(map(str, CARDS_GB))} GB it fits in, "-" if none).', '',
             '| stage | batch x patch | ' + ' | '.join(fits) + ' |', '|---|---|' + '---|' * len(fits))
        for i, (batch, patch) in enumerate(stages, 1):
            cells = []
            for a, b in fits.values():
                peak = a + b * batch * patch * patch
                card = next((f'{gb} GB' for gb in CARDS_GB if peak * 2**30 <= gb * 1e9), '-')
                cells.append(f'{peak:.1f} ({card})')
            emit(f'| {i} | {batch} x {patch}x{patch} | ' + ' | '.join(cells) + ' |')
        emit('')
    size = tuple(int(v) for v in args.e2e_size.split('x'))
    runs = args.repeats + 1
    if 'allocator' in args.sections and args.device == 'cpu':
        emit(f'## Allocator effect (fast network, {args.e2e_size}, separate processes, first run dropped)', '',
             '| allocator | median s | CPU share | minor page faults | peak RSS GiB |', '|---|---|---|---|---|')
        spec = {'network': 'fast', 'device': 'cpu', 'size': size, 'runs': runs, 'configure_allocator': True}
        results = {name: run_worker(spec, env) for name, env in (('glibc default', 'system'), ('tuned', ''))}
        for name, r in results.items():
            emit(f"| {name} | {median_time(r, True):.3f} | {statistics.median(r['cpu_share']):.2f} "
                 f"| {r['minor_faults']:,} | {r['peak_rss_gib']:.2f} |")
        ratio = median_time(results['glibc default'], True) / median_time(results['tuned'], True)
        emit('', f'Tuned allocator speed-up: **{ratio:.2f}x**', '')
    if 'e2e' in args.sections:
        emit(f'## End to end: our command vs plain math, default environment ({args.e2e_size}, fresh processes)', '',
             '| variant | median s | CPU share | peak RSS GiB |', '|---|---|---|---|')
        ours = run_worker({'network': 'fast', 'device': args.device, 'size': size, 'runs': runs,
                           'configure_allocator': True})
        plain = run_worker({'network': 'plain', 'device': args.device, 'size': size, 'runs': runs,
                            'configure_allocator': False})
        for name, r in (('ours: configure_allocator + fast network', ours), ('plain math, default glibc', plain)):
            emit(f"| {name} | {median_time(r, True):.3f} | {statistics.median(r['cpu_share']):.2f} "
                 f"| {r['peak_rss_gib']:.2f} |")
        emit('', f'End-to-end speed-up: **{median_time(plain, True) / median_time(ours, True):.2f}x**', '')
    if 'memory' in args.sections:
        emit(f'## Whole image vs tiles of at most {args.tile} (overlap {args.overlap}), fast network, '
             f'{args.precision}, fresh process per row (tiled: fitted grid; fixed: every tile {args.tile})', '',
             '| image | mode | tiles | computed px / image px | time s | time/px vs whole | CPU share | peak RSS GiB '
             '| RSS before GiB | peak CUDA MiB |', '|---|---|---|---|---|---|---|---|---|---|')
        for text in args.memory_sizes:
            h, w = (int(v) for v in text.split('x'))
            # Fixed-size tiles only next to a whole-image row (the per-pixel comparison); otherwise fitted tiles.
            modes = ['whole', 'tiled', 'tiled fixed'] if h * w <= args.whole_max_pixels else ['tiled']
            whole_s = None
            for mode in modes:
                spec = {'network': 'fast', 'device': args.device, 'size': (h, w), 'runs': 1,
                        'configure_allocator': True, 'tile': 0 if mode == 'whole' else args.tile,
                        'overlap': args.overlap, 'fit_tile': mode == 'tiled', 'precision': args.precision}
                r = run_worker(spec)
                seconds = r['times'][0]
                whole_s = seconds if mode == 'whole' else whole_s
                ratio = f'{seconds / whole_s:.2f}' if whole_s and mode != 'whole' else '-'
                tiles, computed = grid_cost(h, w, args.tile if mode != 'whole' else 0, args.overlap, mode == 'tiled')
                emit(f"| {text} | {mode} | {tiles} | {computed:.3f} | {seconds:.1f} | {ratio} "
                     f"| {r['cpu_share'][0]:.2f} | {r['peak_rss_gib']:.2f} | {r['rss_before_gib']:.2f} "
                     f"| {fmt(r['peak_cuda_mb'], 0)} |")
        emit('')
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return 0


if __name__ == '__main__':
    sys.exit(main())
