"""Every launcher BasicSR offers, with real processes (gloo on CPU): torchrun on one and two "nodes", elastic restarts,
ranks that must agree on the state they resume, a changed world size, and Slurm's srun (its variables) on CPU."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_data_position import PROBE, data_options, probe_run, trained
from tests.e2e.test_resume import sequence
from tests.train_process import ENV, kill_leftover_runs

# torchrun --max-restarts with gloo can hang in connectFullMesh after a restart unless the agent does not share its
# rendezvous store with the workers (docs/training.md).
ELASTIC_ENV = dict(ENV, TORCH_DISABLE_SHARE_RDZV_TCP_STORE='1')


@pytest.fixture(autouse=True)
def _kill_leftover_runs():
    yield
    kill_leftover_runs()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def torchrun(*args: str) -> tuple:
    return (sys.executable, '-m', 'torch.distributed.run', *args, '-m', 'tests.ddp_probe')


def ddp_options(folder: Path, total: int) -> dict:
    opt = data_options(folder, 8, total)
    opt['dist_params'] = {'backend': 'gloo', 'port': 29500}  # the port every official option file pins
    return opt


def write(folder: Path, opt: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'train.yml').write_text(yaml.safe_dump(opt))
    return folder


def test_two_torchrun_agents_train_as_two_nodes_with_one_folder_and_rank0_validating(tmp_path):
    opt = ddp_options(tmp_path, 8)
    opt['val']['val_freq'] = 4
    opt['logger']['save_checkpoint_freq'] = 4
    write(tmp_path, opt)
    rdzv = ('--nnodes', '2', '--nproc_per_node', '1', '--rdzv-backend', 'c10d', '--rdzv-id', 'two-nodes',
            '--rdzv-endpoint', f'127.0.0.1:{free_port()}')
    agents = [probe_run(tmp_path, '--launcher', 'pytorch', cmd=torchrun(*rdzv)) for _ in range(2)]
    codes = [agent.finish(timeout=300) for agent in agents]
    assert codes == [0, 0], [agent.log() for agent in agents]
    ranks = [json.loads((tmp_path / 'probe' / f'rank{r}.json').read_text()) for r in (0, 1)]
    assert ranks[0]['validations'] == 2 and ranks[1]['validations'] == 0
    assert ranks[1]['saved'] == [] and {'net_g_4.pth', '4.state', 'net_g_8.pth', '8.state'} <= set(ranks[0]['saved'])
    assert ranks[0]['weights_sha256'] == ranks[1]['weights_sha256']
    assert os.listdir(tmp_path / 'experiments') == ['tiny_subprocess']
    for it in range(1, 9):  # every iteration, the two nodes train on different images
        assert not set(trained(tmp_path, 0)[it][0]) & set(trained(tmp_path, 1)[it][0])
    assert sum('World size (gpu number): 2' in agent.log() for agent in agents) == 1


def test_torchrun_max_restarts_resumes_a_killed_worker_as_if_uninterrupted(tmp_path):
    total = 12
    ref, run = (write(tmp_path / name, ddp_options(tmp_path / name, total)) for name in ('ref', 'run'))
    reference = probe_run(ref, '--launcher', 'pytorch', cmd=torchrun('--standalone', '--nproc_per_node', '2'))
    assert reference.finish() == 0, reference.log()
    # Rank 1 is SIGKILLed after iteration 7, past the checkpoint of iteration 6 (epoch 3 of 2-iteration epochs).
    elastic = probe_run(run, '--launcher', 'pytorch', '--auto_resume', env=dict(ELASTIC_ENV, DDP_PROBE_DIE_AT='7:1'),
                        cmd=torchrun('--standalone', '--nproc_per_node', '2', '--max-restarts', '2'))
    assert elastic.finish(timeout=300) == 0, elastic.log()
    log = elastic.log()
    assert re.search(r'Resuming training from epoch: \d+, iter: 6\.', log), log
    redone = [json.loads(line)['iter'] for line in (run / 'probe' / 'rank1.jsonl').read_text().splitlines()]
    assert redone.count(7) == 2  # iteration 7 ran, the worker died, and the restarted group ran it again
    for rank in (0, 1):
        assert trained(run, rank) == trained(ref, rank)  # images and lr of every iteration, on both ranks
    expected = sequence(reference.log())
    assert {it: seen for it, seen in sequence(log).items()} == expected  # (lr, stage), resumed segment included


def test_a_resume_on_fewer_processes_reports_it_and_continues_the_epoch(tmp_path):
    write(tmp_path, ddp_options(tmp_path, 8))
    # Both ranks die after iteration 4: the newest state is 3 (epoch 1, one of its two iterations done).
    first = probe_run(tmp_path, '--launcher', 'pytorch', cmd=torchrun('--standalone', '--nproc_per_node', '2'),
                      env=dict(ENV, DDP_PROBE_DIE_AT='4'))
    assert first.finish() != 0
    before = {r: trained(tmp_path, r) for r in (0, 1)}
    alone = probe_run(tmp_path, '--auto_resume')
    assert alone.finish() == 0, alone.log()
    assert 'saved by 2 process(es) x batch 2, this run has 1 x 2' in alone.log()
    after = trained(tmp_path, 0)
    epoch1 = before[0][3][0] + before[1][3][0] + after[4][0] + after[5][0]
    assert sorted(epoch1) == sorted(f'im{i}.png' for i in range(8))  # each image of epoch 1 once
    assert max(after) == 8  # epochs now have 4 iterations: the epoch count follows, training still reaches total_iter


def test_ranks_on_different_folders_stop_with_one_line_instead_of_hanging(tmp_path):
    a = write(tmp_path / 'a', ddp_options(tmp_path / 'a', 6))
    done = probe_run(a, '--launcher', 'pytorch', cmd=torchrun('--standalone', '--nproc_per_node', '2'))
    assert done.finish() == 0, done.log()
    b = write(tmp_path / 'b', ddp_options(tmp_path / 'a', 6))  # node 1 has its own copy, without the newest state
    shutil.copytree(a / 'experiments', b / 'experiments')
    (b / 'experiments' / 'tiny_subprocess' / 'training_states' / '6.state').unlink()
    port = free_port()
    agents = [probe_run(folder, '--launcher', 'pytorch', '--auto_resume', cmd=torchrun(
        '--nnodes', '2', '--nproc_per_node', '1', '--node-rank', str(node), '--master-addr', '127.0.0.1',
        '--master-port', str(port))) for node, folder in enumerate((a, b))]
    start = time.time()
    codes = [agent.finish(timeout=180) for agent in agents]
    assert codes[0] != 0 and codes[1] != 0 and time.time() - start < 180
    for agent in agents:  # every rank says why, in one line
        lines = [line for line in agent.log().splitlines() if line.startswith('basicsr train: error:')]
        assert len(lines) == 1 and 'rank 1 cannot resume from 6.state' in lines[0], agent.log()


def _srun_env(job_id: int, rank: int) -> dict:
    # What srun gives each task (one node, two tasks); MASTER_ADDR stands in for `scontrol show hostnames`.
    return dict(ENV, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_NTASKS='2', SLURM_NODELIST='localhost',
                SLURM_JOB_ID=str(job_id), MASTER_ADDR='127.0.0.1', CUDA_VISIBLE_DEVICES='')


def test_slurm_launcher_on_cpu_two_jobs_on_one_node_both_train(tmp_path):
    """BasicSR's Slurm init divides by the GPU count and binds dist_params.port (29500) for every job."""
    jobs = {}
    for job_id in (4101, 4102):
        folder = write(tmp_path / str(job_id), ddp_options(tmp_path / str(job_id), 6))
        jobs[job_id] = [probe_run(folder, '--launcher', 'slurm', env=_srun_env(job_id, rank)) for rank in (0, 1)]
    for job_id, tasks in jobs.items():
        codes = [task.finish(timeout=300) for task in tasks]
        assert codes == [0, 0], [task.log() for task in tasks]
        log = tasks[0].log()
        assert 'World size (gpu number): 2' in log and 'End of training' in log
        assert 'dist_params.port: 29500 is not used under --launcher slurm' in log
        assert str(10000 + job_id % 20000) in log


