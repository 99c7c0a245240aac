"""``monai-pipeline evaluate``: score predicted masks against reference masks as the LiTS challenge does."""

from __future__ import annotations

import argparse

NAME = "evaluate"
HELP = (
    "Compare predicted liver and tumour masks with reference masks, matched by case name: Dice, Jaccard, VOE, RVD, "
    "surface distances (ASSD, MSSD, HD95) in mm, voxel precision and recall, global Dice, lesion detection by size "
    "and tumour burden, as the LiTS challenge scores them."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the evaluate command."""
    parser.add_argument("--pred", required=True, metavar="PRED", help="predicted mask file or folder (e.g. infer's)")
    parser.add_argument("--ref", required=True, metavar="REF", help="reference mask file or folder")
    parser.add_argument(
        "--out", metavar="DIR", help="write metrics.csv, lesions.csv, summary.json and summary.png here"
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail when a prediction or reference has no partner (default: warn)"
    )
    parser.add_argument(
        "--resample-ref",
        action="store_true",
        help="resample a reference on other voxels than its prediction onto the prediction's grid (nearest "
        "neighbour); a reference on the same voxels in another orientation is always reoriented",
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate and print a table of the results."""
    from monai_pipeline.evaluation import evaluate
    from monai_pipeline.evaluation.report import format_table

    result = evaluate(
        args.pred, args.ref, args.out, strict=args.strict, resample_ref=args.resample_ref, progress=not args.quiet
    )
    print(format_table(result.cases, result.summary))
    unmatched = len(result.unmatched_predictions) + len(result.unmatched_references)
    where = f" -> {result.output_dir}" if result.output_dir is not None else ""
    print(f"{len(result.cases)} case(s) evaluated, {unmatched} file(s) without a partner{where}")
    return 0
