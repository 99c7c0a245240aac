"""``monai-pipeline demo``: the whole pipeline on synthetic phantoms, with nothing to download and no GPU, ending on
a real CT.

Every stage goes through the public API a user would call: the phantom writer, ``prepare_dataset`` (the
``data_prep`` code), the bundle's training through MONAI's ``ConfigWorkflow``, ``infer`` (the ``infer`` command's
code) on held-out phantoms, and ``evaluate``. Last, the model segments the real CT shipped with the package
(:mod:`monai_pipeline.samples`) and its liver is scored against TotalSegmentator's liver on that scan.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from monai_pipeline.errors import InputError

NAME = "demo"
HELP = (
    "Run the whole pipeline on synthetic LiTS-like phantoms: write them, prepare them, train the 3D bundle for a "
    "short CPU budget, segment held-out phantoms and evaluate, then segment the real CT shipped with the package "
    "and score its liver against TotalSegmentator's. Re-running into a previous demo folder resumes it: "
    "finished stages are kept and training continues from its last checkpoint."
)
MARKER = ".monai_pipeline_demo"

DEMO_SPACING_MM = 3.0
"""Voxel size the demo prepares at: coarse enough for a CPU, fine enough for tumours of 10 mm."""

TUMOUR_EPOCHS = 40
"""Epochs the demo's model needs before it starts to find tumours (it reaches about 58 in the default budget on a
quiet laptop); a run that ends sooner gets a warning that its tumour figures mean little."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the demo command."""
    parser.add_argument("--out", default="demo_output", help="folder for everything the demo writes")
    parser.add_argument("--cases", type=int, default=10, help="synthetic training phantoms")
    parser.add_argument("--held-out", type=int, default=4, help="synthetic phantoms to segment and evaluate")
    parser.add_argument("--minutes", type=float, default=7.5, help="training budget in minutes")
    parser.add_argument(
        "--epochs",
        type=int,
        default=100,
        help="training epochs: the cosine schedule decays over them (the budget may end first)",
    )
    parser.add_argument("--workers", type=int, default=2, help="parallel processes for preparation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phantoms, folds and training")


def run(args: argparse.Namespace) -> int:
    """Run every stage and print the figures and where the outputs are."""
    from monai_pipeline.evaluation import evaluate
    from monai_pipeline.inference import infer
    from monai_pipeline.prepare import prepare_dataset
    from monai_pipeline.preprocessing import PreprocessingConfig
    from monai_pipeline.synth import write_synthetic_dataset
    from monai_pipeline.training.workflow import default_bundle, train

    if args.cases < 3 or args.held_out < 1 or args.minutes <= 0:
        raise InputError(args.out, "the demo needs --cases >= 3, --held-out >= 1 and --minutes > 0")
    out = Path(args.out)
    _claim(out)
    paths = {
        "raw": out / "raw",
        "held_out": out / "held_out",
        "prepared": out / "prepared",
        "run": out / "run",
        "predictions": out / "predictions",
        "evaluation": out / "evaluation",
        "real": out / "real_sample",
    }
    quiet = args.quiet
    timings: dict[str, float] = {}

    def stage(name: str):
        timings[name] = time.perf_counter()
        print(f"== {name}", flush=True)

    def done(name: str) -> None:
        timings[name] = time.perf_counter() - timings[name]

    stage("synthesise")
    if not (paths["raw"] / f"segmentation-{args.cases - 1}.nii.gz").is_file():
        write_synthetic_dataset(paths["raw"], args.cases, seed=args.seed, progress=not quiet)
    held = paths["held_out"]
    if not (held / "labels" / f"segmentation-{args.held_out - 1}.nii.gz").is_file():
        _write_held_out(held, args.held_out, args.seed + 1000, quiet)
    done("synthesise")

    stage("prepare")
    prepare_dataset(
        paths["raw"],
        paths["prepared"],
        PreprocessingConfig(spacing=(DEMO_SPACING_MM,) * 3),
        folds=min(5, args.cases),
        seed=args.seed,
        workers=args.workers,
        progress=not quiet,
    )
    done("prepare")

    stage("train")
    train(
        default_bundle(),
        paths["prepared"],
        fold=0,
        epochs=args.epochs,
        output_dir=paths["run"],
        overrides={"seed": args.seed, "max_minutes": args.minutes},
        configs=["cpu"],
        quiet=quiet,
    )
    done("train")
    trained = _epochs_trained(paths["run"])

    stage("infer")
    inferred = infer(
        paths["run"], held / "images", paths["predictions"], device="auto", preview=True, progress=not quiet
    )
    done("infer")

    stage("evaluate")
    report = evaluate(paths["predictions"], held / "labels", paths["evaluation"])
    done("evaluate")

    stage("real CT")
    real = _real_sample(paths, quiet)
    done("real CT")

    _print_table(report, timings, inferred, paths, f"{trained} of {args.epochs} ({args.minutes:g}-minute budget)")
    _print_real(*real)
    _warn_if_short(trained, args.epochs, args.minutes)
    return 0 if inferred.ok and real[1].ok else 1


