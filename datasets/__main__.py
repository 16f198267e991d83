"""Entry point of ``python -m datasets`` (see :mod:`datasets.cli`)."""

import sys

from datasets.cli import main

if __name__ == "__main__":
    sys.exit(main())
