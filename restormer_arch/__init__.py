"""Restormer for BasicSR.

Importing this package first applies the BasicSR compatibility fixes (:mod:`restormer_arch.compat`), then registers
everything the plugin provides in BasicSR's registries: explicit imports, no folder scanning.
"""
# isort: off
from . import compat  # noqa: F401  (must run before anything imports basicsr)
from . import archs  # noqa: F401
from . import data  # noqa: F401
from . import losses  # noqa: F401
from . import metrics  # noqa: F401
from . import models  # noqa: F401
# isort: on
from .archs import Restormer
from .restorer import load_restormer
from .version import __version__

__all__ = ['Restormer', 'load_restormer', '__version__']