def _epochs_trained(run: Path) -> int:
    """The epochs the run in ``run`` has finished, from its training log (0 when it has none)."""
    import csv

    log = run / "training_log.csv"
    if not log.is_file():
        return 0
    with log.open(newline="") as stream:
        return max((int(row["epoch"]) for row in csv.DictReader(stream)), default=0)


def _warn_if_short(trained: int, epochs: int, minutes: float) -> None:
    """Say plainly when the budget ended training before the model could learn tumours."""
    if trained >= min(epochs, TUMOUR_EPOCHS):
        return
    needed = math.ceil(minutes * TUMOUR_EPOCHS / max(trained, 1))
    print()
    print(
        f"warning: only {trained} epochs ran in the {minutes:g}-minute budget (this machine is slower or busy); the "
        f"model needs about {TUMOUR_EPOCHS} before it finds tumours, so the tumour figures above mean little. "
        f"Re-run with --minutes {needed} into the same --out: training continues where it stopped."
    )


def _real_sample(paths: dict[str, Path], quiet: bool):
    """Segment the shipped real CT with the demo's model, with a preview, and score its liver."""
    from monai_pipeline.evaluation import evaluate
    from monai_pipeline.inference import infer
    from monai_pipeline.samples import totalseg_example_ct

    sample = totalseg_example_ct()
    folder = paths["real"]
    inferred = infer(paths["run"], sample.scan, folder / "prediction", device="auto", preview=True, progress=not quiet)
    report = None
    if inferred.ok:
        (case,) = inferred.cases
        report = evaluate(folder / "prediction" / f"{case}_seg.nii.gz", sample.liver, folder / "evaluation")
    return sample, inferred, report


def _print_real(sample, inferred, report) -> None:
    print()
    if report is None:
        print(f"real CT {sample.scan.name}: failed ({'; '.join(inferred.failed.values())})")
        return
    ((case, info),) = inferred.cases.items()
    flags = info.get("flags", [])
    print(f"| real CT ({sample.name}) | value |")
    print("|---|---:|")
    print(f"| liver Dice against TotalSegmentator's liver | {report.summary['liver']['dice_per_case']['mean']:.3f} |")
    print(f"| liver volume (mL) | {info['liver_volume_ml']:.0f} |")
    print(f"| lesions reported | {info['lesions']} |")
    print(f"| quality flags | {', '.join(f['code'] for f in flags) or 'none'} |")
    print()
    print(f"its mask and preview:            {inferred.output_dir} ({case}_seg.nii.gz, {case}_preview.png)")
    print(f"reference: {sample.source}")


def _write_held_out(folder: Path, cases: int, seed: int, quiet: bool) -> None:
    """Phantoms the model never sees: scans in ``images/``, their labels in ``labels/`` (LiTS names)."""
    from monai_pipeline.synth import write_synthetic_dataset

    staging = folder / "staging"
    write_synthetic_dataset(staging, cases, seed=seed, progress=not quiet)
    for kind, target in (("volume", "images"), ("segmentation", "labels")):
        (folder / target).mkdir(parents=True, exist_ok=True)
        for path in sorted(staging.glob(f"{kind}-*.nii.gz")):
            path.replace(folder / target / path.name)
    (staging / "phantoms.json").replace(folder / "phantoms.json")  # each case's phase and field of view
    staging.rmdir()


def _print_table(report, timings: dict[str, float], inferred, paths: dict[str, Path], epochs: str) -> None:
    summary = report.summary
    detection = summary["lesion_detection"]["iou>0.5"]
    rows = [
        ("liver Dice (mean per case)", summary["liver"]["dice_per_case"]["mean"]),
        ("tumour Dice (global)", summary["tumour"]["dice_global"]),
        ("tumour Dice (mean per case)", summary["tumour"]["dice_per_case"]["mean"]),
        ("lesion recall (IoU > 0.5)", detection["recall"]),
        ("lesion precision (IoU > 0.5)", detection["precision"]),
    ]
    print()
    print(f"| held-out phantoms ({len(report.cases)}) | value |")
    print("|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value:.3f} |")
    print(f"| epochs trained | {epochs} |")
    print()
    print("| stage | seconds |")
    print("|---|---:|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"| total | {sum(timings.values()):.1f} |")
    print()
    print(f"masks, lesion reports, previews: {paths['predictions']} (<case>_seg.nii.gz, _lesions.csv, _preview.png)")
    print(
        f"metrics:                         {paths['evaluation']} (metrics.csv, lesions.csv, summary.json, summary.png)"
    )
    print(f"trained run:                     {paths['run']} (model.pt, run.json, training_log.csv)")
    print(f"prepared dataset:                {paths['prepared']}")


def _claim(out: Path) -> None:
    """Use ``out`` for the demo: new, empty, or a previous demo's folder; anything else is refused."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InputError(out, "is not empty and not a previous demo folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by monai-pipeline demo\n")
