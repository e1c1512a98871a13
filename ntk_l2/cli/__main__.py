"""``python -m ntk_l2.cli``: the ``ntk-l2`` command line without the console script."""

import sys

from ntk_l2.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
