"""Each BasicSR compat fix, exercised on the installed stack (no mocks of basicsr or torch)."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from restormer_arch import compat


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-W', 'error::DeprecationWarning:__main__', '-c', code],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_import_basicsr_fails_without_compat_and_works_with_it():
    import torchvision

    bare = _run_python('import basicsr')
    has_old_module = subprocess.run([sys.executable, '-c', 'import torchvision.transforms.functional_tensor'],
                                    capture_output=True).returncode == 0
    if not has_old_module:  # torchvision >= 0.17: the break this fix exists for
        assert bare.returncode != 0 and 'functional_tensor' in bare.stderr, torchvision.__version__
    fixed = _run_python('import restormer_arch, basicsr; print(basicsr.__version__)')
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == '1.4.2'


def test_apply_is_idempotent():
    first = compat.apply()
    second = compat.apply()
    assert first == second
    assert len(first) >= 6


def test_adamw_and_other_torch_optimizers():
    from basicsr.models.base_model import BaseModel

    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = BaseModel.get_optimizer(None, 'AdamW', params, 3e-4, weight_decay=1e-4, betas=[0.9, 0.999])
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults['weight_decay'] == 1e-4
    assert isinstance(BaseModel.get_optimizer(None, 'SGD', params, 0.1), torch.optim.SGD)
    with pytest.raises(NotImplementedError, match='Adamm'):
        BaseModel.get_optimizer(None, 'Adamm', params, 0.1)


def test_model_to_device_without_cuda_device_ids(tmp_path):
    """CPU DDP (gloo, world size 1) through BaseModel.model_to_device."""
    import torch.distributed as dist
    from basicsr.models.base_model import BaseModel
    from torch.nn.parallel import DistributedDataParallel

    class Holder(BaseModel):
        pass

    holder = Holder.__new__(Holder)
    holder.opt = {'dist': True, 'num_gpu': 0}
    holder.device = torch.device('cpu')
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/rendezvous', rank=0, world_size=1)
    try:
        wrapped = holder.model_to_device(torch.nn.Linear(2, 2))
        assert isinstance(wrapped, DistributedDataParallel)
        assert wrapped(torch.ones(1, 2)).shape == (1, 2)
    finally:
        dist.destroy_process_group()


def test_dist_backend_resolution():
    assert compat.resolve_dist_backend('gloo') == 'gloo'
    assert compat.resolve_dist_backend(None) == ('nccl' if torch.cuda.is_available() else 'gloo')
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match='nccl needs CUDA'):
            assert compat.resolve_dist_backend('nccl') == 'gloo'


def test_jpeg_compression_accepts_float_quality():
    from basicsr.data import degradations

    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    out = degradations.random_add_jpg_compression(img, quality_range=(70.0, 90.0))
    assert out.shape == img.shape and out.dtype == np.float32


def test_resume_state_shim_is_the_one_finder_and_loads_on_cpu(tmp_path):
    """BasicSR's own load_resume_state maps storages to the current CUDA device; the shim is checkpoint's finder."""
    import basicsr.train

    from restormer_arch import checkpoint

    assert basicsr.train.load_resume_state is checkpoint.load_resume_state
    states, models = tmp_path / 'training_states', tmp_path / 'models'
    states.mkdir()
    models.mkdir()
    for iteration in (4, 12):
        torch.save({'epoch': 0, 'iter': iteration, 'optimizers': [{}], 'schedulers': [{}]},
                   states / f'{iteration}.state')
        torch.save({'params': {}}, models / f'net_g_{iteration}.pth')
    opt = {'name': 'run', 'num_gpu': 0, 'auto_resume': True, 'network_g': {'type': 'X'},
           'path': {'models': str(models), 'training_states': str(states), 'resume_state': None}}
    assert basicsr.train.load_resume_state(opt)['iter'] == 12
    assert opt['path']['resume_state'].endswith('12.state')
    opt.update(auto_resume=False)
    opt['path']['resume_state'] = str(states / '4.state')
    assert basicsr.train.load_resume_state(opt)['iter'] == 4


def test_compat_adds_no_behaviour_to_basicsr_models():
    """Saving, loading and resuming stay BasicSR's own unless a model opts in (or `basicsr train` installs ours)."""
    from basicsr.models.base_model import BaseModel

    from restormer_arch.checkpoint import CheckpointHooks
    from restormer_arch.models import ImageCleanModel

    for name in ('save_network', 'save_training_state', 'load_network', 'resume_training'):
        assert getattr(BaseModel, name).__module__.startswith('basicsr.')
        assert getattr(ImageCleanModel, name) is getattr(CheckpointHooks, name)
