import sys

from gan_training.cli import main

sys.exit(main())
