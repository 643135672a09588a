"""Build before write: every component an option file names, built from the options BasicSR resolved with the
constructor the run will use, before the pipeline creates any folder, log or TensorBoard writer (what is built how:
docs/options.md). Whatever a constructor raises becomes one line naming the option that built it
(``train.optim_g: Invalid learning rate: -0.0003``); what is built is kept in a :class:`Built` for :mod:`.rules` and
:mod:`.report`.
"""
import contextlib
import difflib
import inspect
import os
import re
import types
import warnings
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Set

import numpy as np
import torch

from restormer_arch.errors import OptionsError, OutputError, UserError


class RecordingDict(dict):
    """A dict that records which keys its reader asked for (a dataset's options: what it actually reads)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read: Set[str] = set()

    def __getitem__(self, key: Any) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: Any) -> bool:
        self.read.add(key)
        return super().__contains__(key)

    def __deepcopy__(self, memo: Dict[int, Any]) -> 'RecordingDict':
        return self  # the dataset's copy must keep recording


@dataclass
class Built:
    """What :func:`build` made: networks (meta or CPU), the datasets' first samples, the stepped schedule."""

    networks: Dict[str, torch.nn.Module] = field(default_factory=dict)
    samples: Dict[str, Any] = field(default_factory=dict)
    dataset_reads: Dict[str, Set[str]] = field(default_factory=dict)
    lrs: List[float] = field(default_factory=list)  # the learning rate of train.optim_g at iterations 1..total_iter
    total_iter: Optional[int] = None
    missing_files: List[str] = field(default_factory=list)  # files a network constructor could not read
    image_clean_model: bool = False


# A YAML scalar that is a number written as text: quoted, or 3e-4 (YAML 1.1 needs a dot: 3.0e-4).
_NUMBER_TEXT = re.compile(r'^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$')


