"""``python -m bottomup.bench``: see :mod:`bottomup.bench`."""

import sys

from bottomup.bench.cli import main

sys.exit(main())
