"""`python -m recsys.cli`."""

import sys

from recsys.cli import main

sys.exit(main())
