"""GPU readiness: run every CUDA path once, check it against fp32 eager, then the benchmark's CUDA rows.

One command when a GPU is lent (about 5-10 minutes on one GPU, most of it torch.compile)::

    python benchmarks/gpu_check.py --output benchmarks/results_cuda.md

Checks, each printed as PASS/FAIL with its figure:

1. training steps of the full Restormer on CUDA, fp32 and bf16 autocast (fused AdamW, channels_last; memory 'full',
   'lean' and ``use_checkpoint``): finite losses, the weights change, and bf16 gradients point the same way as fp32
   ones; full (custom backward functions, folded norms) and lean gradients equal the plain math's (TF32 off), and
   the peaks order lean < full < plain math;
2. inference: fp32 fast path vs the plain reference math (max |diff| <= 1e-4, TF32 off), bf16 and fp16 networks
   (:func:`restormer_arch.perf.prepare_inference`) and autocast against fp32 (PSNR >= 50 dB);
3. ``torch.compile`` with freezing (:func:`restormer_arch.perf.compile_for_inference`) against eager (<= 1e-4);
4. tiled inference on the GPU against the same tiles on the CPU;
5. then ``benchmarks/benchmark.py --device cuda`` (peers, infer, train, trainmem, plan, memory sections).

Exits 2 with a message when no CUDA device is available, 1 when a check fails, 0 otherwise.
"""
import argparse
import copy
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from restormer_arch.archs.restormer_arch import Restormer  # noqa: E402
from restormer_arch.perf import autocast_context, compile_for_inference, prepare_inference  # noqa: E402
from restormer_arch.tiling import tiled_forward  # noqa: E402
from tests.reference_restormer import PlainRestormer  # noqa: E402

MIN_PSNR_DB = 50.0
MAX_FP32_DIFF = 1e-4


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / (a.float() - b.float()).square().mean()))


def smooth(n: int, size: int, device: str) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing='ij')
    return torch.stack([yy, xx, (yy + xx) / 2])[None].repeat(n, 1, 1, 1).to(device)


class Checks:
    """Runs named checks, prints PASS/FAIL lines, remembers failures."""

    def __init__(self) -> None:
        self.failures: List[str] = []

    def run(self, name: str, fn: Callable[[], str]) -> None:
        start = time.perf_counter()
        try:
            detail = fn()
            print(f'PASS  {name}: {detail} ({time.perf_counter() - start:.1f} s)', flush=True)
        except Exception as exc:  # noqa: BLE001 (report every failing check, then exit 1)
            self.failures.append(name)
            print(f'FAIL  {name}: {type(exc).__name__}: {exc}', flush=True)


