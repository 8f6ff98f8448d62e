"""``python -m rwenas.cli``: the same as the ``rwenas`` command."""

import sys

from rwenas.cli import main

sys.exit(main())
