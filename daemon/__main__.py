"""``python -m daemon`` is ``daemond``, with the same import path: the working directory,
which ``-m`` puts first on ``sys.path``, is not searched for plugins (see daemon/loader.py)."""

import os
import sys

if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from daemon.cli import main  # noqa: E402

sys.exit(main())
