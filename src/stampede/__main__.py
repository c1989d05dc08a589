"""``python -m stampede`` is the ``stampede`` command."""

import sys

from stampede.cli import main

sys.exit(main())