@contextlib.contextmanager
def building(key: str, section: Any = None, target: Any = None) -> Iterator[None]:
    """Turn any exception raised inside into one line naming the option ``key`` that built the component, with hints
    from ``section`` (its options: a close key, a number YAML read as text) and ``target`` (its constructor)."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001  (whatever the constructor says is the message)
        message = f'missing key {err.args[0]!r}' if isinstance(err, KeyError) and err.args else ' '.join(
            str(err).split()) or type(err).__name__
        message = re.sub(r'^path\.pretrain_network_\*: ', '', message)  # the loader's own prefix: the key says it
        prefix = '' if message.startswith(f'{key}.') else f'{key}: '  # a message naming the key already
        raise OptionsError(f'{prefix}{message}{_hint(message, section, target)}') from err


def _close(name: str, choices: List[str]) -> Optional[str]:
    close = difflib.get_close_matches(name, [c for c in choices if c != name], n=3, cutoff=0.7)
    return min(close, key=lambda c: abs(len(c) - len(name))) if close else None


def _hint(message: str, section: Any, target: Any) -> str:
    keys = [str(k) for k in section] if isinstance(section, dict) else []
    try:
        params = [p for p in inspect.signature(target).parameters if p not in ('self', 'args', 'kwargs')]
    except (TypeError, ValueError):
        params = []
    for name in re.findall(r'["\']([A-Za-z_]\w*)["\']', message):
        if name in keys and _close(name, params):  # a key the constructor does not take
            return f'; did you mean {_close(name, params)}?'
        if name not in keys and _close(name, keys):  # a key it needs, misspelled in the file
            return f' (the file has {_close(name, keys)!r}: did you mean {name}?)'
    texts = [f'{k}: {v!r} is text, not a number (YAML needs a dot: 3.0e-4, or write !!float 3e-4)' for k, v in
             (section.items() if isinstance(section, dict) else ()) if isinstance(v, str) and _NUMBER_TEXT.match(v)]
    return f' ({"; ".join(texts)})' if texts else ''


def lookup(registry: Any, kind: str, name: Any, key: str) -> Any:
    """``registry[name]`` (BasicSR's ``<name>_basicsr`` fallback included), or a "did you mean" error naming ``key``."""
    if isinstance(name, str) and (name in registry or f'{name}_basicsr' in registry):
        return registry.get(name) if name in registry else registry.get(f'{name}_basicsr')
    names = sorted(n for n, _ in registry)
    by_lower = {n.lower(): n for n in names}
    close = [by_lower[c] for c in difflib.get_close_matches(str(name).lower(), list(by_lower), n=3, cutoff=0.6)]
    hint = f'did you mean {", ".join(close)}?' if close else f'known: {", ".join(names)}.'
    raise OptionsError(f'{key}: unknown {kind} type {name!r}; {hint}' if name is not None else f'{key}: missing.')


def build_network(key: str, net_opt: Any) -> torch.nn.Module:
    """``network_*`` on the meta device (no memory), or on the CPU for a constructor that needs real tensors."""
    from basicsr.utils.registry import ARCH_REGISTRY

    if not isinstance(net_opt, dict):
        raise OptionsError(f'{key}: expected a mapping with "type" and the network\'s arguments, got {net_opt!r}.')
    kwargs = dict(net_opt)
    cls = lookup(ARCH_REGISTRY, 'arch', kwargs.pop('type', None), f'{key}.type')
    with building(key, net_opt, cls):
        try:
            with torch.device('meta'):
                return cls(**kwargs)
        except Exception:  # noqa: BLE001  (a constructor that needs real tensors; a mistake fails again, for real)
            return cls(**kwargs)


def build_datasets(opt: Dict[str, Any], built: Built) -> None:
    """Build every dataset, its first sample and its loader; what each dataset read is recorded in ``built``."""
    if built.missing_files:
        raise OptionsError(built.missing_files[0])
    from basicsr.data import build_dataloader
    from basicsr.data.data_sampler import EnlargedSampler
    from basicsr.utils.registry import DATASET_REGISTRY

    from restormer_arch.models.training_hooks import preserved_rng

    for phase, dataset_opt in opt['datasets'].items():
        key = f'datasets.{phase}'
        with building(key, dataset_opt):
            cls = lookup(DATASET_REGISTRY, 'dataset', dataset_opt.get('type'), f'{key}.type')
        recording = RecordingDict(deepcopy(dataset_opt))
        with building(key, dataset_opt), preserved_rng():
            dataset = cls(recording)
            if len(dataset) == 0:
                raise ValueError('the dataset is empty (no images found).')
            sample = dataset[0]
            dataset_opt['name']  # noqa: B018  BasicSR's build_dataset logs it: missing, it stops after the run folder
            sampler = (EnlargedSampler(dataset, opt['world_size'], opt['rank'],
                                       dataset_opt.get('dataset_enlarge_ratio', 1)) if phase == 'train' else None)
            # prefetch_mode off: BasicSR's cpu prefetcher logs, and logging now would set its logger up without the
            # run's log file.
            loader = build_dataloader(dataset, dict(dataset_opt, prefetch_mode=None), opt['num_gpu'], opt['dist'],
                                      sampler, opt['manual_seed'])
            if phase == 'train' and len(loader) < 1:
                raise ValueError(f'no full batch per epoch ({len(dataset)} image(s) x dataset_enlarge_ratio '
                                 f'{dataset_opt.get("dataset_enlarge_ratio", 1)} over batch_size_per_gpu '
                                 f'{dataset_opt.get("batch_size_per_gpu")}; the loader drops an incomplete batch): '
                                 'nothing would be trained.')
        built.samples[phase], built.dataset_reads[phase] = sample, recording.read


def _positive(value: Any) -> float:
    if float(value) <= 0:
        raise ValueError(f'{value!r} must be positive.')
    return float(value)


def _build_weights(opt: Dict[str, Any], built: Built) -> None:
    from restormer_arch.checkpoint import check_checkpoint_fits, read_training_state

    path_opt = opt['path']
    state = path_opt.get('resume_state')  # set in the file (--auto_resume chooses one later, from this run's states)
    if opt['is_train'] and state and os.path.isfile(state) and not str(state).endswith(('.pth', '.pt')):
        with building('path.resume_state'):
            read_training_state(state, opt)
    for key, value in path_opt.items():
        if not (str(key).startswith('pretrain_network_') and value):
            continue
        if os.path.isdir(value):
            raise OptionsError(f'path.{key}: {value} is a folder, not a checkpoint file; name the .pth file inside it.')
        if not os.path.isfile(value):
            raise OptionsError(f'path.{key}: file {value} does not exist; fix the path (relative to {os.getcwd()}), '
                               'fetch released weights with `basicsr weights`, or set it to ~.')
        network = built.networks.get(key.replace('pretrain_', ''))
        if built.image_clean_model and network is not None:  # our loader: read and matched now, on the meta device
            suffix = key[len('pretrain_network_'):]
            with building(f'path.{key}'):
                check_checkpoint_fits(network.state_dict(), value, path_opt.get(f'strict_load_{suffix}', True),
                                      path_opt.get(f'param_key_{suffix}'), type(network).__name__)


def _build_training(opt: Dict[str, Any], model_cls: type, built: Built) -> None:
    from basicsr.utils.registry import LOSS_REGISTRY

    from restormer_arch.models.lr_scheduler import SCHEDULERS
    from restormer_arch.models.progressive import Mixup, ProgressiveSchedule

    train = opt.get('train')
    if not isinstance(train, dict):
        raise OptionsError('train: missing (total_iter, optim_g, scheduler, losses).')
    with building('train.total_iter', train):
        built.total_iter = int(train['total_iter'])  # as BasicSR's pipeline reads it (the files write !!float 3e5)
        if built.total_iter <= 0:
            raise ValueError(f'expected a positive number of iterations, got {train["total_iter"]!r}.')
    for key, loss_opt in train.items():
        if not str(key).endswith('_opt') or not loss_opt:  # BasicSR's models skip an unset loss
            continue
        with building(f'train.{key}', loss_opt):  # e.g. a list: the model's dict(...) would fail after the folder
            kwargs = dict(loss_opt)
            cls = lookup(LOSS_REGISTRY, 'loss', kwargs.pop('type', None), f'train.{key}.type')
        with building(f'train.{key}', loss_opt, cls):
            if built.image_clean_model:
                cls(**kwargs)
            else:  # other models' losses may download weights when built (VGG): their arguments are bound only
                inspect.signature(cls).bind(**kwargs)
    optimizers = []
    for key in [k for k in train if str(k).startswith('optim_')] or ['optim_g']:
        with building(f'train.{key}', train[key]):
            optim_opt = dict(train[key])
            param = torch.nn.Parameter(torch.zeros(1))
            optimizers.append(model_cls.get_optimizer(None, optim_opt.pop('type'), [param], **optim_opt))
    # Always, as the model does: every BasicSR model's setup_schedulers needs train.scheduler.
    target = SCHEDULERS.get((train.get('scheduler') or {}).get('type'))
    with building('train.scheduler', train.get('scheduler'), target), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "scheduler.step() before optimizer.step()"
        fake_model = types.SimpleNamespace(opt={'train': deepcopy(train)}, optimizers=optimizers[:1], schedulers=[])
        model_cls.setup_schedulers(fake_model)
        for scheduler in fake_model.schedulers:
            for _ in range(built.total_iter):  # the whole run: a schedule that fails at iteration N fails now
                scheduler.step()
                built.lrs.append(optimizers[0].param_groups[0]['lr'])
    if built.image_clean_model:  # the settings ImageCleanModel converts as it starts
        for key, convert in (('grad_clip_norm', _positive), ('ema_decay', float), ('max_nonfinite_steps', int)):
            with building(f'train.{key}', train):
                if key in train:
                    convert(train[key])
        with building('datasets.train', opt['datasets'].get('train')):
            ProgressiveSchedule.from_options(opt['datasets'].get('train'))
        with building('train.mixing_augs'):
            Mixup.from_options(train)


def _build_validation(opt: Dict[str, Any], built: Built) -> None:
    from basicsr.metrics import calculate_metric
    from basicsr.utils.registry import METRIC_REGISTRY

    from restormer_arch.models.image_clean_model import DEFAULT_TILE_OVERLAP
    from restormer_arch.models.results_table import ResultsTable, to_metric_image
    from restormer_arch.tiling import BLEND_MODES, check_tile_options

    val = opt.get('val')
    if not isinstance(val, dict):
        return
    dtype = val.get('image_dtype', 'uint8') if built.image_clean_model else 'uint8'
    pair = [to_metric_image(t, dtype) for t in torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))]
    for name, metric_opt in (val.get('metrics') or {}).items():
        lookup(METRIC_REGISTRY, 'metric', (metric_opt or {}).get('type'), f'val.metrics.{name}.type')
        with building(f'val.metrics.{name}', metric_opt, METRIC_REGISTRY.get(metric_opt['type'])):
            try:
                with warnings.catch_warnings():  # numpy's "Mean of empty slice": the nan below says it in one line
                    warnings.simplefilter('ignore')
                    score = calculate_metric({'img': pair[0], 'img2': pair[1]}, metric_opt)
            except (RuntimeError, np.linalg.LinAlgError):  # numbers of a random 64x64 pair (NIQE needs real images)
                score = 0.0
            if not np.isfinite(score):  # e.g. a negative crop_border crops everything: every score would be nan
                raise ValueError(f'gives {score} on a 64x64 test pair; check its arguments (crop_border >= 0).')
    window = val.get('window_size', 8)
    if built.image_clean_model and not (isinstance(window, int) and not isinstance(window, bool) and window > 0):
        raise OptionsError(f'val.window_size: {window!r}; validation pads each image to a multiple of it, so it must '
                           'be a positive whole number (8 for Restormer).')
    if built.image_clean_model and val.get('tile_blend', 'cosine') not in BLEND_MODES:
        raise OptionsError(f'val.tile_blend: {val["tile_blend"]!r} is not one of {", ".join(BLEND_MODES)}.')
    if built.image_clean_model and val.get('tile') is not None:
        with building('val.tile / val.tile_overlap'):  # the one tile rule of restore, validation and the library
            check_tile_options(val['tile'], val.get('tile_overlap', DEFAULT_TILE_OVERLAP))
    if built.image_clean_model:
        with building('val.combined_rows'):
            ResultsTable(opt['path'].get('visualization', ''), val.get('combined_rows'))


