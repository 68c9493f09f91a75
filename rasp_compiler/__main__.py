"""``python -m rasp_compiler``: the same command line as ``rasp-compiler``."""

import sys

from .cli import main

sys.exit(main())
