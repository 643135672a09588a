"""``ImageCleanModel``: Restormer's training model for image restoration (any registered network), and the guards of
its training step that keep a long run from being lost (stop requests, non-finite losses)."""
import sys
from collections import OrderedDict
from copy import deepcopy
from os import path as osp
from statistics import fmean
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.models.base_model import BaseModel
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from tqdm import tqdm

from ..archs.restormer_arch import pad_to_multiple
from ..checkpoint import CheckpointHooks
from ..data.image_io import write_image
from ..perf import (
    apply_performance_options,
    autocast_context,
    compile_for_inference,
    optimizer_defaults,
    resolve_precision,
)
from ..tiling import fixed_tile_shape, run_network
from .lr_scheduler import SCHEDULERS
from .progressive import Mixup, ProgressiveSchedule
from .results_table import ResultsTable, to_metric_image
from .training_hooks import StopSignalHandler, TrainingRun

FP16_TRAINING = ('performance.precision: fp16 is for inference only (training would need loss scaling, which '
                 'interacts with the non-finite-step guard); train in bf16 or fp32, and use fp16 for basicsr test.')
DEFAULT_PIXEL_OPT = {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}
DEFAULT_TILE_OVERLAP = 32


class NonFiniteLossError(RuntimeError):
    """Raised after ``train.max_nonfinite_steps`` consecutive non-finite losses (the last good weights are saved)."""


