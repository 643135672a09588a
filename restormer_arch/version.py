"""The package version (static: no generated file, no git lookup at import time)."""
__version__ = '0.1.0'
