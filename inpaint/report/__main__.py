"""``python -m inpaint.report RUN_DIR... [--out DIR]``: see :mod:`inpaint.report.cli`."""

import sys

from inpaint.report.cli import main

sys.exit(main())
