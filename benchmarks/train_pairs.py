"""Training step time of this checkout's memory modes against a baseline architecture file, interleaved in one process.

For step-time claims on a shared machine: every round runs one step of each variant (order reversed every other round),
timed in process CPU seconds, which other processes' load disturbs far less than wall time; the per-round ratios
against the baseline are reported as median and range. Same weights, input, L1 loss and fused AdamW everywhere
(:func:`benchmark.train_step_fn`)::

    git show main:restormer_arch/archs/restormer_arch.py > /tmp/baseline_arch.py
    python benchmarks/train_pairs.py --baseline /tmp/baseline_arch.py --shape 2x3x128x128 --rounds 10
"""
import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import parse_shape, train_step_fn  # noqa: E402

from restormer_arch.archs import restormer_arch  # noqa: E402
from restormer_arch.perf import configure_allocator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--baseline', type=Path, required=True, help='an older restormer_arch.py (its memory=full)')
    parser.add_argument('--shape', default='2x3x128x128')
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--precision', default='fp32', choices=['fp32', 'bf16'], help='bf16: autocast, as in training')
    args = parser.parse_args()
    configure_allocator()
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location('baseline_arch', args.baseline)
    baseline = importlib.util.module_from_spec(spec)
    restormer_arch.ARCH_REGISTRY._obj_map.pop('Restormer')  # the baseline registers its own Restormer class
    spec.loader.exec_module(baseline)
    shape = parse_shape(args.shape)
    x, target = torch.rand(*shape), torch.rand(*shape)
    torch.manual_seed(0)
    state = restormer_arch.Restormer(inp_channels=shape[1], out_channels=shape[1]).state_dict()
    variants = {}
    for name, module, memory in (('baseline full', baseline, 'full'), ('full', restormer_arch, 'full'),
                                 ('lean', restormer_arch, 'lean')):
        net = module.Restormer(inp_channels=shape[1], out_channels=shape[1], memory=memory)
        net.load_state_dict(state)
        variants[name] = train_step_fn(net.to(memory_format=torch.channels_last), x, target, args.precision, 'cpu',
                                       True)
    times = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    for r in range(args.rounds):
        for name in list(variants)[::1 if r % 2 == 0 else -1]:
            start = time.process_time()
            variants[name]()
            times[name].append(time.process_time() - start)
    print(f'| {args.shape}, {args.precision}, 1 thread, {args.rounds} rounds | median CPU s | vs baseline full: median '
          '| range |')
    print('|---|---|---|---|')
    for name, samples in times.items():
        ratios = [t / b for t, b in zip(samples, times['baseline full'])]
        print(f'| {name} | {statistics.median(samples):.2f} | {statistics.median(ratios):.3f}x '
              f'| {min(ratios):.3f}-{max(ratios):.3f}x |')


if __name__ == '__main__':
    main()
