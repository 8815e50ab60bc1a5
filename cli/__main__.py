"""``python -m cli ...``: the ``portfolio-sync`` command without its console script."""

import sys

from cli.main import main

sys.exit(main())
