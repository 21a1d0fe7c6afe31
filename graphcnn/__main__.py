"""``python -m graphcnn ...``: the ``graphcnn`` command, where the script is not on PATH."""
import sys

from graphcnn.cli import main

sys.exit(main())
