#!/usr/bin/env python
"""Same as `sprm convert reasonflux SRC_DIR DST_DIR [options]` (see conversion/README.md and `--help`)."""

import sys

from modeling_sprm.apps.cli import main

if __name__ == "__main__":
    main(["convert", "reasonflux", *sys.argv[1:]])
