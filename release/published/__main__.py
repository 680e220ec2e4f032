"""``python -m release.published``: regenerate (or --check) the published release's cards."""

import sys

from sppo.cli_util import run_cli

from . import main

sys.exit(run_cli(main, sys.argv[1:]))
