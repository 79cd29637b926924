"""``python -m lesion_core`` (``PythonSlicer -m lesion_core`` inside Slicer) = the CLI."""

import sys

from .cli import main

sys.exit(main())
