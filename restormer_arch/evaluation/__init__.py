"""Benchmark evaluation helpers.

* :mod:`.benchmark_io`: SIDD validation blocks in (and scored), DND submission files out.
* :mod:`.folders`: ``python -m restormer_arch.evaluation --protocol P --restored DIR --gt DIR`` scores a result folder
  with a benchmark's protocol.
"""
from .benchmark_io import (
                           DND_BOXES_PER_IMAGE,
                           evaluate_sidd,
                           load_sidd_blocks,
                           read_dnd_submission,
                           save_sidd_results,
                           write_dnd_submission,
)

__all__ = ['DND_BOXES_PER_IMAGE', 'evaluate_sidd', 'load_sidd_blocks', 'read_dnd_submission', 'save_sidd_results',
           'write_dnd_submission']
