"""Network architectures. Importing this package registers them in BasicSR's ``ARCH_REGISTRY``."""
from .restormer_arch import GDFN, MDTA, ChannelLayerNorm, Restormer, TransformerBlock

__all__ = ['Restormer', 'TransformerBlock', 'MDTA', 'GDFN', 'ChannelLayerNorm']