def agree_across_ranks(*flags: bool, device: torch.device) -> Tuple[bool, ...]:
    """Logical OR of boolean flags over all distributed ranks (identity when not distributed).

    The stop and non-finite flags are agreed on once per iteration, before the backward pass (one small all-reduce): a
    rank that skipped a step or stopped alone would leave the others waiting in a collective.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return tuple(bool(f) for f in flags)
    tensor = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in tensor.tolist())


@MODEL_REGISTRY.register()
class ImageCleanModel(CheckpointHooks, SRModel):
    """Restoration model of Restormer: L1 (or any loss), AdamW, cyclic cosine LR, progressive patches, mixup.

    Works with any network in BasicSR's ``ARCH_REGISTRY`` (``network_g``). Options beyond BasicSR's ``SRModel``:

    - ``datasets.train.{iters, mini_batch_sizes, gt_sizes}``: progressive training (:class:`ProgressiveSchedule`).
    - ``train.mixing_augs: {mixup, mixup_beta, use_identity}``: mixup of lq/gt pairs (:class:`Mixup`).
    - ``train.use_grad_clip`` / ``train.grad_clip_norm`` (default 0.01): gradient-norm clipping.
    - ``train.pixel_opt`` defaults to ``L1Loss``; the scheduler may be ``CosineAnnealingRestartCyclicLR``.
    - ``val.window_size`` (default 8): inputs are reflect-padded to a multiple of it for validation.
    - ``val.log_input_metrics``: also log the metrics of the degraded input (e.g. the noisy PSNR) once per dataset.
    - ``val.tile`` / ``val.tile_overlap``: tiled inference for huge images (:func:`..tiling.run_network`).
    - ``val.image_dtype``: ``uint8`` (default), ``uint16`` or ``float32`` images for the metrics (:mod:`results_table`).
    - ``val.metrics_table`` (default: on in ``basicsr test``, off in training), ``val.combined_rows``: per-image
      ``metrics.csv`` and per-dataset ``metrics.md`` (:mod:`results_table`).
    - ``val.pbar`` (default: on in ``basicsr test``, off in training): a progress bar per dataset (images, ETA).
    - ``train.save_on_signal`` (default true, ``basicsr train`` only): SIGTERM/SIGINT save a state and exit.

    Checkpoints (saving, ``path.pretrain_network_g`` of any layout, resume) come from :class:`CheckpointHooks`; rank-0
    validation, the visuals, the validation log and :meth:`save` (``params`` and ``params_ema``) from ``SRModel``.

    Args:
        opt: The parsed BasicSR options.
    """

    def __init__(self, opt: Dict[str, Any]) -> None:
        BaseModel.__init__(self, opt)  # not SRModel's: the network is built here, with the performance options
        self.performance = dict(opt.get('performance') or {})
        self.precision = self.performance.get('precision', 'fp32')
        half = resolve_precision(self.precision) == torch.float16
        if self.is_train and half:
            raise ValueError(FP16_TRAINING)
        if half and self.device.type == 'cpu':
            # Correct but slow: CPUs have no fast fp16 convolutions (measured ~20x slower than fp32 at dim 48).
            get_root_logger().warning('performance.precision: fp16 on a CPU is correct but about 20x slower than '
                                      'fp32; use bf16 on a CPU (fp16 is for GPUs).')
        network = build_network(opt['network_g']).to(self.device)
        # channels_last and torch.compile from `performance:`; checkpoints keep the plain module's keys because
        # self.net_g stays the (DDP-wrapped) module and only the forward goes through the compiled wrapper.
        apply_performance_options(network, {k: v for k, v in self.performance.items() if k != 'compile'})
        self.net_g = self.model_to_device(network)
        compile_opt = self.performance.get('compile')
        self._forward = apply_performance_options(self.net_g, {'compile': compile_opt}) if compile_opt else self.net_g
        self.print_network(self.net_g)
        path_opt = self.opt.get('path', {})
        load_path = path_opt.get('pretrain_network_g')
        if load_path is not None:
            self.load_network(self.net_g, load_path, path_opt.get('strict_load_g', True),
                              path_opt.get('param_key_g', 'params'))
        self.progressive: Optional[ProgressiveSchedule] = None
        self.mixup: Optional[Mixup] = None
        self._stage_index: Optional[int] = None
        self._table: Optional[ResultsTable] = None  # of the latest validation round (earlier ones are on disk)
        self._validated_at: Dict[str, Any] = {}  # dataset name -> the iteration it was last validated at
        self.input_metric_results: Dict[str, Dict[str, float]] = {}
        self.run: Optional[TrainingRun] = None
        self.stop_handler: Optional[StopSignalHandler] = None  # installed by TrainingRun.attach (basicsr train)
        if self.is_train:
            self.init_training_settings()

    # ------------------------------------------------------------------ training setup
    def init_training_settings(self) -> None:
        """Build EMA, loss, optimizer, schedulers, progressive schedule and mixup from ``opt['train']``."""
        self.net_g.train()
        train_opt = self.opt['train']
        logger = get_root_logger()

        self.ema_decay = train_opt.get('ema_decay', 0)
        if self.ema_decay > 0:
            logger.info(f'Use Exponential Moving Average with decay: {self.ema_decay}')
            # The EMA copy only validates and is saved: it is never wrapped in DDP.
            self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
            load_path = self.opt['path'].get('pretrain_network_g')
            if load_path is not None:
                self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
            else:
                self.model_ema(0)
            self.net_g_ema.eval()

        pixel_opt = train_opt.get('pixel_opt') or DEFAULT_PIXEL_OPT
        self.cri_pix = build_loss(pixel_opt).to(self.device)
        self.use_grad_clip = bool(train_opt.get('use_grad_clip', False))
        self.max_nonfinite_steps = int(train_opt.get('max_nonfinite_steps', 10))
        self.nonfinite_steps = self.nonfinite_skipped = 0  # in a row, in total
        self.grad_clip_norm = float(train_opt.get('grad_clip_norm', 0.01))

        self.progressive = ProgressiveSchedule.from_options(self.opt.get('datasets', {}).get('train'))
        if self.progressive is not None:
            logger.info('Progressive training:' + ''.join(
                f'\n\tstage {stage.index}: up to iter {stage.last_iter}, batch {stage.mini_batch_size}/device, patch '
                f'{stage.patch_size}' for stage in self.progressive.stages))
        self.mixup = Mixup.from_options(train_opt)
        if self.mixup is not None:
            logger.info(f'Use mixup (beta {self.mixup.distribution.concentration0.item()}, '
                        f'identity half of the time: {self.mixup.use_identity})')

        self.setup_optimizers()
        self.setup_schedulers()

    def setup_optimizers(self) -> None:
        """Create ``optimizer_g`` from ``train.optim_g`` (any ``torch.optim`` class, e.g. ``AdamW``)."""
        optim_opt = deepcopy(self.opt['train']['optim_g'])
        optim_type = optim_opt.pop('type')
        params = [p for p in self.net_g.parameters() if p.requires_grad]
        optim_opt = optimizer_defaults(optim_type, optim_opt, self.device)  # fused Adam/AdamW where available
        self.optimizer_g = self.get_optimizer(optim_type, params, **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def setup_schedulers(self) -> None:
        """Create one scheduler per optimizer from ``train.scheduler``."""
        scheduler_opt = deepcopy(self.opt['train']['scheduler'])
        scheduler_type = scheduler_opt.pop('type')
        if scheduler_type not in SCHEDULERS:
            raise NotImplementedError(f'train.scheduler.type: {scheduler_type!r} is not supported. Choose one of '
                                      f'{", ".join(SCHEDULERS)}.')
        self.schedulers.extend(SCHEDULERS[scheduler_type](optimizer, **scheduler_opt) for optimizer in self.optimizers)

    # ------------------------------------------------------------------ training step
    def feed_data(self, data: Dict[str, Any]) -> None:
        """Take a batch from a loader (``lq`` and, when present, ``gt``; a batch without ``gt`` clears the last one, so
        no metric is ever computed against a target of an earlier batch or of training)."""
        self.lq = data['lq'].to(self.device)
        if 'gt' in data:
            self.gt = data['gt'].to(self.device)
        else:
            self.__dict__.pop('gt', None)

    def _devices_per_process(self) -> int:
        # The stage's batch is per device; only DataParallel (one process, several GPUs) feeds more than one.
        num_gpu = self.opt.get('num_gpu', 0)
        return num_gpu if not self.opt.get('dist', False) and num_gpu > 1 else 1

    def optimize_parameters(self, current_iter: int) -> None:
        """One optimisation step on the fed batch (after progressive cropping and mixup).

        Before the backward pass the ranks agree on two flags: a stop signal (save the state of the previous iteration
        and exit) and a non-finite loss (skip the step; stop with a checkpoint after ``train.max_nonfinite_steps`` in a
        row). A non-finite gradient norm also skips the step.
        """
        if self.progressive is not None:
            self.lq, self.gt, stage = self.progressive.apply(self.lq, self.gt, current_iter,
                                                             self._devices_per_process(), self.opt.get('scale', 1))
            if stage.index != self._stage_index:
                self._stage_index = stage.index
                get_root_logger().info(
                    f'Progressive training: iter {current_iter} -> stage {stage.index}: batch '
                    f'{stage.mini_batch_size}/device, patch {stage.patch_size} (lq batch {tuple(self.lq.shape)})')
        if self.mixup is not None:
            self.lq, self.gt = self.mixup(self.lq, self.gt)
        self.optimizer_g.zero_grad()
        with autocast_context(self.precision, self.device.type):
            preds = self._forward(self.lq)
        preds = list(preds) if isinstance(preds, (list, tuple)) else [preds]
        self.output = preds[-1]
        l_pix = sum(self.cri_pix(pred.float(), self.gt) for pred in preds)
        stop, nonfinite = agree_across_ranks(self.stop_handler is not None and self.stop_handler.signum is not None,
                                             not bool(torch.isfinite(l_pix.detach()).all()), device=self.device)
        if stop:  # save the state of the last complete iteration, then exit as the signal would have (128 + signal)
            self.save(self._epoch(), current_iter - 1)
            get_root_logger().warning(f'Stopped by signal {self.stop_handler.signum}: state of iteration '
                                      f'{current_iter - 1} saved; continue with --auto_resume.')
            raise SystemExit(128 + self.stop_handler.signum)
        if self._skip_nonfinite(nonfinite, current_iter):
            return
        l_pix.backward()
        loss_dict = OrderedDict(l_pix=l_pix)
        max_norm = self.grad_clip_norm if self.use_grad_clip else float('inf')
        # With max_norm=inf nothing is scaled: the norm is only measured, to catch non-finite gradients.
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), max_norm)
        if self.use_grad_clip:
            loss_dict['grad_norm'] = grad_norm.detach()
        # DDP has already averaged the gradients, so every rank sees the same norm and takes the same decision.
        if self._skip_nonfinite(not bool(torch.isfinite(grad_norm)), current_iter):
            return
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _skip_nonfinite(self, nonfinite: bool, current_iter: int) -> bool:
        # A NaN/Inf loss or gradient norm (agreed across ranks) skips the step; after train.max_nonfinite_steps in a
        # row (0 or less: never) the last finite weights are saved and the run stops.
        self.nonfinite_steps = self.nonfinite_steps + 1 if nonfinite else 0
        if not nonfinite:
            return False
        self.nonfinite_skipped += 1
        get_root_logger().warning(f'Non-finite loss at iteration {current_iter}: step skipped '
                                  f'({self.nonfinite_steps} in a row, {self.nonfinite_skipped} in total).')
        if 0 < self.max_nonfinite_steps <= self.nonfinite_steps:
            self.save(self._epoch(), current_iter - 1)  # the weights are still the last finite ones
            raise NonFiniteLossError(
                f'{self.nonfinite_steps} consecutive non-finite losses up to iteration {current_iter}; training '
                'stopped. The last finite weights and training state were saved. Lower train.optim_g.lr, enable '
                'train.use_grad_clip, check the data for NaN/Inf pixels, then resume with --auto_resume.')
        self.optimizer_g.zero_grad()
        self.log_dict = OrderedDict(l_pix=float('nan'))
        return True

    def _epoch(self) -> int:
        # Saves outside BasicSR's own `model.save(epoch, iter)` need the epoch, which only the run knows.
        return self.run.epoch if self.run is not None else 0

    # ------------------------------------------------------------------ inference / validation
    def _inference_net(self) -> torch.nn.Module:
        # Never the DDP wrapper: only rank 0 validates, and a wrapped forward may run collectives the others never join.
        return self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)

    def test(self) -> None:
        """Restore ``self.lq`` into ``self.output`` (padded to ``val.window_size``, then cropped back)."""
        val_opt = self.opt.get('val') or {}
        tile = int(val_opt['tile']) if val_opt.get('tile') else None
        padded = pad_to_multiple(self.lq, int(val_opt.get('window_size', 8)))
        net = self._inference_net()
        was_training = net.training
        net.eval()
        compiled = not self.is_train and bool(self.performance.get('compile'))
        if compiled:  # `basicsr test`: compiled with freezing once (the weights no longer change)
            self._note_compiled_shape(fixed_tile_shape(*padded.shape[-2:], tile))
            if getattr(self, '_compiled_test_net', None) is None:
                self._compiled_test_net = compile_for_inference(net)
        # Compiled, every tile keeps exactly `tile` pixels (no fitted tiles), so one compilation serves every image.
        output = run_network(self._compiled_test_net if compiled else net, padded, tile=tile,
                             overlap=int(val_opt.get('tile_overlap', DEFAULT_TILE_OVERLAP)),
                             blend=val_opt.get('tile_blend', 'cosine'), precision=self.precision,
                             fit_tile=not compiled)
        net.train(was_training)
        scale = self.opt.get('scale', 1)
        self.output = output[..., :self.lq.shape[-2] * scale, :self.lq.shape[-1] * scale].float()

    def _note_compiled_shape(self, shape: Tuple[int, int]) -> None:
        # torch.compile specialises on shapes: every new one compiles again, 1-3 minutes for the full model on a CPU.
        seen = self.__dict__.setdefault('_compiled_shapes', set())
        if shape in seen:
            return
        seen.add(shape)
        if len(seen) == 1:
            get_root_logger().info(f'performance.compile: compiling the network for {shape[0]}x{shape[1]} inputs '
                                   '(1-3 minutes for the full model on a CPU, and as long for every further shape).')
        else:
            get_root_logger().warning(
                f'performance.compile: a new input shape, {shape[0]}x{shape[1]} ({len(seen)} so far), compiles '
                'again; set val.tile (e.g. 256) so that every image runs in tiles of one shape.')

    def validation(self, dataloader: Any, current_iter: Any, tb_logger: Any, save_img: bool = False) -> None:
        """Validate on ``dataloader`` (see :meth:`nondist_validation`).

        BasicSR's train loop ends with one more validation at ``total_iter + 1``: it is labelled ``total_iter`` and
        skipped when that iteration was validated already (same weights, same images).
        """
        name = dataloader.dataset.opt['name']
        if self.is_train and isinstance(current_iter, int) and current_iter > self.opt['train']['total_iter']:
            current_iter = int(self.opt['train']['total_iter'])
            if self._validated_at.get(name) == current_iter:
                get_root_logger().info(f'Validation {name}: already done at iter {current_iter}.')
                return
        super().validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader: Any, current_iter: Any, tb_logger: Any, save_img: bool) -> None:
        """Restore every image of ``dataloader``, compute ``val.metrics`` on uint8 images, save and log.

        Args:
            dataloader: A validation loader (any batch size).
            current_iter: The iteration (or, from ``basicsr test``, the run name).
            tb_logger: A tensorboard writer or ``None``.
            save_img: Save the restored images under ``visualization/<dataset>/``.
        """
        dataset_name = dataloader.dataset.opt['name']
        self._validated_at[dataset_name] = current_iter
        val_opt, is_train = self.opt['val'], self.opt['is_train']
        metrics_opt = val_opt.get('metrics') or {}
        log_input = val_opt.get('log_input_metrics', False) and dataset_name not in self.input_metric_results
        table, inputs = self._results_table(current_iter, dataset_name), []
        tag = current_iter if is_train else val_opt.get('suffix') or self.opt['name']
        dtype = val_opt.get('image_dtype', 'uint8')
        non_finite = []
        # Images done and ETA on stderr; val.pbar (default: on in basicsr test, off in training) turns it on or off.
        bar = tqdm(total=len(dataloader.dataset), unit='image', file=sys.stderr, dynamic_ncols=True,
                   desc=f'{"Validation" if is_train else "Test"} {dataset_name}',
                   disable=not val_opt.get('pbar', not is_train))
        for val_data in dataloader:
            self.feed_data(val_data)
            self.test()
            visuals = self.get_current_visuals()
            for i, lq_path in enumerate(val_data['lq_path']):
                img_name = osp.splitext(osp.basename(lq_path))[0]
                if not torch.isfinite(visuals['result'][i]).all():
                    non_finite.append(img_name)
                restored = to_metric_image(visuals['result'][i], dtype)
                if save_img:
                    write_image(osp.join(self.opt['path']['visualization'], dataset_name, f'{img_name}_{tag}.png'),
                                restored, 16 if restored.dtype == np.uint16 else 8)
                if 'gt' in visuals and metrics_opt:
                    gt_img = to_metric_image(visuals['gt'][i], dtype)
                    table.add(dataset_name, img_name, {name: calculate_metric({'img': restored, 'img2': gt_img}, m)
                                                       for name, m in metrics_opt.items()})
                    if log_input:  # the degraded input's score is the baseline to beat (e.g. the noisy PSNR)
                        lq_img = to_metric_image(visuals['lq'][i], dtype)
                        inputs.append({name: calculate_metric({'img': lq_img, 'img2': gt_img}, m)
                                       for name, m in metrics_opt.items()})
            bar.update(len(val_data['lq_path']))
            for attr in ('lq', 'gt', 'output'):
                self.__dict__.pop(attr, None)
        bar.close()
        logger = get_root_logger()
        if non_finite:
            # The images are saved and scored with NaN as 0; say so rather than report a meaningless score quietly.
            logger.warning(
                f'{dataset_name}: the network output has NaN/inf values for {len(non_finite)} image(s) '
                f'({", ".join(non_finite[:5])}{", ..." if len(non_finite) > 5 else ""}; performance.precision: '
                f'{self.precision}); their images and metrics are not meaningful. fp16 can overflow: try bf16 or fp32.')
        if metrics_opt and not table.rows[dataset_name]:
            logger.warning(
                f'{dataset_name}: no ground truth (the dataset yields lq only, e.g. SingleImageDataset): val.metrics '
                f'({", ".join(metrics_opt)}) skipped for its {len(dataloader.dataset)} image(s); the restored images '
                'are still saved.')
            return
        if not metrics_opt:
            return
        self._initialize_best_metric_results(dataset_name)
        self.metric_results = table.dataset_means(dataset_name)
        for name, value in self.metric_results.items():
            self._update_best_metric_result(dataset_name, name, value, current_iter)
        if inputs:
            means = {name: fmean(v[name] for v in inputs) for name in metrics_opt}
            self.input_metric_results[dataset_name] = means
            logger.info(f'Validation {dataset_name} (degraded input, no network)\n'
                        + ''.join(f'\t # {name}: {value:.4f}\n' for name, value in means.items()))
            if tb_logger:
                for name, value in means.items():
                    tb_logger.add_scalar(f'metrics/{dataset_name}/input_{name}', value, 0)
        self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
        if val_opt.get('metrics_table', not is_train):
            table.write()
            logger.info(f'Metrics table ({table.md_path}, per image: {table.csv_path}):\n' + table.markdown())

    def _results_table(self, current_iter: Any, dataset_name: str) -> ResultsTable:
        """The per-image table of this test run / validation round (written only with ``val.metrics_table``)."""
        if self.opt['is_train']:
            out_dir = osp.join(self.opt['path']['experiments_root'], 'metrics', f'iter_{current_iter}')
        else:
            out_dir = self.opt['path'].get('results_root') or osp.dirname(self.opt['path']['visualization'])
        if self._table is None or self._table.out_dir != out_dir:
            self._table = ResultsTable(out_dir, self.opt['val'].get('combined_rows'))
        self._table.start_dataset(dataset_name)
        return self._table
