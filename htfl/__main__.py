"""``python -m htfl`` is the `htfl` command."""

import sys

from htfl.cli import main

sys.exit(main())
