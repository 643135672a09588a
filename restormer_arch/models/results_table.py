"""What validation and ``basicsr test`` score and write: the metric images and the per-image tables.

``val.image_dtype`` says what the metrics compare (the restored image and the ground truth alike):

* ``uint8`` (default): BasicSR's ``tensor2img`` (clamped to [0, 1], x255, rounded): what the published numbers of
  deraining, motion deblurring and Gaussian denoising were computed on (saved 8-bit PNGs).
* ``uint16``: clamped, x65535, rounded - for 16-bit ground truth (DPDD dual-pixel): the 16-bit target survives
  exactly and the metrics take the peak 65535 from the dtype. Saved images are 16-bit PNGs.
* ``float32``: clamped to [0, 1], not quantised - the official DPDD and SIDD scripts score the network's float output.
  Every metric then needs ``data_range: 1``.

BasicSR's ``calculate_psnr`` / ``calculate_ssim`` hard-code the peak 255, so they only accept ``uint8``;
the option check refuses other combinations before the run starts (:mod:`restormer_arch.options.rules`).

:class:`ImageCleanModel` records the value of every metric for every image. With ``val.metrics_table`` the table is
printed (logged) after each dataset and both files are rewritten with everything recorded so far, so they are complete
once the last dataset of the option file is done (BasicSR's ``test_pipeline`` calls ``validation`` once per dataset
and never says which one is the last):

* ``metrics.csv``: one row per image per dataset, columns ``dataset, image, <metric>...`` (full precision).
* ``metrics.md``: one row per dataset with the image count and the mean of every metric, then the combined rows of
  ``val.combined_rows`` (as the paper reports them).

Combined rows (``val.combined_rows``, a list) have a ``name``, the ``datasets`` they cover and a ``weight``:

* ``weight: dataset``: the mean of the dataset means (the paper's deraining *Average* over the five test sets);
* ``weight: image`` (default): the mean over all images of those datasets (the DPDD *Combined* column over the
  indoor and outdoor scenes).

A combined row is written once all of its datasets have been scored.
"""
import csv
import os
from os import path as osp
from statistics import fmean
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
from basicsr.utils import tensor2img
from torch import Tensor

from restormer_arch.atomic import atomic_write

IMAGE_DTYPES = ('uint8', 'uint16', 'float32')
UINT8_ONLY_METRICS = ('calculate_psnr', 'calculate_ssim', 'calculate_niqe')
COMBINED_WEIGHTS = ('image', 'dataset')
# metrics.md files written in this process, oldest first: ``basicsr test`` prints them when the run is over.
WRITTEN_TABLES: List[str] = []


def to_metric_image(tensor: Tensor, dtype: str = 'uint8') -> np.ndarray:
    """A ``(C, H, W)`` RGB (or gray) tensor in [0, 1] as the ``H x W (x 3)`` BGR array the metrics receive.

    Args:
        tensor: One image.
        dtype: ``uint8``, ``uint16`` or ``float32`` (see the module docstring).

    Returns:
        HWC BGR array (HW for one channel), like BasicSR's ``tensor2img``.
    """
    img = tensor2img([tensor], out_type=np.uint8 if dtype == 'uint8' else np.float32)  # clamped to [0, 1]
    return np.round(img * 65535.0).astype(np.uint16) if dtype == 'uint16' else img


