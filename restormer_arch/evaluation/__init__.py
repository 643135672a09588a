"""Benchmark file formats: SIDD validation blocks in, DND submission files out."""
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
