"""Liver Dice on real CT: a model trained on phantoms only, models trained on a few real scans from scratch, and the
phantom model fine-tuned on the same real scans.

    python benchmarks/bench_real.py                       # everything, about an hour on 2 CPU cores
    python benchmarks/bench_real.py --phantom-model RUN   # measure a phantom model trained elsewhere (e.g. on a GPU)

The real scans are the labelled ones in ``../shared/data/real`` (``PROVENANCE.md`` there says what each is). Each
is segmented with ``infer`` as a user would run it, and its liver mask (liver + tumour) is scored against the scan's
label on the scan's own grid. Fine-tuning is leave-one-out: a scan and its crops are held out together, the model
is trained on the other labelled scans, and its final weights (no selection on the held-out scan) are scored on the
held-out one. From scratch and fine-tuned runs use the same recipe and data; fine-tuning gets a third of the
from-scratch wall-clock budget, and CPU minutes are measured for both.

Writes ``benchmarks/results/real/report.json`` and prints the markdown tables recorded in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "real"
BUNDLE = ROOT / "bundles" / "liver_tumor_ct"
REAL = ROOT.parent / "shared" / "data" / "real"
SPACING_MM = 3.0

PHANTOM_SETTINGS = {
    "cases": 24,
    "seed": 11,
    "epochs": 120,
    "minutes": 24.0,
    "configs": ["cpu"],
    "overrides": {"seed": 0},
}
"""The phantom model: the bundle's CPU configuration at 3 mm on phantoms of every phase and field of view."""

REAL_SETTINGS = {
    "scratch_minutes": 6.0,
    "finetune_fraction": 1 / 3,
    "scratch_epochs": 150,
    "finetune_epochs": 50,
    "configs": ["cpu"],
    "scratch_overrides": {"seed": 0, "val_interval": 1000},
    "finetune_overrides": {"seed": 0, "val_interval": 1000, "learning_rate": 3e-3, "warmup_epochs": 0},
}
"""Training on the real scans: the same CPU recipe; fine-tuning starts from the phantom model with a lower rate and
no warm-up. The epochs set the cosine schedule's length, about what the wall-clock budget allows (3 scans: 2
iterations an epoch, about 2.3 s on 2 cores)."""


@dataclass(frozen=True)
class RealScan:
    """A labelled real scan: where it is, which label values are liver (tumours inside them count as liver)."""

    name: str
    group: str
    image: str
    label: str
    liver: tuple[int, ...]
    tumour: tuple[int, ...] = ()
    target: bool = True
    trainable: bool = True
    slices: tuple[int, int] | None = None
    """Only these slices (along the last index axis) of the scan: a field of view made from a bigger scan."""


_TS = "totalseg/"
SCANS = (
    RealScan("totalseg_ct", "totalseg_ct", _TS + "example_ct.nii.gz", _TS + "example_ct_liver_totalseg_fast.nii.gz",
             (1,)),
    RealScan("totalseg_ct_sm", "totalseg_ct", _TS + "example_ct_sm.nii.gz", _TS + "example_seg.nii.gz", (5,),
             target=False, trainable=False),
    RealScan("totalseg_dicom", "totalseg_dicom", _TS + "example_ct_dicom",
             _TS + "example_seg_dicom_liver_binary.nii.gz", (1,)),
    RealScan("lits117", "lits117", "lits117/volume-117.nii.gz", "lits117/segmentation-117.nii.gz", (1, 2), (2,)),
    RealScan("ircad17", "ircad17", "ircad17/ircad17_ct.nii.gz", "ircad17/ircad17_label.nii.gz", (1, 2), (2,)),
    RealScan("dcmqi_3slice", "dcmqi", "dcmqi/ct-3slice", "dcmqi/liver_spine_seg.nrrd", (1,), target=False,
             trainable=False),
    RealScan("totalseg_ct_pelvis", "totalseg_ct", _TS + "example_ct.nii.gz",
             _TS + "example_ct_liver_totalseg_fast.nii.gz", (1,), target=False, trainable=False, slices=(0, 50)),
)  # fmt: skip
"""The crops ``totalseg_ct_sm`` and ``totalseg_ct_pelvis`` (its lowest 150 mm: pelvis and lower abdomen, no liver, so
the mask should be empty and flagged ``no_liver``) are held out with their scan; the 3-slice series (rough label) is
reported only."""


