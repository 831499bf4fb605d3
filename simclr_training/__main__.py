import sys

from simclr_training.cli import main

sys.exit(main())
