"""Each BasicSR compat fix, exercised on the installed stack (no mocks of basicsr or torch)."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from restormer_arch import checkpoint, compat


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-W', 'error::DeprecationWarning:__main__', '-c', code],
                          capture_output=True, text=True, timeout=300)


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


def test_scipy_ndimage_filters_alias_is_silent_and_exact():
    import scipy.ndimage

    assert sys.modules['scipy.ndimage.filters'] is scipy.ndimage
    # basicsr's NIQE imports scipy.ndimage.filters; with the alias, importing it raises no deprecation warning.
    result = subprocess.run([sys.executable, '-W', 'error::DeprecationWarning', '-c',
                             'import restormer_arch, basicsr.metrics.niqe'], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


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


def _training_state(iteration: int) -> dict:
    return {'epoch': 0, 'iter': iteration, 'optimizers': [{}], 'schedulers': [{}]}


def _resume_opt(tmp_path, auto_resume=True, resume_state=None):
    states = tmp_path / 'experiments' / 'run' / 'training_states'
    states.mkdir(parents=True, exist_ok=True)
    models = tmp_path / 'experiments' / 'run' / 'models'
    models.mkdir(parents=True, exist_ok=True)
    return {'name': 'run', 'num_gpu': 0, 'auto_resume': auto_resume, 'is_train': True, 'network_g': {'type': 'X'},
            'path': {'training_states': str(states), 'models': str(models), 'resume_state': resume_state}}, states


def _save_checkpoint(states, iteration):
    torch.save(_training_state(iteration), states / f'{iteration}.state')
    torch.save({'params': {}}, states.parent / 'models' / f'net_g_{iteration}.pth')


def test_auto_resume_uses_root_path_not_cwd(tmp_path, monkeypatch):
    opt, states = _resume_opt(tmp_path)
    for it in (4, 12, 8):
        _save_checkpoint(states, it)
    monkeypatch.chdir('/')  # BasicSR's version would look in /experiments/run/training_states and start from 0
    state = compat.load_resume_state(opt)
    assert state['iter'] == 12
    assert opt['path']['resume_state'].endswith('12.state')
    assert opt['path']['pretrain_network_g'].endswith('net_g_12.pth')  # check_resume points the net at it


def test_auto_resume_skips_a_torn_state(tmp_path):
    opt, states = _resume_opt(tmp_path)
    _save_checkpoint(states, 4)
    (states / '8.state').write_bytes(b'PK\x03\x04 truncated while writing')
    torch.save(_training_state(12), states / '12.state')  # its net_g_12.pth was never written
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        state = compat.load_resume_state(opt)
    assert state['iter'] == 4
    messages = ' '.join(str(w.message) for w in caught)
    assert '8.state' in messages and 'net_g_12.pth' in messages


def test_auto_resume_without_states_starts_fresh(tmp_path):
    opt, _ = _resume_opt(tmp_path)
    assert compat.load_resume_state(opt) is None


def test_resume_state_loads_on_cpu(tmp_path):
    opt, states = _resume_opt(tmp_path, auto_resume=False)
    torch.save(_training_state(6), states / '6.state')
    opt['path']['resume_state'] = str(states / '6.state')
    assert compat.load_resume_state(opt)['iter'] == 6


def test_resume_state_errors_name_the_file(tmp_path):
    opt, states = _resume_opt(tmp_path, auto_resume=False)
    opt['path']['resume_state'] = str(states / 'missing.state')
    with pytest.raises(FileNotFoundError, match='missing.state'):
        compat.load_resume_state(opt)
    net_file = tmp_path / 'net_g_4.pth'
    torch.save({'params': {'w': torch.zeros(1)}}, net_file)
    opt['path']['resume_state'] = str(net_file)
    with pytest.raises(ValueError, match='net_g_4.pth.*not a BasicSR training state'):
        compat.load_resume_state(opt)


class _Evil:
    """Unpickling this would run a shell command: weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ('echo pwned > /dev/null',))


def _holder(tmp_path, **opt):
    from basicsr.models.base_model import BaseModel

    holder = BaseModel.__new__(BaseModel)
    holder.opt = {'dist': False, 'num_gpu': 0, 'path': {'models': str(tmp_path), 'training_states': str(tmp_path)},
                  **opt}
    holder.device = torch.device('cpu')
    holder.optimizers, holder.schedulers = [], []
    return holder


def test_save_network_and_training_state_are_atomic_and_loadable(tmp_path):
    holder = _holder(tmp_path)
    net = torch.nn.Linear(2, 3)
    holder.optimizers = [torch.optim.AdamW(net.parameters(), 1e-3)]
    holder.save_network([net, net], 'net_g', 7, param_key=['params', 'params_ema'])
    holder.save_training_state(epoch=1, current_iter=7)
    assert sorted(os.listdir(tmp_path)) == ['7.state', 'net_g_7.pth']
    saved = torch.load(tmp_path / 'net_g_7.pth', weights_only=True)
    assert set(saved) == {'params', 'params_ema'} and torch.equal(saved['params']['weight'], net.weight)
    assert torch.load(tmp_path / '7.state', weights_only=True)['iter'] == 7


def test_save_failure_raises_instead_of_being_ignored(tmp_path):
    holder = _holder(tmp_path / 'missing_dir')
    with pytest.raises(OSError):
        holder.save_network(torch.nn.Linear(2, 2), 'net_g', 1)


def test_load_network_refuses_code_execution(tmp_path):
    evil = tmp_path / 'evil.pth'
    torch.save({'params': {'weight': torch.zeros(1)}, 'payload': _Evil()}, evil)
    holder = _holder(tmp_path)
    with pytest.raises(ValueError, match='refusing to load .*evil.pth.*could run code.*posix.system'):
        holder.load_network(torch.nn.Linear(1, 1), str(evil))
    with pytest.raises(ValueError, match='refusing'):
        checkpoint.load_file(str(evil))


def test_load_network_strips_module_prefix_and_falls_back_to_params(tmp_path):
    net = torch.nn.Linear(2, 2)
    path = tmp_path / 'net.pth'
    torch.save({'params': {f'module.{k}': v for k, v in net.state_dict().items()}}, path)
    target = torch.nn.Linear(2, 2)
    _holder(tmp_path).load_network(target, str(path), param_key='params_ema')
    assert torch.equal(target.weight, net.weight)


def test_load_network_names_a_configuration_mismatch(tmp_path):
    from restormer_arch import Restormer

    tiny = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1)
    path = tmp_path / 'denoise.pth'
    torch.save({'params': Restormer(**tiny, LayerNorm_type='BiasFree').state_dict()}, path)
    with pytest.raises(ValueError, match=r'denoise.pth.*missing keys.*norm1.body.bias.*LayerNorm_type'):
        _holder(tmp_path).load_network(Restormer(**tiny), str(path))
    gray = tmp_path / 'gray.pth'
    torch.save({'params': Restormer(**tiny, inp_channels=1, out_channels=1).state_dict()}, gray)
    mismatch = r'shape mismatches.*patch_embed.proj.weight: \(8, 1, 3, 3\) vs \(8, 3, 3, 3\)'
    with pytest.raises(ValueError, match=mismatch):
        _holder(tmp_path).load_network(Restormer(**tiny), str(gray))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        _holder(tmp_path).load_network(Restormer(**tiny), str(tmp_path / 'nope.pth'))
