"""``python -m proxy`` is the same as the ``tapproxy`` command."""

import sys

from proxy.cli.main import main

sys.exit(main())
