"""Task presets, constructor-argument checks, and reading every hyper-parameter back from a state dict."""
import json
import random

import pytest
import torch

from restormer_arch.archs.presets import (
    TASK_PRESETS,
    ArchOptionsError,
    arch_options_from_state_dict,
    check_arch_options,
    default_arch_options,
    matching_tasks,
    task_options,
)
from restormer_arch.archs.restormer_arch import Restormer
from tests.conftest import REPO_ROOT

RELEASED = json.loads((REPO_ROOT / 'tests' / 'data' / 'restormer_state_dicts.json').read_text(encoding='utf-8'))


def _meta_state_dict(**options):
    """The state dict of a Restormer built on the meta device: real key names and shapes, no memory, no time."""
    with torch.device('meta'):
        return Restormer(**options).state_dict()


def _shapes(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def _assert_rebuilds(state_dict):
    options = arch_options_from_state_dict(state_dict)
    assert _shapes(_meta_state_dict(**options)) == _shapes(state_dict)
    return options


@pytest.mark.parametrize('name', sorted(RELEASED))
def test_released_configurations_are_read_from_their_key_shapes(name):
    entry = RELEASED[name]
    state_dict = {k: torch.empty(shape, device='meta') for k, shape in entry['keys'].items()}
    options = _assert_rebuilds(state_dict)
    expected = {**default_arch_options(), **entry['constructor_kwargs']}
    expected.pop('use_checkpoint'), expected.pop('memory')  # not part of the weights
    assert options == expected
    assert options['ffn_expansion_factor'] == 2.66  # the default is kept, not an equivalent like 2.65
    # Every released task with this configuration is recognised, and only those.
    tasks = matching_tasks(options)
    assert tasks and all(task_options(t)[k] == options[k] for t in tasks for k in entry['constructor_kwargs'])


# Ablation-style sizes (widths, depths, refinement, heads and FFN expansion varied one at a time) and custom ones.
SIZES = [
    {'dim': 32}, {'dim': 64}, {'dim': 96, 'heads': [2, 4, 8, 16]},
    {'num_blocks': [2, 3, 3, 4]}, {'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 0},
    {'num_blocks': [6, 8, 8, 10], 'num_refinement_blocks': 6},
    {'heads': [1, 1, 1, 1]}, {'heads': [2, 2, 4, 4]},
    {'ffn_expansion_factor': 1.0}, {'ffn_expansion_factor': 2.0}, {'ffn_expansion_factor': 3.0},
    {'ffn_expansion_factor': 4.0}, {'ffn_expansion_factor': 2.5}, {'ffn_expansion_factor': 1.33},
    {'dim': 16, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 2, 2, 4],
     'ffn_expansion_factor': 2.0},
    {'dim': 24, 'num_blocks': [2, 0, 1, 1], 'num_refinement_blocks': 0, 'heads': [2, 2, 4, 8], 'bias': True,
     'ffn_expansion_factor': 3.0},
    {'dim': 40, 'bias': True, 'LayerNorm_type': 'BiasFree', 'ffn_expansion_factor': 2.1},
    {'inp_channels': 6, 'dual_pixel_task': True, 'dim': 8, 'num_blocks': [1, 2, 1, 1]},
    {'inp_channels': 1, 'out_channels': 1, 'LayerNorm_type': 'BiasFree', 'dim': 12, 'heads': [1, 2, 3, 4]},
]


@pytest.mark.parametrize('size', SIZES, ids=[json.dumps(s) for s in SIZES])
def test_custom_and_ablation_sizes_are_read_back(size):
    options = _assert_rebuilds(_meta_state_dict(**size))
    for key, value in size.items():
        if key != 'heads' or all(size.get('num_blocks', [1])):  # heads of an empty level shape no weight
            assert options[key] == value, key


@pytest.mark.slow
def test_any_ffn_factor_gives_one_that_reproduces_every_level_width():
    rng = random.Random(0)
    for _ in range(40):
        dim = rng.choice([8, 12, 16, 20, 24, 36, 40, 48, 56, 64])
        factor = round(rng.uniform(1.0, 4.0), rng.choice([1, 2, 3]))
        state_dict = _meta_state_dict(dim=dim, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1],
                                      ffn_expansion_factor=factor)
        read = _assert_rebuilds(state_dict)['ffn_expansion_factor']
        for channels in (dim, 2 * dim, 4 * dim, 8 * dim):
            assert int(channels * read) == int(channels * factor)


def test_inconsistent_ffn_widths_and_foreign_state_dicts_are_refused():
    state_dict = dict(_meta_state_dict(dim=8, num_blocks=[2, 1, 1, 1]))
    state_dict['encoder_level1.1.ffn.project_out.weight'] = torch.empty(8, 30, 1, 1, device='meta')
    with pytest.raises(ArchOptionsError):
        arch_options_from_state_dict(state_dict)
    with pytest.raises(ArchOptionsError):
        arch_options_from_state_dict({'conv_first.weight': torch.empty(64, 3, 3, 3)})


@pytest.mark.parametrize('key, value', [('dim', '8'), ('dim', 0), ('dim', 8.0), ('dim', True), ('num_blocks', 4),
                                        ('num_blocks', [1, 1, 1]), ('num_blocks', [1, 1, 1, -1]), ('heads', [1, 2]),
                                        ('heads', '1,2,4,8'), ('ffn_expansion_factor', '2.66'),
                                        ('ffn_expansion_factor', 0), ('bias', 'false'), ('bias', 0),
                                        ('LayerNorm_type', 'withbias'), ('num_refinement_blocks', -1),
                                        ('inp_channels', None), ('dual_pixel_task', 1)])
def test_wrong_value_types_name_the_key(key, value):
    with pytest.raises(ArchOptionsError) as info:
        check_arch_options({key: value}, '--arch-options')
    assert key in str(info.value)


def test_right_values_pass_and_are_normalised():
    checked = check_arch_options({'dim': 8, 'num_blocks': (1, 1, 1, 1), 'heads': [1, 1, 1, 1],
                                  'ffn_expansion_factor': 2, 'bias': True, 'LayerNorm_type': 'BiasFree'})
    assert checked['num_blocks'] == [1, 1, 1, 1] and isinstance(checked['ffn_expansion_factor'], float)
    Restormer(**checked)
    with pytest.raises(ArchOptionsError):
        check_arch_options({'dimension': 8})


def test_every_task_preset_builds_and_tasks_sharing_a_configuration_match_each_other():
    for task in TASK_PRESETS:
        options = task_options(task)
        assert task in matching_tasks(options)
        assert all(task_options(t)[k] == options[k] for t in matching_tasks(options)
                   for k in ('inp_channels', 'out_channels', 'LayerNorm_type', 'dual_pixel_task'))
    assert matching_tasks(task_options('deraining')) == ['deraining', 'motion_deblurring', 'defocus_deblurring']
    with pytest.raises(ArchOptionsError):
        task_options('super_resolution')


_EXPORT_TINY = dict(num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 4, 8])


@pytest.mark.parametrize('factor', [2.66, 2.0, 1.5, 3.0, 2.2, 4.0])
def test_ffn_factor_reproduces_every_hidden_width(factor):
    for dim in (8, 12, 48):
        state_dict = Restormer(**{**_EXPORT_TINY, 'dim': dim, 'ffn_expansion_factor': factor}).state_dict()
        found = arch_options_from_state_dict(state_dict)['ffn_expansion_factor']
        rebuilt = Restormer(**{**_EXPORT_TINY, 'dim': dim, 'ffn_expansion_factor': found}).state_dict()
        assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in state_dict.items()}
