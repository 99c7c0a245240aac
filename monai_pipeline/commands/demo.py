"""``monai-pipeline demo``: the pipeline end to end on synthetic phantoms, with nothing to download."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from monai_pipeline.errors import InputError

NAME = "demo"
HELP = (
    "Run the pipeline on synthetic LiTS-like phantoms: write them, prepare them with the data_prep code. "
    "Re-running into a previous demo folder resumes it (finished steps are skipped)."
)
MARKER = ".monai_pipeline_demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the demo command."""
    parser.add_argument("--out", default="demo_output", help="folder for everything the demo writes")
    parser.add_argument("--cases", type=int, default=6, help="synthetic cases to make")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes for preparation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phantoms and folds")


def run(args: argparse.Namespace) -> int:
    """Make the phantoms, prepare them and print a summary."""
    from monai_pipeline.prepare import prepare_dataset
    from monai_pipeline.preprocessing import PreprocessingConfig
    from monai_pipeline.synth import write_synthetic_dataset

    out = Path(args.out)
    _claim(out)
    raw, prep = out / "raw", out / "prepared"
    timings = {}
    start = time.perf_counter()
    if not (raw / f"segmentation-{args.cases - 1}.nii.gz").is_file():
        write_synthetic_dataset(raw, args.cases, seed=args.seed, progress=not args.quiet)
    timings["synthesise"] = time.perf_counter() - start
    start = time.perf_counter()
    summary = prepare_dataset(
        raw,
        prep,
        PreprocessingConfig(spacing=(2.0, 2.0, 2.0)),
        folds=min(5, args.cases),
        seed=args.seed,
        workers=args.workers,
        progress=not args.quiet,
    )
    timings["prepare"] = time.perf_counter() - start
    print()
    print(f"{'stage':<12} {'seconds':>8}")
    for stage, seconds in timings.items():
        print(f"{stage:<12} {seconds:>8.1f}")
    print(f"\nraw phantoms:      {raw}")
    print(f"prepared dataset:  {prep} ({len(summary.prepared) + len(summary.skipped)} cases)")
    for name in ("datalist.json", "preprocessing.json", "fingerprint.json"):
        print(f"  {name:<17} {prep / name}")
    return 0 if summary.ok else 1


def _claim(out: Path) -> None:
    """Use ``out`` for the demo: new, empty, or a previous demo's folder; anything else is refused."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InputError(out, "is not empty and not a previous demo folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by monai-pipeline demo\n")