def scan_path(scan: RealScan, real: Path, work: Path) -> Path:
    """The file or folder to segment: the scan itself, or its slices written once into ``work/crops``."""
    if scan.slices is None:
        return real / scan.image
    path = work / "crops" / f"{scan.name}.nii.gz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        image = sitk.ReadImage(str(real / scan.image))
        sitk.WriteImage(image[:, :, scan.slices[0] : scan.slices[1]], str(path))
    return path


def label_on_scan(scan: RealScan, real: Path, reference: sitk.Image) -> np.ndarray:
    """The scan's label as liver (1) and tumour (2) on ``reference``'s grid (nearest neighbour through space)."""
    label = sitk.ReadImage(str(real / scan.label))
    label = sitk.Resample(label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())
    values = sitk.GetArrayFromImage(label)
    out = np.isin(values, scan.liver).astype(np.uint8)
    out[np.isin(values, scan.tumour)] = 2
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def score(run: Path, scans: list[RealScan], real: Path, out: Path) -> dict[str, dict]:
    """Segment each scan with ``run`` and score its liver (and tumour, where labelled) against the label."""
    from monai_pipeline.inference import infer

    results: dict[str, dict] = {}
    for scan in scans:
        target = out / scan.name
        shutil.rmtree(target, ignore_errors=True)
        start = time.perf_counter()
        summary = infer(run, scan_path(scan, real, out.parent), target, device="cpu", progress=False)
        seconds = time.perf_counter() - start
        if not summary.ok:
            results[scan.name] = {"error": next(iter(summary.failed.values()))}
            continue
        ((case, info),) = summary.cases.items()
        mask_image = sitk.ReadImage(str(target / f"{case}_seg.nii.gz"))
        mask = sitk.GetArrayFromImage(mask_image)
        truth = label_on_scan(scan, real, mask_image)
        spacing = float(np.prod(mask_image.GetSpacing()))
        row = {
            "liver_dice": round(dice(mask >= 1, truth >= 1), 4),
            "liver_ml": round(float((mask >= 1).sum()) * spacing / 1000, 1),
            "label_liver_ml": round(float((truth >= 1).sum()) * spacing / 1000, 1),
            "lesions": info.get("lesions"),
            "flags": [flag["code"] for flag in info.get("flags", [])],
            "infer_s": round(seconds, 1),
        }
        if scan.tumour:
            row["tumour_dice"] = round(dice(mask == 2, truth == 2), 4)
        results[scan.name] = row
    return results


def train_run(dataset: Path, run: Path, *, minutes: float, epochs: int, configs, overrides, pretrained=None) -> dict:
    """Train the bundle for a wall-clock budget; returns the wall and CPU minutes it took (this process's CPU)."""
    from monai_pipeline.training.workflow import train

    shutil.rmtree(run, ignore_errors=True)
    wall, cpu = time.perf_counter(), time.process_time()
    train(
        BUNDLE,
        dataset,
        fold=0,
        epochs=epochs,
        output_dir=run,
        pretrained=pretrained,
        overrides={**overrides, "max_minutes": minutes},
        configs=configs,
        quiet=True,
    )
    return {
        "wall_min": round((time.perf_counter() - wall) / 60, 2),
        "cpu_min": round((time.process_time() - cpu) / 60, 2),
        "epochs": _epochs_run(run),
    }


def _epochs_run(run: Path) -> int:
    log = run / "training_log.csv"
    if not log.is_file():
        return 0
    lines = [line for line in log.read_text().splitlines()[1:] if line.strip()]
    return int(lines[-1].split(",")[0]) if lines else 0