def _build_performance(opt: Dict[str, Any], built: Built) -> None:
    from restormer_arch.perf import apply_performance_options, resolve_precision

    if opt.get('performance') is not None and built.networks.get('network_g') is not None:
        with building('performance', opt['performance']):  # torch.compile judges its own arguments
            resolve_precision(opt['performance'].get('precision'))
            apply_performance_options(built.networks['network_g'], opt['performance'])


def build(opt: Dict[str, Any]) -> Built:
    """Build every component of ``opt`` (resolved by BasicSR) as the run will, but the datasets (:func:`build_datasets`
    builds those); nothing is written.

    Args:
        opt: The options from BasicSR's ``parse_options``.

    Returns:
        What was built, for :mod:`.rules` and :mod:`.report`.

    Raises:
        OptionsError: A component cannot be built; the message names its option key and gives the original error.
    """
    from basicsr.utils.registry import MODEL_REGISTRY

    model_cls = lookup(MODEL_REGISTRY, 'model', opt.get('model_type'), 'model_type')
    # ImageCleanModel or a subclass: this project reads its train and val keys.
    built = Built(image_clean_model=any(c.__name__ == 'ImageCleanModel' for c in model_cls.__mro__))
    for key, net_opt in {'network_g': None, **opt}.items():  # network_g is needed: None (missing) is refused
        if str(key).startswith('network_'):
            try:
                built.networks[key] = build_network(key, net_opt)
            except OptionsError as err:  # a file a constructor reads (e.g. SpyNet weights): judged with the data
                if not isinstance(err.__cause__, FileNotFoundError):
                    raise
                built.missing_files.append(str(err))
    if not opt['datasets']:
        raise OptionsError('datasets: missing (a mapping of phases such as train / val / test_1).')
    # Each section under its key: whatever a part raises that no finer key caught still names the section.
    stages = {'path': lambda: _build_weights(opt, built),
              'train': lambda: _build_training(opt, model_cls, built) if opt['is_train'] else None,
              'val': lambda: _build_validation(opt, built), 'performance': lambda: _build_performance(opt, built)}
    for section, stage in stages.items():
        with building(section, opt.get(section)):
            stage()
    return built


