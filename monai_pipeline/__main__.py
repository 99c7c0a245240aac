"""``python -m monai_pipeline`` is the ``monai-pipeline`` command."""

from __future__ import annotations

import sys

from monai_pipeline.cli import main

sys.exit(main())
