"""Pre-emption under real Slurm: an ``sbatch --requeue`` job is sent SIGTERM, saves, requeues itself and resumes.

Run ``python -m tests.e2e.slurm_preemption`` on a machine where ``sbatch`` reaches a running cluster (one node with
two CPUs is enough; docs/training.md shows how to run slurmctld + slurmd on localhost). It submits docs/training.md's
job script (``srun ... --launcher slurm --auto_resume``, two tasks, gloo on CPU), waits for iteration 8, sends
``scancel --signal=TERM`` as a pre-empting scheduler does, and checks that the job saved its state, requeued itself,
resumed from that state (same iteration, same learning rates) and finished. Its output is recorded in
docs/training.md. ``tests/e2e/test_launchers.py`` runs it when ``sbatch`` and ``sinfo`` work (CI skips it).
"""
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT
from tests.e2e.test_resume import sequence
from tests.models.test_models import _train_yaml, write_pairs

JOB = '''#!/bin/bash
#SBATCH --job-name=restormer
#SBATCH --ntasks=2
#SBATCH --cpus-per-task=1
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%j.out
#SBATCH --signal=TERM@120
export OMP_NUM_THREADS=1 PYTHONPATH={repo}
srun {python} -m restormer_arch train -opt train.yml --launcher slurm --auto_resume
code=$?
# 143: stopped by SIGTERM (pre-emption, scancel --signal=TERM, the time limit) after saving a state: queue again.
if [ $code -eq 143 ]; then scontrol requeue "$SLURM_JOB_ID"; fi
exit $code
'''


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError(f'timed out waiting for {what}')
        time.sleep(0.5)


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix='restormer-slurm-'))
    write_pairs(folder / 'train', [f'im{i}' for i in range(8)], (32, 32))
    write_pairs(folder / 'val', ['v0'], (16, 16), seed=1)
    opt = _train_yaml(folder, 24)
    opt['datasets']['train'].update(dataset_enlarge_ratio=1, mini_batch_sizes=[2, 2])
    opt['dist_params'] = {'backend': 'gloo', 'port': 29500}
    opt['logger'].update(print_freq=1, save_checkpoint_freq=100)  # only the signal saves a state
    opt['val']['val_freq'] = 1000
    (folder / 'train.yml').write_text(yaml.safe_dump(opt))
    (folder / 'job.sh').write_text(JOB.format(repo=REPO_ROOT, python=sys.executable))
    job = subprocess.run(['sbatch', '--parsable', 'job.sh'], cwd=folder, check=True, capture_output=True,
                         text=True).stdout.strip().split(';')[0]
    out = folder / f'slurm-{job}.out'
    log = lambda: out.read_text() if out.is_file() else ''  # noqa: E731
    print(f'job {job} in {folder}', flush=True)
    _wait(lambda: re.search(r'iter:\s+8, lr', log()), 300, 'iteration 8')
    subprocess.run(['scancel', '--signal=TERM', job], check=True)
    _wait(lambda: 'Resuming training' in log(), 600, 'the requeued job to resume (Slurm delays a requeued job)')
    _wait(lambda: not subprocess.run(['squeue', '-h', '-j', job], capture_output=True, text=True).stdout.strip(),
          300, 'the job to finish')
    text = log()
    stopped = re.search(r'state of iteration (\d+) saved', text)
    resumed = re.search(r'Resuming training from epoch: (\d+), iter: (\d+)\.', text)
    lrs = sequence(text)
    print('\n'.join(line for line in text.splitlines() if re.search(
        r'Received|saved; continue|Resuming training|dist_params.port|World size|End of training|iter:\s+(8|9|10|24),',
        line)))
    ok = (stopped and resumed and resumed.group(2) == stopped.group(1) and 'End of training' in text
          and sorted(lrs) == list(range(1, 25)))
    print(f'requeued and resumed from iteration {resumed and resumed.group(2)}: {"OK" if ok else "FAILED"}')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