def final_weights(run: Path) -> Path:
    """Make the run's ``model.pt`` its last epoch's weights: held-out scans are never used to choose among epochs."""
    import torch

    state = torch.load(run / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    torch.save(state["model"], run / "model.pt")
    return run


def phantom_model(work: Path) -> tuple[Path, dict]:
    """Write phantoms of every phase and field of view, prepare them at 3 mm and train the phantom model."""
    from monai_pipeline.prepare import prepare_dataset
    from monai_pipeline.preprocessing import PreprocessingConfig
    from monai_pipeline.synth import write_synthetic_dataset

    raw, prepared = work / "phantoms", work / "phantoms_prepared"
    write_synthetic_dataset(raw, PHANTOM_SETTINGS["cases"], seed=PHANTOM_SETTINGS["seed"], progress=False)
    prepare_dataset(raw, prepared, PreprocessingConfig(spacing=(SPACING_MM,) * 3), folds=5, progress=False)
    run = work / "phantom_run"
    timing = train_run(
        prepared,
        run,
        minutes=PHANTOM_SETTINGS["minutes"],
        epochs=PHANTOM_SETTINGS["epochs"],
        configs=PHANTOM_SETTINGS["configs"],
        overrides=PHANTOM_SETTINGS["overrides"],
    )
    return run, {"settings": PHANTOM_SETTINGS, **timing}


def prepare_real(real: Path, work: Path) -> Path:
    """The trainable real scans in the LiTS layout (DICOM series converted to NIfTI), prepared at 3 mm."""
    from monai_pipeline.io import read_image, write_image
    from monai_pipeline.prepare import prepare_dataset
    from monai_pipeline.preprocessing import PreprocessingConfig

    raw = work / "real_raw"
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    for index, scan in enumerate(s for s in SCANS if s.trainable):
        image = read_image(real / scan.image)
        write_image(image, raw / f"volume-{index}.nii.gz")
        label = sitk.GetImageFromArray(label_on_scan(scan, real, image))
        label.CopyInformation(image)
        write_image(label, raw / f"segmentation-{index}.nii.gz")
    prepared = work / "real_prepared"
    prepare_dataset(raw, prepared, PreprocessingConfig(spacing=(SPACING_MM,) * 3), folds=2, progress=False)
    return prepared


def leave_out_dataset(prepared: Path, keep: list[int], folder: Path) -> Path:
    """A dataset of the prepared real cases ``keep`` (by index) in one fold, so training validates on its own cases:
    the held-out scan is never seen, and validation only logs (the final weights are scored)."""
    folder.mkdir(parents=True, exist_ok=True)
    datalist = json.loads((prepared / "datalist.json").read_text())
    chosen = [e for e in datalist["training"] if int(Path(e["image"]).name.split("_")[-1].split(".")[0]) in keep]
    rel = Path("..") / prepared.name
    entries = [{**e, "image": str(rel / e["image"]), "label": str(rel / e["label"]), "fold": 0} for e in chosen]
    (folder / "datalist.json").write_text(json.dumps({"training": entries, "test": []}, indent=2))
    shutil.copyfile(prepared / "preprocessing.json", folder / "preprocessing.json")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, default=REAL, help="folder of the real scans (PROVENANCE.md)")
    parser.add_argument("--phantom-model", type=Path, help="a phantom-trained run to use instead of training one")
    parser.add_argument("--phantom-minutes", type=float, default=PHANTOM_SETTINGS["minutes"])
    parser.add_argument("--phantom-epochs", type=int, default=PHANTOM_SETTINGS["epochs"], help="cosine length")
    parser.add_argument("--scratch-minutes", type=float, default=REAL_SETTINGS["scratch_minutes"])
    parser.add_argument("--skip-real-training", action="store_true", help="score the phantom model only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if not (args.real / "PROVENANCE.md").is_file():
        print(f"{args.real}: no real scans there (PROVENANCE.md missing)", file=sys.stderr)
        return 2
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"spacing_mm": SPACING_MM}

    if args.phantom_model:
        run, info = args.phantom_model, {"trained": "elsewhere", "run": str(args.phantom_model)}
    else:
        print("training the phantom model ...", flush=True)
        PHANTOM_SETTINGS["minutes"] = args.phantom_minutes
        PHANTOM_SETTINGS["epochs"] = args.phantom_epochs
        run, info = phantom_model(work)
    report["phantom_model"] = info
    print("scoring the phantom model on every real scan ...", flush=True)
    report["phantom_only"] = score(run, list(SCANS), args.real, work / "pred_phantom")
    _save(report, work)

    if not args.skip_real_training:
        report["real"] = leave_one_out(run, args, work)
        _save(report, work)
    print("\n".join(tables(report)))
    return 0


