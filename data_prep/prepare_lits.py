"""Preprocess a LiTS download or an MSD Task03_Liver folder.

Usage::

    python -m data_prep.prepare_lits --data-dir RAW --out-dir PREP [--spacing X Y Z] [--window LO HI]
        [--folds 5] [--workers N] [--seed S]

The same as ``monai-pipeline prepare``; see ``--help`` for every option.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from monai_pipeline.cli import add_common_arguments, run_command
from monai_pipeline.commands import prepare


def main(argv: Sequence[str] | None = None) -> int:
    """Run the preparation with command-line arguments; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m data_prep.prepare_lits", description=prepare.HELP)
    prepare.add_arguments(parser)
    add_common_arguments(parser)
    return run_command(prepare.run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
