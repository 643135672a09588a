"""Packaging for restormer-basicsr (static version, runtime dependencies only in install_requires)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r"__version__ = '([^']+)'", (HERE / 'restormer_arch' / 'version.py').read_text()).group(1)

setup(
    name='restormer-basicsr',
    version=VERSION,
    description='Restormer (CVPR 2022) as a BasicSR plugin: exact, weight-compatible, fast, tested.',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    keywords='image restoration, transformer, restormer, basicsr, deraining, deblurring, denoising',
    packages=find_packages(include=['restormer_arch', 'restormer_arch.*']),
    python_requires='>=3.9',
    install_requires=[
        'basicsr==1.4.2',
        'torch>=2.1',
        'torchvision',
        'einops',
        'lmdb',
        'opencv-python',
        'Pillow',  # image headers for the dataset checks (already required by basicsr)
        'requests',  # released weights: resumable downloads (already required by basicsr)
        'tqdm',  # progress bars (already required by basicsr)
    ],
    extras_require={
        'test': ['pytest>=7', 'scikit-image'],
        # onnx + onnxruntime (CPU wheel, ~15 MB) so that CI runs the ONNX export tests.
        'dev': ['pytest>=7', 'scikit-image', 'ruff>=0.5', 'onnx>=1.14', 'onnxruntime>=1.16'],
        'lpips': ['lpips>=0.1.4'],
        'onnx': ['onnx>=1.14', 'onnxruntime>=1.16'],  # basicsr export; onnxruntime only to run/check the files
        'bench': ['onnx>=1.14', 'onnxruntime>=1.16', 'openvino'],  # peer rows of benchmarks/benchmark.py
    },
    entry_points={'console_scripts': ['basicsr = restormer_arch.cli:main']},
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Image Processing',
        'Intended Audience :: Science/Research',
    ],
)
