"""``monai-pipeline infer``: segment new scans with a trained run."""

from __future__ import annotations

import argparse

from monai_pipeline.errors import PipelineError

NAME = "infer"
HELP = (
    "Segment the liver and liver tumours of new CT scans (NIfTI, NRRD, MHA, a DICOM folder, or a folder of scans) "
    "with a trained run; masks are written in each scan's own geometry, with lesion measurements."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the infer command."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="RUN",
        help="training run folder (or bundle with models/), or 'phantom': the shipped model trained on phantoms only",
    )
    parser.add_argument("--input", required=True, metavar="PATH", help="scan file, DICOM folder or folder of scans")
    parser.add_argument("--output", required=True, metavar="OUT", help="output folder")
    parser.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:N")
    parser.add_argument("--folds", nargs="+", help="average the runs RUN/fold<K> of these folds")
    parser.add_argument("--tta", action="store_true", help="average over mirrored inputs (slower, a little better)")
    parser.add_argument("--save-probabilities", action="store_true", help="write liver and tumour probability maps")
    parser.add_argument("--preview", action="store_true", help="write a PNG preview per scan")
    parser.add_argument("--no-postprocess", action="store_true", help="keep the raw network mask (no step below)")
    parser.add_argument("--no-largest-liver", action="store_true", help="keep every liver region, not the largest")
    parser.add_argument("--no-tumour-in-liver", action="store_true", help="keep tumours away from the liver too")
    parser.add_argument("--liver-margin-mm", type=float, default=10.0, help="how far tumours may reach out of liver")
    parser.add_argument("--min-lesion-ml", type=float, default=0.05, help="smaller tumours become liver (0: keep all)")
    parser.add_argument(
        "--min-liver-ml", type=float, help="a smaller liver is no liver: empty mask (default 30; 0 keeps)"
    )
    parser.add_argument("--overlap", type=float, help="sliding-window overlap, 0 to <1 (default: the run's)")
    parser.add_argument("--sw-batch-size", type=int, help="windows per network call (default: the run's)")
    parser.add_argument("--series-uid", help="for DICOM folders with several series, the one to read")
    parser.add_argument(
        "--assume-spacing",
        nargs=3,
        type=float,
        metavar=("X", "Y", "Z"),
        help="voxel size in mm for a scan whose header has none (spacing 0, no sform/qform); else it is refused",
    )


def run(args: argparse.Namespace) -> int:
    """Segment and print a line per scan."""
    from monai_pipeline.inference import PostprocessConfig, infer
    from monai_pipeline.samples import resolve_model

    if args.overlap is not None and not 0 <= args.overlap < 1:
        raise PipelineError(f"--overlap must be >= 0 and < 1, got {args.overlap}")
    if args.sw_batch_size is not None and args.sw_batch_size < 1:
        raise PipelineError(f"--sw-batch-size must be at least 1, got {args.sw_batch_size}")
    for option, value in (
        ("--min-lesion-ml", args.min_lesion_ml),
        ("--liver-margin-mm", args.liver_margin_mm),
        ("--min-liver-ml", args.min_liver_ml),
    ):
        if value is not None and not value >= 0:
            raise PipelineError(f"{option} must be >= 0, got {value}")
    if args.assume_spacing is not None and not all(0 < v < float("inf") for v in args.assume_spacing):
        raise PipelineError(f"--assume-spacing must be three sizes in mm above 0, got {args.assume_spacing}")
    postprocessing = PostprocessConfig.off()
    if not args.no_postprocess:
        postprocessing = PostprocessConfig(
            keep_largest_liver=not args.no_largest_liver,
            tumour_in_liver=not args.no_tumour_in_liver,
            liver_margin_mm=args.liver_margin_mm,
            min_lesion_ml=args.min_lesion_ml,
            min_liver_ml=PostprocessConfig.min_liver_ml if args.min_liver_ml is None else args.min_liver_ml,
        )
    summary = infer(
        resolve_model(args.model),
        args.input,
        args.output,
        folds=args.folds,
        device=args.device,
        tta=args.tta,
        save_probabilities=args.save_probabilities,
        preview=args.preview,
        postprocessing=postprocessing,
        overlap=args.overlap,
        sw_batch_size=args.sw_batch_size,
        series_uid=args.series_uid,
        assume_spacing=args.assume_spacing,
        progress=not args.quiet,
    )
    for name, case in summary.cases.items():
        print(
            f"{name}: liver {case['liver_volume_ml']:.1f} mL, {case['lesions']} lesion(s), "
            f"tumour {case['tumour_volume_ml']:.1f} mL (burden {100 * case['tumour_burden']:.2f}%), "
            f"{case['seconds']:.1f} s"
            + (f", flags: {', '.join(flag['code'] for flag in case['flags'])}" if case["flags"] else "")
        )
    for name, message in summary.failed.items():
        print(f"failed {name}: {message}")
        if args.debug:
            print(summary.details.get(name, ""))
    print(f"{len(summary.cases)} scan(s) segmented, {len(summary.failed)} failed -> {summary.output_dir}")
    return 0 if summary.ok else 1
