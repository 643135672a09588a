"""ONNX export (restormer_arch.export, ``basicsr export``): onnxruntime on the CPU against PyTorch, odd sizes.

Tiny networks (dim 8, one block per level) in every kind of configuration: RGB, gray BiasFree, 6-channel dual pixel,
bias + a non-default width and FFN factor. Needs the ``[onnx]`` extra (installed by ``[dev]``).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from restormer_arch import load_restormer
from restormer_arch.archs.restormer_arch import Restormer
from restormer_arch.errors import UserError
from restormer_arch.export import compare_onnx, export_onnx, main

ort = pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = {'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 2, 4, 8]}
CONFIGS = {
    'rgb': {},
    'gray_biasfree': {'inp_channels': 1, 'out_channels': 1, 'LayerNorm_type': 'BiasFree'},
    'dual_pixel': {'inp_channels': 6, 'dual_pixel_task': True},
    'custom': {'dim': 12, 'bias': True, 'ffn_expansion_factor': 1.5, 'heads': [1, 2, 2, 4],
               'num_blocks': [1, 2, 1, 1]},
}
ODD_SIZES = [(37, 53), (31, 17), (5, 3)]  # (5, 3) is too small to reflect: the replicate fallback
TOLERANCE = 1e-4


def save_checkpoint(path, options, seed=0):
    torch.manual_seed(seed)
    network = Restormer(**{**TINY, **options})
    with torch.no_grad():  # move every parameter off its initial value (norm weights, temperatures...)
        for param in network.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    torch.save({'params': network.state_dict()}, path)
    return network.eval()


@pytest.mark.slow
@pytest.mark.parametrize('config', CONFIGS)
def test_export_matches_pytorch_on_odd_sizes(tmp_path, config):
    original = save_checkpoint(tmp_path / 'net.pth', CONFIGS[config])
    network = load_restormer(str(tmp_path / 'net.pth'))
    assert network.state_dict().keys() == original.state_dict().keys()
    path = export_onnx(network, str(tmp_path / 'out' / 'net.onnx'))
    diffs = compare_onnx(path, original, ODD_SIZES, batch=2)
    print(config, diffs)
    assert max(diffs.values()) <= TOLERANCE, diffs
    assert sorted(os.listdir(tmp_path / 'out')) == ['net.onnx']  # no temporary file left


@pytest.mark.slow
def test_graph_inputs_are_dynamic(tmp_path):
    network = save_checkpoint(tmp_path / 'net.pth', {})
    session = ort.InferenceSession(export_onnx(network, str(tmp_path / 'net.onnx'), example_size=(16, 24)),
                                   providers=['CPUExecutionProvider'])
    (graph_input,) = session.get_inputs()
    assert graph_input.shape[1] == 3 and all(isinstance(d, str) for d in (graph_input.shape[0], *graph_input.shape[2:]))
    x = np.random.default_rng(0).random((3, 3, 19, 45), dtype=np.float32)
    (out,) = session.run(None, {'input': x})
    with torch.no_grad():
        expected = network(torch.from_numpy(x)).numpy()
    assert out.shape == (3, 3, 19, 45)
    assert np.abs(out - expected).max() <= TOLERANCE


@pytest.mark.slow
def test_plain_export_without_padding(tmp_path):
    network = save_checkpoint(tmp_path / 'net.pth', {})
    session = ort.InferenceSession(export_onnx(network, str(tmp_path / 'p.onnx'), pad_in_graph=False),
                                   providers=['CPUExecutionProvider'])
    x = torch.rand(1, 3, 32, 40)
    (out,) = session.run(None, {'input': x.numpy()})
    with torch.no_grad():
        assert np.abs(out - network.forward_features(x).numpy()).max() <= TOLERANCE


def test_not_a_restormer_is_refused(tmp_path):
    torch.save({'params': {'conv.weight': torch.zeros(3, 3, 3, 3)}}, tmp_path / 'other.pth')
    with pytest.raises(UserError):
        main(['--weights', str(tmp_path / 'other.pth'), '-o', str(tmp_path / 'other.onnx')])
    assert not (tmp_path / 'other.onnx').exists()


def run_export(args, cwd):
    env = {**os.environ, 'PYTHONPATH': str(REPO_ROOT), 'OMP_NUM_THREADS': '1'}
    return subprocess.run([sys.executable, '-m', 'restormer_arch', 'export', *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_exports_and_checks(tmp_path):
    network = save_checkpoint(tmp_path / 'gray.pth', CONFIGS['gray_biasfree'])
    result = run_export(['--weights', 'gray.pth', '--check'], tmp_path)
    assert result.returncode == 0, result.stderr
    session = ort.InferenceSession(str(tmp_path / 'gray.onnx'), providers=['CPUExecutionProvider'])
    x = torch.rand(1, 1, 23, 29)
    with torch.no_grad():
        assert np.abs(session.run(None, {'input': x.numpy()})[0] - network(x).numpy()).max() <= TOLERANCE
    (tmp_path / 'broken.pth').write_bytes(b'not a checkpoint')
    failed = run_export(['--weights', 'broken.pth', '-o', 'sub/broken.onnx'], tmp_path)
    assert failed.returncode == 2
    assert 'Traceback' not in failed.stderr
    assert not (tmp_path / 'sub').exists()


@pytest.mark.slow
def test_an_existing_output_is_kept_unless_overwrite(tmp_path):
    save_checkpoint(tmp_path / 'net.pth', {})
    target = tmp_path / 'model.onnx'
    target.write_bytes(b'my earlier export')
    args = ['--weights', str(tmp_path / 'net.pth'), '-o', str(target)]
    with pytest.raises(UserError):
        main(args)
    assert target.read_bytes() == b'my earlier export'
    assert main(args + ['--overwrite']) == 0
    assert ort.InferenceSession(str(target), providers=['CPUExecutionProvider']) is not None


@pytest.mark.parametrize('opset', [11, 12, 99, '17'])
def test_an_unsupported_opset_is_refused_before_any_work(opset, tmp_path):
    save_checkpoint(tmp_path / 'net.pth', {})
    target = tmp_path / 'model.onnx'
    if isinstance(opset, int):
        with pytest.raises(UserError):
            main(['--weights', str(tmp_path / 'net.pth'), '-o', str(target), '--opset', str(opset)])
        assert not target.exists()
    with pytest.raises(UserError):
        export_onnx(load_restormer(str(tmp_path / 'net.pth')), str(target), opset=opset)
    assert not target.exists()


@pytest.mark.slow
def test_the_oldest_and_newest_accepted_opsets_export(tmp_path):
    from restormer_arch.export import MIN_OPSET, max_opset
    save_checkpoint(tmp_path / 'net.pth', {})
    for opset in (MIN_OPSET, max_opset()):
        target = tmp_path / f'model{opset}.onnx'
        assert main(['--weights', str(tmp_path / 'net.pth'), '-o', str(target), '--opset', str(opset)]) == 0
        assert ort.InferenceSession(str(target), providers=['CPUExecutionProvider']) is not None