class ResultsTable:
    """Metric values per image, grouped by dataset, with per-dataset and combined averages.

    Args:
        out_dir: Folder of ``metrics.csv`` and ``metrics.md`` (created on the first write).
        combined_rows: The ``val.combined_rows`` option (see the module docstring).

    Attributes:
        csv_path: Path of the per-image table, ``<out_dir>/metrics.csv``.
        md_path: Path of the averages table, ``<out_dir>/metrics.md``.

    Raises:
        ValueError: A combined row is not ``{name: text, datasets: [names], weight: image | dataset}``.
    """

    def __init__(self, out_dir: str, combined_rows: Optional[List[Mapping[str, Any]]] = None) -> None:
        for i, row in enumerate(combined_rows or []):
            datasets = row.get('datasets') if isinstance(row, dict) else None
            if not (isinstance(datasets, list) and datasets and isinstance(row.get('name'), str)
                    and all(isinstance(d, str) for d in datasets) and row.get('weight', 'image') in COMBINED_WEIGHTS):
                raise ValueError(f'[{i}]: expected {{name: <text>, datasets: [<dataset names>], weight: '
                                 f'{" or ".join(COMBINED_WEIGHTS)} (default image)}}, got {row!r}.')
        self.out_dir = out_dir
        self.csv_path, self.md_path = osp.join(out_dir, 'metrics.csv'), osp.join(out_dir, 'metrics.md')
        self.combined_rows = list(combined_rows or [])
        self.rows: Dict[str, List[Dict[str, Any]]] = {}  # dataset -> [{'image': name, metric: value, ...}]
        self.metric_names: List[str] = []

    def add(self, dataset: str, image: str, values: Mapping[str, float]) -> None:
        """Record the metric values of one image.

        Args:
            dataset: Dataset name (``datasets.<phase>.name``).
            image: Image name (file stem, or a block name such as ``0000_00``).
            values: ``{metric name: value}``.
        """
        self.metric_names += [name for name in values if name not in self.metric_names]
        self.rows.setdefault(dataset, []).append({'image': image, **{k: float(v) for k, v in values.items()}})

    def start_dataset(self, dataset: str) -> None:
        """Forget earlier values of ``dataset`` (a dataset scored twice with the same weights replaces its rows)."""
        self.rows.pop(dataset, None)
        self.rows[dataset] = []

    def dataset_means(self, dataset: str) -> Dict[str, float]:
        """Mean of every metric over the images of ``dataset`` (a dataset with some)."""
        return {m: fmean([r[m] for r in self.rows[dataset]]) for m in self.metric_names}

    def markdown(self) -> str:
        """The averages as a markdown table: a row per scored dataset, then each combined row whose datasets are all
        scored (in bold, with how it was combined)."""
        header = ['dataset', 'count', *self.metric_names]
        lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] + ['---:'] * (len(header) - 1)) + '|']
        rows = [(d, len(images), self.dataset_means(d)) for d, images in self.rows.items() if images]
        notes = []
        for spec in self.combined_rows:
            names, weight = spec['datasets'], spec.get('weight', 'image')
            if not all(self.rows.get(d) for d in names):
                continue  # not all of its datasets scored (yet)
            if weight == 'dataset':
                values = {m: fmean([self.dataset_means(d)[m] for d in names]) for m in self.metric_names}
            else:
                values = {m: fmean([r[m] for d in names for r in self.rows[d]]) for m in self.metric_names}
            rows.append((f'**{spec["name"]}**', sum(len(self.rows[d]) for d in names), values))
            notes.append(f'- **{spec["name"]}**: {weight} mean of {", ".join(names)}')
        for name, count, values in rows:
            lines.append('| ' + ' | '.join([name, str(count)] + [f'{values[m]:.4f}' for m in self.metric_names]) + ' |')
        return '\n'.join(lines + ([''] + notes if notes else [])) + '\n'

    def write(self) -> None:
        """Write ``metrics.csv`` (every image) and ``metrics.md`` (averages)."""
        os.makedirs(self.out_dir, exist_ok=True)
        with atomic_write(self.csv_path, 'w', encoding='utf-8', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['dataset', 'image', *self.metric_names])
            for dataset, rows in self.rows.items():
                for row in rows:
                    writer.writerow([dataset, row['image'], *(repr(row[m]) for m in self.metric_names)])
        with atomic_write(self.md_path, 'w', encoding='utf-8') as f:
            f.write(self.markdown())
        if self.md_path not in WRITTEN_TABLES:
            WRITTEN_TABLES.append(self.md_path)