def leave_one_out(phantom_run: Path, args: argparse.Namespace, work: Path) -> dict:
    """From scratch and fine-tuned from the phantom model, each group of scans held out in turn."""
    prepared = prepare_real(args.real, work)
    trainable = [s for s in SCANS if s.trainable]
    results: dict[str, dict] = {}
    scratch_minutes = args.scratch_minutes
    for group in sorted({s.group for s in trainable}):
        keep = [i for i, s in enumerate(trainable) if s.group != group]
        held = [s for s in SCANS if s.group == group]
        dataset = leave_out_dataset(prepared, keep, work / f"loo_{group}")
        row: dict[str, dict] = {"trained_on": [trainable[i].name for i in keep]}
        for kind, minutes, pretrained in (
            ("scratch", scratch_minutes, None),
            ("finetune", scratch_minutes * REAL_SETTINGS["finetune_fraction"], phantom_run / "model.pt"),
        ):
            print(f"held out {group}: {kind} for {minutes:.1f} min ...", flush=True)
            run = work / f"loo_{group}_{kind}"
            timing = train_run(
                dataset,
                run,
                minutes=minutes,
                epochs=REAL_SETTINGS[f"{kind}_epochs"],
                configs=REAL_SETTINGS["configs"],
                overrides=REAL_SETTINGS[f"{kind}_overrides"],
                pretrained=pretrained,
            )
            final_weights(run)
            row[kind] = {**timing, "scores": score(run, held, args.real, work / f"pred_{group}_{kind}")}
        results[group] = row
    return results


def _save(report: dict, work: Path) -> None:
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")


def tables(report: dict) -> list[str]:
    """The markdown tables: one row per real scan, liver Dice of each kind of model."""
    lines = [
        "| real scan | phantom-only | from scratch on real | phantom, then fine-tuned | target |",
        "|---|---:|---:|---:|---|",
    ]
    real = report.get("real", {})
    for scan in SCANS:
        phantom = report["phantom_only"].get(scan.name, {})
        cells = [_fmt(phantom)]
        for kind in ("scratch", "finetune"):
            cells.append(_fmt(real.get(scan.group, {}).get(kind, {}).get("scores", {}).get(scan.name, {})))
        lines.append(f"| {scan.name} | {' | '.join(cells)} | {'yes' if scan.target else 'reported'} |")
    if real:
        lines += ["", "| held out | trained on | from scratch: epochs, CPU min | fine-tuned: epochs, CPU min |",
                  "|---|---|---:|---:|"]  # fmt: skip
        for group, row in real.items():
            s, f = row["scratch"], row["finetune"]
            lines.append(
                f"| {group} | {', '.join(row['trained_on'])} | {s['epochs']}, {s['cpu_min']} | {f['epochs']}, "
                f"{f['cpu_min']} |"
            )
    return lines


def _fmt(row: dict) -> str:
    if not row:
        return "-"
    if "error" in row:
        return "failed"
    text = f"{row['liver_dice']:.3f}"
    if row.get("flags"):
        text += f" ({', '.join(row['flags'])})"
    return text


if __name__ == "__main__":
    sys.exit(main())
