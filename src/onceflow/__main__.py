"""``python -m onceflow``; also the file ``spark-submit`` runs (``onceflow entrypoint``)."""

from __future__ import annotations

import sys

from onceflow.cli import main

if __name__ == "__main__":
    sys.exit(main())
