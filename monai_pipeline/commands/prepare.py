"""``monai-pipeline prepare`` (also ``python -m data_prep.prepare_lits``): preprocess a LiTS or MSD dataset."""

from __future__ import annotations

import argparse
import logging

from monai_pipeline.errors import PipelineError
from monai_pipeline.preprocessing.config import DEFAULT_SPACING, DEFAULT_WINDOW, PreprocessingConfig

NAME = "prepare"
HELP = "Preprocess a LiTS download or MSD Task03_Liver folder into images, labels and a MONAI datalist with folds."

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the prepare command."""
    parser.add_argument("--data-dir", required=True, metavar="RAW", help="LiTS download or MSD Task03_Liver folder")
    parser.add_argument("--out-dir", required=True, metavar="PREP", help="folder to write the prepared dataset to")
    parser.add_argument(
        "--spacing", nargs=3, type=float, default=DEFAULT_SPACING, metavar=("X", "Y", "Z"), help="target spacing (mm)"
    )
    parser.add_argument(
        "--window", nargs=2, type=float, default=DEFAULT_WINDOW, metavar=("LO", "HI"), help="HU window, scaled to 0..1"
    )
    parser.add_argument(
        "--normalization",
        choices=("window", "zscore"),
        default="window",
        help="'window' clips to --window and scales to [0, 1]; 'zscore' uses the liver HU percentiles, mean and std "
        "of the dataset (nnU-Net's CT scheme)",
    )
    parser.add_argument("--interpolator", choices=("linear", "bspline"), default="linear", help="for the CT")
    parser.add_argument("--orientation", default="RAS", help="axis code the scans are reoriented to")
    parser.add_argument("--no-crop", action="store_true", help="keep the whole field of view (no crop to the body)")
    parser.add_argument(
        "--folds",
        type=int,
        help="cross-validation folds (default: 5, or one per labelled case when there are fewer); 1 puts every case "
        "in fold 0 and training validates on its own cases",
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    parser.add_argument(
        "--resample-labels",
        action="store_true",
        help="resample a label on other voxels than its CT onto the CT's grid (nearest neighbour); a label on the "
        "same voxels in another orientation is always reoriented",
    )


def build_config(args: argparse.Namespace) -> PreprocessingConfig:
    """The preprocessing parameters the options ask for."""
    try:
        return PreprocessingConfig(
            spacing=tuple(args.spacing),
            window=tuple(args.window),
            normalization=args.normalization,
            image_interpolator=args.interpolator,
            orientation=args.orientation.upper(),
            crop_to_body=not args.no_crop,
        )
    except ValueError as err:
        raise PipelineError(f"invalid option: {err}") from err


def run(args: argparse.Namespace) -> int:
    """Prepare the dataset and print what was done."""
    from monai_pipeline.prepare import prepare_dataset

    if args.workers < 1:
        raise PipelineError(f"--workers must be at least 1, got {args.workers}")
    summary = prepare_dataset(
        args.data_dir,
        args.out_dir,
        build_config(args),
        folds=args.folds,
        seed=args.seed,
        workers=args.workers,
        resample_labels=args.resample_labels,
        progress=not args.quiet,
    )
    print(
        f"prepared {len(summary.prepared)} case(s), skipped {len(summary.skipped)} already done, "
        f"{len(summary.failed)} failed -> {summary.out_dir}"
    )
    for name, message in sorted(summary.failed.items()):
        print(f"failed {name}: {message}")
        if args.debug:
            print(summary.details.get(name, ""))
    return 0 if summary.ok else 1
