"""The checkpoint module: atomic saving, safe loading, parameter layouts, the mismatch report."""
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from restormer_arch import checkpoint
from restormer_arch.checkpoint import CheckpointError, compare_state_dicts


def test_atomic_save_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / 'x.pth'
    checkpoint.atomic_save({'a': torch.ones(3)}, str(path))
    checkpoint.atomic_save({'a': torch.zeros(3)}, str(path))
    assert torch.equal(torch.load(path, weights_only=True)['a'], torch.zeros(3))
    assert os.listdir(tmp_path) == ['x.pth']


def test_atomic_save_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / 'x.pth'
    checkpoint.atomic_save({'a': torch.ones(3)}, str(path))
    with pytest.raises((AttributeError, pickle.PicklingError)):
        checkpoint.atomic_save({'a': torch.zeros(3), 'bad': lambda: None}, str(path))  # unpicklable
    assert torch.equal(torch.load(path, weights_only=True)['a'], torch.ones(3))
    assert os.listdir(tmp_path) == ['x.pth']


@pytest.mark.slow
def test_sigkill_during_atomic_saves_never_leaves_a_torn_file(tmp_path):
    """A real process rewriting a 16 MB checkpoint in a loop is SIGKILLed at several moments; the file always loads."""
    path = tmp_path / 'ckpt.pth'
    code = ('import sys, torch; from restormer_arch.checkpoint import atomic_save\n'
            'i = 0\n'
            'while True:\n'
            '    atomic_save({"i": i, "w": torch.full((4_000_000,), float(i))}, sys.argv[1]); i += 1\n'
            '    print(i, flush=True)\n')
    for delay in (0.05, 0.13, 0.29, 0.41):
        proc = subprocess.Popen([sys.executable, '-c', code, str(path)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one complete save
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = torch.load(path, weights_only=True)
        assert torch.equal(ckpt['w'], torch.full((4_000_000,), float(ckpt['i'])))


@pytest.mark.parametrize('layout', ['params', 'params_ema', 'state_dict', 'bare', 'module', 'generator', 'net_g'])
def test_load_state_dict_accepts_every_layout(tmp_path, layout):
    net = torch.nn.Linear(2, 3)
    sd = net.state_dict()
    wrapped = {
        'params': {'params': sd}, 'params_ema': {'params_ema': sd, 'params': {k: v * 0 for k, v in sd.items()}},
        'state_dict': {'state_dict': sd, 'epoch': 3}, 'bare': sd,
        'module': {'params': {f'module.{k}': v for k, v in sd.items()}},
        'generator': {'state_dict': {**{f'generator.{k}': v for k, v in sd.items()}, 'discriminator.w': torch.ones(1)}},
        'net_g': {f'net_g.module.{k}': v for k, v in sd.items()},
    }[layout]
    path = tmp_path / 'w.pth'
    torch.save(wrapped, path)
    loaded, entry = checkpoint.load_state_dict(str(path))
    assert set(loaded) == set(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert entry == {'bare': checkpoint.BARE, 'net_g': checkpoint.BARE, 'module': 'params',
                     'generator': 'state_dict'}.get(layout, layout)  # net_g.: a key prefix, not an entry


def test_load_state_dict_refuses_files_without_parameters_or_a_named_entry(tmp_path):
    torch.save({'epoch': 3, 'iter': 10}, tmp_path / 'state.pth')
    with pytest.raises(CheckpointError):
        checkpoint.load_state_dict(str(tmp_path / 'state.pth'))
    torch.save({'params': {'w': torch.ones(1)}}, tmp_path / 'w.pth')
    with pytest.raises(CheckpointError):
        checkpoint.load_state_dict(str(tmp_path / 'w.pth'), param_key='params_ema')


def test_load_file_refuses_truncated_files(tmp_path):
    path = tmp_path / 'w.pth'
    torch.save({'params': {'w': torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        checkpoint.load_file(str(path))
    with pytest.raises(CheckpointError):
        checkpoint.load_file(str(tmp_path / 'absent.pth'))


def test_compare_state_dicts_counts_each_kind_of_difference():
    expected = {'a': torch.zeros(2), 'b': torch.zeros(3), 'c': torch.zeros(1)}
    loaded = {'a': torch.zeros(2), 'b': torch.zeros(4), 'd': torch.zeros(1)}
    matched, report = compare_state_dicts(expected, loaded, sep='\n')
    assert matched == 1
    missing, unexpected, shapes = report.splitlines()
    assert missing.startswith('1 missing') and missing.endswith('c)')
    assert unexpected.startswith('1 unexpected') and unexpected.endswith('d)')
    assert shapes.startswith('1 shape') and shapes.endswith('b: (4,) vs (3,))')
    assert compare_state_dicts(expected, dict(expected)) == (3, '')


def test_random_bytes_are_reported_as_not_a_checkpoint_not_as_unsafe(tmp_path):
    path = tmp_path / 'w.pth'
    path.write_bytes(bytes(range(256)) * 16)  # what a mis-saved or foreign file looks like to torch.load
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_file(str(path))
    assert 'not a PyTorch checkpoint' in str(info.value) and 'could run code' not in str(info.value)


@pytest.mark.parametrize('content', [b'hello\n', b'not a checkpoint, just notes\n', b'{"params": 1}',
                                     b'\x80\x02}q\x00X\x01', b'PK\x03\x04garbage', b'\x00' * 100])
def test_any_unreadable_file_is_a_checkpoint_error(tmp_path, content):
    """The weights-only unpickler fails on arbitrary bytes with KeyError, ValueError, ...: all one clear error."""
    path = tmp_path / 'w.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_file(str(path))
    assert str(path) in str(info.value)


def test_empty_files_folders_zips_and_safetensors_are_checkpoint_errors(tmp_path):
    import json
    import struct
    import zipfile

    (tmp_path / 'empty.pth').write_bytes(b'')
    (tmp_path / 'folder.pth').mkdir()
    with zipfile.ZipFile(tmp_path / 'notes.zip', 'w') as archive:
        archive.writestr('a.txt', 'hi')
    header = json.dumps({'w': {'dtype': 'F32', 'shape': [1], 'data_offsets': [0, 4]}}).encode()
    (tmp_path / 'w.safetensors').write_bytes(struct.pack('<Q', len(header)) + header + bytes(4))
    for name in ('empty.pth', 'folder.pth', 'notes.zip', 'w.safetensors'):
        with pytest.raises(CheckpointError) as info:
            checkpoint.load_file(str(tmp_path / name))
        assert name in str(info.value)
