"""``python -m benchmarks`` is ``edge-bench`` (for environments without the console script)."""

import sys

from benchmarks.cli import main

sys.exit(main())
