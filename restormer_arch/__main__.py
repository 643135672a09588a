"""``python -m restormer_arch ...`` is the ``basicsr`` command."""
from restormer_arch.cli import main

if __name__ == '__main__':
    raise SystemExit(main())
