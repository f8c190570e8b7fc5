"""``python -m daemon`` is ``daemond``."""

import sys

from daemon.cli import main

sys.exit(main())
