"""``python -m restormer_arch.evaluation``: score a result folder with a benchmark protocol."""
import sys

import restormer_arch  # noqa: F401  (BasicSR compat fixes and metric registration)
from restormer_arch.evaluation.folders import main

sys.exit(main())
