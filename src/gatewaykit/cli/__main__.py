"""``python -m gatewaykit.cli``: the same as the ``gatewaykit`` command."""

import sys

from gatewaykit.cli import main

sys.exit(main())
