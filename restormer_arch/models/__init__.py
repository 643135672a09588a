"""Training models and schedules. Importing this package registers ``ImageCleanModel`` in ``MODEL_REGISTRY``."""
from .image_clean_model import ImageCleanModel
from .lr_scheduler import CosineAnnealingRestartCyclicLR
from .progressive import Mixup, ProgressiveSchedule, Stage

__all__ = ['ImageCleanModel', 'CosineAnnealingRestartCyclicLR', 'Mixup', 'ProgressiveSchedule', 'Stage']
