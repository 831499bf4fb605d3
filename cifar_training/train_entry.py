"""The ``nn-twins-train`` console script: ``train.py`` as an installed command.

CPU thread defaults are set before NumPy and torch load (BLAS libraries read them once, at
import), so this module imports nothing heavy before ``configure_from_argv``.
"""

import sys


def main() -> int:
    from cifar_training.threads import configure_from_argv

    configure_from_argv(sys.argv[1:])
    from cifar_training.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