@pytest.mark.parametrize('launcher, env, needs', [
    ('slurm', {}, 'SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST not set'),
    ('pytorch', {}, 'RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set'),
    ('slurm', {'SLURM_PROCID': '0', 'SLURM_NTASKS': '1', 'SLURM_NODELIST': 'n[1-2]', 'PATH': '/nonexistent'},
     'cannot find the first node of n[1-2] with scontrol'),
])
def test_a_misconfigured_launcher_is_one_line_and_exit_2(tmp_path, launcher, env, needs):
    write(tmp_path, ddp_options(tmp_path, 6))
    clean = {k: v for k, v in ENV.items() if not k.startswith(('SLURM_', 'MASTER_', 'RANK', 'WORLD_SIZE'))}
    run = probe_run(tmp_path, '--launcher', launcher, env=dict(clean, **env))
    assert run.finish() == 2, run.log()
    assert 'Traceback' not in run.log() and needs in run.log()
    assert not (tmp_path / 'experiments').exists()


def _slurm_runs() -> bool:
    # Asked when the test runs, not at collection: sinfo waits for an absent controller (CI has none).
    try:
        return shutil.which('sbatch') is not None and subprocess.run(['sinfo'], capture_output=True,
                                                                    timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def test_slurm_job_preempted_with_sigterm_requeues_and_resumes():
    from tests.e2e.slurm_preemption import main

    if not _slurm_runs():
        pytest.skip('needs a running Slurm cluster (sbatch, sinfo)')
    assert main() == 0


def test_two_processes_with_batch_b_train_as_one_process_with_batch_2b(tmp_path):
    """Same images per iteration and the same averaged step; equal weights (and EMA) once no random draw is left:
    whole-image patches, no flips, stage batches equal to the loader's, no mixup (docs/training.md says why)."""
    import torch

    runs = {}
    for name, procs, batch in (('two', 2, 2), ('one', 1, 4)):
        opt = ddp_options(tmp_path / name, 8)
        opt['datasets']['train'].update(geometric_augs=False, gt_size=32, batch_size_per_gpu=batch,
                                        mini_batch_sizes=[batch, batch], gt_sizes=[32, 32])
        opt['train'].update(mixing_augs={'mixup': False}, ema_decay=0.9)
        write(tmp_path / name, opt)
        launcher = ('--launcher', 'pytorch') if procs > 1 else ()
        cmd = torchrun('--standalone', '--nproc_per_node', str(procs)) if procs > 1 else PROBE
        runs[name] = probe_run(tmp_path / name, *launcher, cmd=cmd)
        assert runs[name].finish() == 0, runs[name].log()
    one, two = trained(tmp_path / 'one'), [trained(tmp_path / 'two', r) for r in (0, 1)]
    for it in range(1, 9):
        assert sorted(two[0][it][0] + two[1][it][0]) == one[it][0]  # the same 4 images in every iteration
    weights = [torch.load(tmp_path / name / 'experiments' / 'tiny_subprocess' / 'models' / 'net_g_latest.pth',
                          weights_only=True) for name in ('one', 'two')]
    for key in ('params', 'params_ema'):
        for name, value in weights[0][key].items():
            torch.testing.assert_close(weights[1][key][name], value, rtol=1e-4, atol=1e-6)


def test_losing_a_whole_node_under_elastic_torchrun_resumes_on_the_other(tmp_path):
    """torchrun --nnodes=1:2: one agent (with its worker) is SIGKILLed; the other restarts alone and continues."""
    write(tmp_path, ddp_options(tmp_path, 16))
    rdzv = ('--nnodes', '1:2', '--nproc_per_node', '1', '--max-restarts', '3', '--rdzv-backend', 'c10d',
            '--rdzv-id', 'lose-a-node', '--rdzv-endpoint', f'127.0.0.1:{free_port()}', '--rdzv-conf',
            'last_call_timeout=5')
    keeper = probe_run(tmp_path, '--launcher', 'pytorch', '--auto_resume', cmd=torchrun(*rdzv), env=ELASTIC_ENV)
    time.sleep(3)  # the first agent hosts the rendezvous store: it is the one that survives
    # After iteration 7 (past the checkpoint of 6) the second agent's worker SIGKILLs it and itself: a node gone.
    lost = probe_run(tmp_path, '--launcher', 'pytorch', '--auto_resume', cmd=torchrun(*rdzv),
                     env=dict(ELASTIC_ENV, DDP_PROBE_DIE_AT='7', DDP_PROBE_DIE_WITH_AGENT='1'))
    assert lost.finish(timeout=300) == -signal.SIGKILL, lost.log()
    assert keeper.finish(timeout=400) == 0, keeper.log()
    log = keeper.log() + lost.log()
    resumed = int(re.search(r'Resuming training from epoch: \d+, iter: (\d+)\.', log).group(1))
    assert resumed == 6 and 'saved by 2 process(es) x batch 2, this run has 1 x 2' in log, log
    assert re.search(r'iter:\s+16, lr', log) and 'End of training' in log
