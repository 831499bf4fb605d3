"""``python -m cs231n_grader``: the same command as ``nn-twins-grade``."""

import sys

from cs231n_grader.cli import main

sys.exit(main())
