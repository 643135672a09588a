"""Training models and schedules. Importing this package registers ``ImageCleanModel`` in ``MODEL_REGISTRY``."""
from .image_clean_model import ImageCleanModel, pad_to_window
from .lr_scheduler import CosineAnnealingRestartCyclicLR
from .progressive import Mixup, ProgressiveSchedule, Stage

__all__ = ['ImageCleanModel', 'CosineAnnealingRestartCyclicLR', 'Mixup', 'ProgressiveSchedule', 'Stage',
           'pad_to_window']
