"""Training/validation datasets. Importing this package registers them in BasicSR's ``DATASET_REGISTRY``."""
from .gaussian_denoising_dataset import Dataset_GaussianDenoising
from .paired_image_dataset import Dataset_DefocusDeblur_DualPixel_16bit, Dataset_PairedImage
from .sidd_blocks_dataset import Dataset_SIDDBlocks

__all__ = ['Dataset_PairedImage', 'Dataset_GaussianDenoising', 'Dataset_DefocusDeblur_DualPixel_16bit',
           'Dataset_SIDDBlocks']
