"""``python -m tests.integration.probe_main [flags]``: the probe as a real controller process."""

from __future__ import annotations

import os
import sys

from controllers.cmd import main
from tests.integration.probe import Probe

if __name__ == "__main__":
    delay = float(os.environ.get("PROBE_DELAY", "0"))
    sys.exit(main("probe-controller", lambda args: [Probe(delay=delay)]))