def check_training(precision: str, mode: str, steps: int = 3) -> str:
    """``mode``: 'full', 'lean' or 'use_checkpoint'."""
    torch.manual_seed(0)
    net = Restormer(use_checkpoint=mode == 'use_checkpoint', memory='full' if mode == 'full' else 'lean')
    net = net.cuda().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)
    x, target = smooth(2, 128, 'cuda'), smooth(2, 128, 'cuda').flip(-1)
    before = net.output.weight.detach().clone()
    torch.cuda.reset_peak_memory_stats()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(precision, 'cuda'):
            out = net(x)
        loss = nn.functional.l1_loss(out.float(), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    losses = torch.stack(losses).tolist()  # one host sync, after the steps
    assert all(map(lambda v: v == v and abs(v) < 1e3, losses)), f'losses {losses}'
    assert not torch.equal(before, net.output.weight), 'weights did not change'
    return f'losses {[round(v, 4) for v in losses]}, peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB'


def check_gradients() -> str:
    """memory 'full' and 'lean' (fp32): gradients equal the plain math's, at lower peaks (lean < full < plain)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    x, target = smooth(2, 128, 'cuda'), smooth(2, 128, 'cuda').flip(-1)
    grads, peaks = [], []
    torch.manual_seed(0)
    state = Restormer().state_dict()
    for memory in ('plain', 'full', 'lean'):
        net = PlainRestormer() if memory == 'plain' else Restormer(memory=memory)
        net.load_state_dict(state, strict=True)
        net = net.cuda().to(memory_format=torch.channels_last)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        nn.functional.l1_loss(net(x), target).backward()
        peaks.append((torch.cuda.max_memory_allocated() - base) / 2**20)
        grads.append(torch.cat([p.grad.flatten() for _, p in sorted(net.named_parameters())]))
        del net
    errors = [float((g - grads[0]).abs().max() / grads[0].abs().max()) for g in grads[1:]]
    assert max(errors) <= 1e-4, f'full, lean vs plain gradient relative errors {errors}'
    assert peaks[2] < peaks[1] < peaks[0], f'peaks plain, full, lean {peaks} MiB'
    return (f'relative errors full {errors[0]:.1e}, lean {errors[1]:.1e}; step peak above weights: plain '
            f'{peaks[0]:.0f} MiB, full {peaks[1]:.0f} MiB, lean {peaks[2]:.0f} MiB')


def check_bf16_gradients() -> str:
    torch.manual_seed(0)
    net = Restormer().cuda()
    x, target = smooth(1, 64, 'cuda'), smooth(1, 64, 'cuda').flip(-1)
    grads = []
    for precision in ('fp32', 'bf16'):
        net.zero_grad(set_to_none=True)
        with autocast_context(precision, 'cuda'):
            out = net(x)
        nn.functional.l1_loss(out.float(), target).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    cosine = float(nn.functional.cosine_similarity(grads[0], grads[1], dim=0))
    assert cosine > 0.99, f'cosine {cosine}'
    return f'cosine(fp32 grad, bf16 grad) = {cosine:.5f}'


def check_inference() -> str:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    fast = Restormer().cuda().eval()
    plain = PlainRestormer().cuda().eval()
    plain.load_state_dict(fast.state_dict(), strict=True)
    x = smooth(1, 256, 'cuda')
    with torch.inference_mode():
        ref = fast(x)
        diff = float((ref - plain(x)).abs().max())
        assert diff <= MAX_FP32_DIFF, f'fp32 fast vs plain max |diff| {diff}'
        figures = [f'fp32 vs plain {diff:.1e}']
        for precision in ('bf16', 'fp16'):
            with autocast_context(precision, 'cuda'):
                db_auto = psnr(fast(x), ref)
            db_net = psnr(prepare_inference(copy.deepcopy(fast), precision)(x), ref)
            assert min(db_auto, db_net) >= MIN_PSNR_DB, f'{precision}: autocast {db_auto:.1f} dB, network {db_net:.1f}'
            figures.append(f'{precision} autocast {db_auto:.1f} dB, network {db_net:.1f} dB')
    return '; '.join(figures)


def check_compile() -> str:
    torch.manual_seed(0)
    net = Restormer().cuda().eval()
    x = smooth(1, 256, 'cuda')
    compiled = compile_for_inference(net)
    with torch.inference_mode():
        ref = net(x)
        start = time.perf_counter()
        out = compiled(x)
        torch.cuda.synchronize()
        first = time.perf_counter() - start
    diff = float((out - ref).abs().max())
    assert diff <= MAX_FP32_DIFF, f'compiled vs eager max |diff| {diff}'
    return f'max |diff| {diff:.1e}, first call (compile) {first:.0f} s'


def check_tiling() -> str:
    torch.manual_seed(0)
    net = Restormer(dim=16, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1).eval()
    x = torch.rand(1, 3, 300, 200)
    with torch.inference_mode():
        cpu = tiled_forward(net, x, tile=128, overlap=16)
        gpu = tiled_forward(net.cuda(), x, tile=128, overlap=16, device='cuda', batch_size=4)
    diff = float((cpu - gpu).abs().max())
    assert gpu.device.type == 'cpu' and diff <= 1e-3, f'GPU vs CPU tiles max |diff| {diff}'
    return f'GPU (batched tiles) vs CPU max |diff| {diff:.1e}'


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--output', type=Path, help='benchmark markdown table (passed to benchmark.py)')
    parser.add_argument('--skip-benchmark', action='store_true', help='run the checks only')
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print('gpu_check: no CUDA device is available (torch.cuda.is_available() is False); '
              f'torch {torch.__version__}, CUDA build {torch.version.cuda}. Run this on a machine with a GPU.',
              file=sys.stderr)
        return 2
    print(f'GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}', flush=True)
    checks = Checks()
    for precision in ('fp32', 'bf16'):
        for mode in ('full', 'lean', 'use_checkpoint'):
            checks.run(f'training {precision} {mode}', lambda p=precision, m=mode: check_training(p, m))
    checks.run('full and lean gradients vs the plain math (fp32)', check_gradients)
    checks.run('bf16 gradients vs fp32', check_bf16_gradients)
    checks.run('inference fp32 / bf16 / fp16', check_inference)
    checks.run('torch.compile (freezing)', check_compile)
    checks.run('tiled inference on the GPU', check_tiling)
    if not args.skip_benchmark:
        command = [sys.executable, str(REPO_ROOT / 'benchmarks' / 'benchmark.py'), '--device', 'cuda', '--sections',
                   'peers', 'infer', 'train', 'trainmem', 'plan', 'memory', '--infer', '1x3x256x256', '1x3x512x512',
                   '--train', '2x3x128x128', '8x3x128x128', '--max-gib', '120', '--fit-shapes', '2x3x64x64',
                   '4x3x96x96', '8x3x128x128', '--memory-sizes', '1024x1024', '3840x2160',
                   '--whole-max-pixels', str(2048 * 2048), '--repeats', '5']
        if args.output:
            command += ['--output', str(args.output)]
        rc = subprocess.call(command)
        if rc:
            checks.failures.append(f'benchmark.py --device cuda (exit {rc})')
    print('FAILED: ' + ', '.join(checks.failures) if checks.failures else 'all CUDA paths passed')
    return 1 if checks.failures else 0


if __name__ == '__main__':
    sys.exit(main())
