"""Per-image metric tables of ``basicsr test`` (and, optionally, of validation): ``metrics.csv`` and ``metrics.md``.

:class:`ImageCleanModel` records the value of every metric for every image. After each dataset the table is printed
(logged) and both files are rewritten with everything recorded so far, so they are complete once the last dataset of
the option file is done (BasicSR's ``test_pipeline`` calls ``validation`` once per dataset and never says which one is
the last):

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
import math
import os
from os import path as osp
from typing import Any, Dict, List, Mapping, Optional, Sequence

from restormer_arch.atomic import atomic_write

COMBINED_WEIGHTS = ('image', 'dataset')
# metrics.md files written in this process, oldest first: ``basicsr test`` prints them when the run is over.
WRITTEN_TABLES: List[str] = []


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else float('nan')


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
        for name in values:
            if name not in self.metric_names:
                self.metric_names.append(name)
        self.rows.setdefault(dataset, []).append({'image': image, **{k: float(v) for k, v in values.items()}})

    def start_dataset(self, dataset: str) -> None:
        """Forget earlier values of ``dataset`` (a dataset scored twice with the same weights replaces its rows)."""
        self.rows.pop(dataset, None)
        self.rows[dataset] = []

    def dataset_means(self, dataset: str) -> Dict[str, float]:
        """Mean of every metric over the images of ``dataset``."""
        rows = self.rows.get(dataset, [])
        return {m: _mean([r[m] for r in rows if m in r]) for m in self.metric_names}

    def summary(self) -> List[Dict[str, Any]]:
        """Rows of ``metrics.md``: ``{'dataset', 'count', <metric>: mean}`` per dataset, then the combined rows."""
        out = [{'dataset': d, 'count': len(rows), **self.dataset_means(d)} for d, rows in self.rows.items() if rows]
        for spec in self.combined_rows:
            names = spec['datasets']
            if not all(self.rows.get(d) for d in names):
                continue  # not all of its datasets scored (yet)
            if spec.get('weight', 'image') == 'dataset':
                means = [self.dataset_means(d) for d in names]
                values = {m: _mean([mean[m] for mean in means]) for m in self.metric_names}
            else:
                rows = [r for d in names for r in self.rows[d]]
                values = {m: _mean([r[m] for r in rows if m in r]) for m in self.metric_names}
            out.append({'dataset': spec['name'], 'count': sum(len(self.rows[d]) for d in names), **values,
                        'combined': f'{spec.get("weight", "image")} mean of {", ".join(names)}'})
        return out

    def markdown(self) -> str:
        """The averages as a markdown table (combined rows in bold, with how they were combined)."""
        header = ['dataset', 'count', *self.metric_names]
        lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] + ['---:'] * (len(header) - 1)) + '|']
        notes = []
        for row in self.summary():
            name = f'**{row["dataset"]}**' if 'combined' in row else row['dataset']
            cells = [name, str(row['count'])] + [f'{row[m]:.4f}' for m in self.metric_names]
            lines.append('| ' + ' | '.join(cells) + ' |')
            if 'combined' in row:
                notes.append(f'- **{row["dataset"]}**: {row["combined"]}')
        return '\n'.join(lines + ([''] + notes if notes else [])) + '\n'

    def write(self) -> None:
        """Write ``metrics.csv`` (every image) and ``metrics.md`` (averages)."""
        os.makedirs(self.out_dir, exist_ok=True)
        with atomic_write(self.csv_path, 'w', encoding='utf-8', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['dataset', 'image', *self.metric_names])
            for dataset, rows in self.rows.items():
                for row in rows:
                    writer.writerow([dataset, row['image'], *(repr(row[m]) if m in row else '' for m in
                                                              self.metric_names)])
        with atomic_write(self.md_path, 'w', encoding='utf-8') as f:
            f.write(self.markdown())
        if self.md_path not in WRITTEN_TABLES:
            WRITTEN_TABLES.append(self.md_path)