def planned_outputs(opt: Dict[str, Any]) -> None:
    """Check the folders the run will write before it makes any: each can be created, and no two sets share one.

    Raises:
        OutputError: Two evaluation sets write to one folder (same ``name``), or a folder cannot be created there.
    """
    paths = opt['path']
    outputs = {'name': paths.get('experiments_root') if opt['is_train'] else paths.get('results_root')}
    if opt['is_train'] and (opt.get('logger') or {}).get('use_tb_logger') and 'debug' not in opt['name']:
        outputs['logger.use_tb_logger'] = os.path.join(opt.get('root_path') or os.getcwd(), 'tb_logger', opt['name'])
    seen: Dict[Any, str] = {}
    for phase, dataset_opt in opt['datasets'].items():
        if phase == 'train':
            continue
        first = seen.setdefault(dataset_opt.get('name'), phase)
        if first != phase:
            folder = os.path.join(paths.get('visualization', ''), str(dataset_opt.get('name')))
            raise OutputError(f'datasets.{first}.name and datasets.{phase}.name: both are {dataset_opt.get("name")!r}, '
                              f'so both would write to {folder} and one would overwrite the other; give each set its '
                              'own name.')
    for key, folder in outputs.items():
        existing = folder
        while not os.path.exists(existing):
            existing = os.path.dirname(existing) or '.'
        if not os.path.isdir(existing):
            raise OutputError(f'{key}: cannot create {folder}: {existing} is a file, not a folder.')
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f'{key}: cannot write {folder}: {existing} is not writable (read-only); run from a '
                              'folder you can write to.')
