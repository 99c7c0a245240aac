"""``monai-pipeline synth``: write a synthetic LiTS-like dataset of CT phantoms with liver and tumour labels."""

from __future__ import annotations

import argparse

from monai_pipeline.errors import PipelineError

NAME = "synth"
HELP = "Write synthetic LiTS-like CT phantoms (int16 HU, liver and tumour labels) in the LiTS or MSD layout."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the synth command."""
    parser.add_argument("--out", required=True, metavar="RAW", help="folder to write the dataset to")
    parser.add_argument("--cases", type=int, default=8, help="number of cases")
    parser.add_argument("--seed", type=int, default=0, help="seed: the same seed writes the same dataset")
    parser.add_argument("--layout", choices=("lits", "msd"), default="lits", help="LiTS or MSD Task03_Liver layout")
    parser.add_argument("--size", nargs=3, type=int, metavar=("X", "Y", "Z"), help="voxels per case (default varies)")
    parser.add_argument("--spacing", nargs=3, type=float, metavar=("X", "Y", "Z"), help="mm (default varies)")
    parser.add_argument(
        "--phase",
        choices=("mixed", "non-contrast", "arterial", "portal-venous"),
        default="mixed",
        help="contrast phase of every case (default: mixed, drawn per case)",
    )
    parser.add_argument(
        "--fov",
        choices=("mixed", "abdomen", "partial-liver", "chest", "pelvis"),
        default="mixed",
        help="field of view of every case (default: mixed, mostly abdomen; chest and pelvis cases have no liver)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the phantoms and print where."""
    from monai_pipeline.synth import write_synthetic_dataset

    if args.cases < 1:
        raise PipelineError(f"--cases must be at least 1, got {args.cases}")
    paths = write_synthetic_dataset(
        args.out,
        args.cases,
        seed=args.seed,
        layout=args.layout,
        size=tuple(args.size) if args.size else None,
        spacing=tuple(args.spacing) if args.spacing else None,
        progress=not args.quiet,
        phase=None if args.phase == "mixed" else args.phase,
        fov_mix=None if args.fov == "mixed" else args.fov,
    )
    print(f"wrote {args.cases} synthetic case(s) ({len(paths)} files, {args.layout} layout) -> {args.out}")
    return 0
