"""``python -m tests.integration.probe_main [flags]``: the probe as a real controller process."""

from __future__ import annotations

import sys

from controllers.cmd import main
from tests.integration.probe import Probe

if __name__ == "__main__":
    sys.exit(main("probe-controller", lambda args: [Probe()]))
