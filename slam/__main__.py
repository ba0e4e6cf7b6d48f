"""`python -m slam` is the same as the `slam` console script."""

import sys

from slam.cli import main

sys.exit(main())
