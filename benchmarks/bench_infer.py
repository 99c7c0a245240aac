"""Benchmark of ``monai_pipeline.inference.infer`` end to end against a model-zoo-style MONAI inference pipeline.

Run ``python benchmarks/bench_infer.py``; ``--quick`` for a smaller volume, ``--tall`` for the 512x512x900 memory
check (with ``--weak-model`` its worst case: an untrained network marking liver and tumour all over the scan),
``--input FILE`` to benchmark any scan, ``--default-network`` to time ours around the bundle's default network
(untrained weights: timings only). Each measurement runs in a fresh process (its peak RSS is VmHWM, its own); figures
are medians over ``--repeats`` runs, the pipelines taking turns within each repeat.

Both pipelines use the same trained weights: a 3D model trained once on synthetic phantoms with the public API and
the bundle's CPU configuration (see ``MODEL_SETTINGS``), cached under ``benchmarks/results/model/``, or ``--model RUN``.

1. Ours: ``infer(run, scan, out, device="cpu")``, from reading the scan to the mask (and lesion table) written, with
   the default post-processing, and again with ``PostprocessConfig.off()`` for a like-for-like Dice.
2. Ours with the reference's windows: the same code through ``load_model`` and ``run_cases``, with no body crop and
   ``SlidingWindowInferer(overlap=0.5, mode="constant")``, no post-processing: the pipelines' machinery compared
   with the same choices. ``--ablation`` also switches ours' choices to the reference's one at a time (Dice only).
3. Reference, written here from the spleen bundle's ``inference.json`` with MONAI components only: LoadImaged,
   EnsureChannelFirstd, Orientationd(RAS), Spacingd(run's spacing, bilinear), ScaleIntensityRanged(run's window to
   0..1, clip), EnsureTyped; SlidingWindowInferer(run's roi_size and sw_batch_size, overlap 0.5, mode "constant");
   Activationsd(softmax), Invertd(pred, nearest_interp=False), AsDiscreted(argmax), SaveImaged(.nii.gz, float32).
   No body crop and no post-processing. Run as a plain script (no DataLoader, no Ignite evaluator).

The time inside the network is the sum of its forward calls (forward pre/post hooks, ``time.perf_counter``), taken
the same way in both. Goals (2 CPU cores): ours >= 3x faster end to end; time outside the network <= 25 %;
Dice(ours, reference) >= 0.98; peak RSS <= 6 GB on a 512x512x900 scan.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
BUNDLE = ROOT / "bundles" / "liver_tumor_ct"

MODEL_SETTINGS = {
    "field_of_view_mm": [410, 410, 750],
    "in_plane_mm": [0.75, 1.6],
    "slice_mm": [1.5, 5.0],
    "spacing_mm": 3.0,
    "training_cases": 16,
    "held_out_cases": 2,
    "data_seed": 7,
    "epochs": 400,
    "configs": ["cpu"],
    "overrides": {"seed": 0, "max_minutes": 110, "crop_ratios": [2, 2, 2]},
}
"""The benchmark model: the bundle's CPU configuration (``configs/cpu.json``: a 4-level 16-128 filter DynUNet, 48^3
patches, lr 1e-2) at 3 mm, as the demo trains it, with a 400-epoch cosine schedule stopped after 110 minutes (355
epochs on 2 cores, the learning rate down to 3 % of its start), with patches centred on background, liver and tumour
alike (a long scan is mostly background). The phantoms cover the benchmark scan's field of view (410 x 410 x 750
mm): trained on the demo's shorter phantoms (200-280 mm) a model marks liver along a 750 mm scan. Each phantom is
acquired at its own voxel size (in-plane and slice spacing drawn uniformly from the ranges above, orientations
cycling through LPS, RAS, LAI and oblique), as a real dataset is: trained on one acquisition (2 x 2 x 5 mm) a model
meets the benchmark scan's noise texture (0.8 x 0.8 x 2.5 mm) for the first time."""

COMMON = """
import json, sys, time

def peak_mib():
    # VmHWM: this process's own peak RSS (ru_maxrss would carry the parent's peak across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

STAGES = {}
NETWORK = {"seconds": 0.0, "calls": 0, "start": 0.0}

def add(stage, seconds):
    STAGES[stage] = STAGES.get(stage, 0.0) + seconds

def time_network(network):
    # the same forward hooks on the network in both pipelines: the time inside the network's forward calls
    def before(module, args):
        NETWORK["start"] = time.perf_counter()
    def after(module, args, output):
        NETWORK["seconds"] += time.perf_counter() - NETWORK["start"]
        NETWORK["calls"] += 1
    network.register_forward_pre_hook(before)
    network.register_forward_hook(after)
    return network

def report(wall, cpu):
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_mib": peak_mib(), "network_s": NETWORK["seconds"],
                      "network_calls": NETWORK["calls"], "stages": STAGES,
                      "load": open("/proc/loadavg").read().split()[0]}))
"""

OURS = """
from monai_pipeline.inference import PostprocessConfig, infer

# the modules themselves (``monai_pipeline.inference.segment`` is also the name of a function)
predict_module, run_module, segment_module = (
    sys.modules[f"monai_pipeline.inference.{name}"] for name in ("predict", "run", "segment"))

def timed(module, name, stage, after=None):
    original = getattr(module, name)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            result = original(*args, **kwargs)
        finally:
            add(stage, time.perf_counter() - start)
        return after(result) if after else result
    setattr(module, name, wrapper)

def hook_networks(model):
    for network in model.networks:
        time_network(network)
    return model

timed(run_module, "load_model", "model", hook_networks)
timed(run_module, "read_image", "read")
timed(predict_module, "preprocess", "preprocess")
timed(segment_module, "predict_probabilities", "predict")
timed(segment_module, "probabilities_to_labels", "restore")
timed(segment_module, "postprocess", "postprocess")
timed(segment_module, "_lesions", "lesions")
timed(run_module, "segment", "segment")
timed(run_module, "_write_case", "write")
model, scan, out, kind = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
start, cpu = time.perf_counter(), time.process_time()
if kind == "ours_reference_windows":
    # the same code through the API, with the reference's choices: no body crop, windows overlapping by half,
    # weighted equally (MONAI's "constant" mode); no post-processing
    import dataclasses
    from monai.inferers import SlidingWindowInferer
    loaded = run_module.load_model(model, None, "cpu")
    loaded.preprocessing = dataclasses.replace(loaded.preprocessing, crop_to_body=False)
    loaded.inferer = SlidingWindowInferer(roi_size=loaded.inference["roi_size"], overlap=0.5, mode="constant",
                                          sw_batch_size=loaded.inference["sw_batch_size"])
    summary = run_module.run_cases(run_module.find_scans(scan), loaded, out, progress=False,
                                   postprocessing=PostprocessConfig.off())
else:
    summary = infer(model, scan, out, device="cpu", progress=False,
                    postprocessing=None if kind == "ours" else PostprocessConfig.off())
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
assert summary.ok, summary.failed
STAGES["window"] = STAGES.pop("predict") - STAGES["preprocess"] - NETWORK["seconds"]
STAGES["mask_summary"] = STAGES.pop("segment") - sum(
    STAGES[k] for k in ("preprocess", "window", "restore", "postprocess", "lesions")) - NETWORK["seconds"]
report(wall, cpu)
"""

REFERENCE = """
import numpy as np
import torch
from monai.inferers import SlidingWindowInferer
from monai.transforms import (Activationsd, AsDiscreted, Compose, EnsureChannelFirstd, EnsureTyped, Invertd,
                              LoadImaged, Orientationd, SaveImaged, ScaleIntensityRanged, Spacingd, apply_transform)
from monai_pipeline.preprocessing import PreprocessingConfig
from monai_pipeline.training import BEST_NAME, build_network, read_run_record

run, scan, out = sys.argv[1], sys.argv[2], sys.argv[3]

def apply(transforms, data):
    # what Compose does, one transform at a time so that each is timed
    for transform in transforms.transforms:
        start = time.perf_counter()
        data = apply_transform(transform, data)
        add(type(transform).__name__, time.perf_counter() - start)
    return data

start, cpu = time.perf_counter(), time.process_time()
record = read_run_record(run)
config = PreprocessingConfig.load(f"{run}/preprocessing.json")
device = torch.device("cpu")
network = build_network(**record["network"])
network.load_state_dict(torch.load(f"{run}/{BEST_NAME}", map_location="cpu", weights_only=True))
network = time_network(network.to(device).eval())
preprocessing = Compose([
    LoadImaged(keys="image"),
    EnsureChannelFirstd(keys="image"),
    Orientationd(keys="image", axcodes="RAS"),
    Spacingd(keys="image", pixdim=list(config.spacing), mode="bilinear"),
    ScaleIntensityRanged(keys="image", a_min=config.window[0], a_max=config.window[1], b_min=0.0, b_max=1.0,
                         clip=True),
    EnsureTyped(keys="image"),
])
inferer = SlidingWindowInferer(roi_size=record["inference"]["roi_size"],
                               sw_batch_size=record["inference"]["sw_batch_size"], overlap=0.5)
postprocessing = Compose([
    Activationsd(keys="pred", softmax=True),
    Invertd(keys="pred", transform=preprocessing, orig_keys="image", nearest_interp=False, to_tensor=True),
    AsDiscreted(keys="pred", argmax=True),
    SaveImaged(keys="pred", output_dir=out, output_ext=".nii.gz", output_dtype=np.float32, output_postfix="trans",
               separate_folder=False, print_log=False),
])
add("model", time.perf_counter() - start)
data = apply(preprocessing, {"image": scan})
window_start = time.perf_counter()
with torch.no_grad():
    data["pred"] = inferer(data["image"][None].to(device), network)[0]
add("window", time.perf_counter() - window_start - NETWORK["seconds"])
data = apply(postprocessing, data)
report(time.perf_counter() - start, time.process_time() - cpu)
"""

TRAIN = """
import json, sys
from pathlib import Path
from monai_pipeline.prepare import prepare_dataset
from monai_pipeline.preprocessing import PreprocessingConfig
import numpy as np
from monai_pipeline.io import write_image
from monai_pipeline.synth import case_grid, make_phantom
from monai_pipeline.training.workflow import train

settings, root, bundle = json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
cases = settings["training_cases"] + settings["held_out_cases"]
for case in range(cases):
    rng = np.random.default_rng([settings["data_seed"], case, 11])
    in_plane, slices = rng.uniform(*settings["in_plane_mm"]), rng.uniform(*settings["slice_mm"])
    spacing = (in_plane, in_plane, slices)
    size = [round(mm / d) for mm, d in zip(settings["field_of_view_mm"], spacing)]
    _, _, orientation = case_grid(settings["data_seed"], case, size, spacing)
    case_seed = int(np.random.SeedSequence([settings["data_seed"], case]).generate_state(1)[0])
    ct, label = make_phantom(case_seed, size=size, spacing=spacing, orientation=orientation)
    write_image(ct, root / "raw" / f"volume-{case}.nii.gz")
    write_image(label, root / "raw" / f"segmentation-{case}.nii.gz")
    del ct, label
config = PreprocessingConfig(spacing=(settings["spacing_mm"],) * 3)
summary = prepare_dataset(root / "raw", root / "prepared", config, folds=2, seed=0, workers=2, progress=False)
assert summary.ok, summary.failed
# as tests/test_learning.py: the last phantoms are the held-out fold 1, every other one is trained on
datalist_path = root / "prepared" / "datalist.json"
datalist = json.loads(datalist_path.read_text())
held_out = {f"liver_{i}" for i in range(settings["training_cases"], cases)}
for entry in datalist["training"]:
    entry["fold"] = 1 if entry["case"] in held_out else 0
datalist_path.write_text(json.dumps(datalist, indent=2) + "\\n")
train(bundle, root / "prepared", fold=1, epochs=settings["epochs"], output_dir=root / "run",
      overrides=settings["overrides"], configs=settings["configs"], quiet=True)
"""

# Stages side by side: (label, stages of ours, stages of the reference). "network" is the forward calls alone.
STAGE_ROWS = (
    ("load model (build + weights)", ("model",), ("model",)),
    ("read scan", ("read",), ("LoadImaged",)),
    (
        "preprocess (crop/reorient/resample/window)",
        ("preprocess",),
        ("EnsureChannelFirstd", "Orientationd", "Spacingd", "ScaleIntensityRanged", "EnsureTyped"),
    ),
    ("network forward", ("network",), ("network",)),
    ("sliding-window stitching + softmax", ("window",), ("window", "Activationsd")),
    ("back to the scan's grid + argmax", ("restore",), ("Invertd", "AsDiscreted")),
    ("post-processing", ("postprocess",), ()),
    ("lesion measurement", ("lesions",), ()),
    ("mask image + summary", ("mask_summary",), ()),
    ("write outputs", ("write",), ("SaveImaged",)),
)


def run_script(script: str, *args: object, timeout: float | None = None) -> dict:
    """Run a measurement in a fresh interpreter; returns the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", COMMON + script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no message"
        raise RuntimeError(f"measurement failed ({done.returncode}): {last}\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stages = result["stages"]
    stages["network"] = result["network_s"]
    stages["other"] = result["wall_s"] - sum(stages.values())
    return result


def ensure_model(cache: Path) -> tuple[Path, dict]:
    """The cached benchmark model, trained first when missing or trained with other settings."""
    run = cache / "run"
    settings_path = cache / "bench_model.json"
    if settings_path.is_file() and json.loads(settings_path.read_text()).get("settings") == MODEL_SETTINGS:
        if (run / "model.pt").is_file():
            return run, json.loads(settings_path.read_text())
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    print(
        f"training the benchmark model into {run} (once; about 2 hours on 2 cores) ...",
        flush=True,
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", TRAIN, json.dumps(MODEL_SETTINGS), str(cache), str(BUNDLE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"training failed:\n{done.stderr[-3000:]}")
    seconds = time.perf_counter() - start
    with (run / "training_log.csv").open(newline="") as stream:
        validated = [row for row in csv.DictReader(stream) if row.get("val_mean_dice")]
    best = max(validated, key=lambda row: float(row["val_mean_dice"]))
    info = {
        "settings": MODEL_SETTINGS,
        "training_s": round(seconds, 1),
        "best_epoch": int(best["epoch"]),
        "held_out_liver_dice": round(float(best["val_liver_dice"]), 4),
        "held_out_tumour_dice": round(float(best["val_tumour_dice"]), 4),
    }
    settings_path.write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(cache / "raw", ignore_errors=True)
    shutil.rmtree(cache / "prepared", ignore_errors=True)
    return run, info


def default_network_run(folder: Path) -> Path:
    """A run folder with the bundle's default network, patch and preprocessing (``train.json`` as it is) and freshly
    initialised weights (seed 0), for timing the pipeline around a network of the size users train: weights do not
    change the network's time, only the mask (so no Dice is taken from it)."""
    import torch
    from monai.bundle import ConfigParser

    from monai_pipeline.preprocessing import PreprocessingConfig
    from monai_pipeline.training import BEST_NAME, build_network, write_run_record

    parser = ConfigParser()
    parser.read_config(BUNDLE / "configs" / "train.json")
    network_args, inference_args = (parser.get_parsed_content(key) for key in ("network_args", "inference_args"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_run_record(folder, network_args, inference_args, note="untrained: for timing only")
    PreprocessingConfig().save(folder / "preprocessing.json")
    torch.manual_seed(0)
    torch.save(build_network(**network_args).state_dict(), folder / BEST_NAME)
    return folder


def weak_model_run(folder: Path) -> Path:
    """The worst case for memory: the benchmark model's network (the bundle's ``cpu`` configuration at 3 mm) with
    freshly initialised weights (seed 0). Its near-uniform softmax puts liver and tumour all over the scan, as a
    weakly trained model does, so that post-processing and lesion measurement meet the largest masks they can."""
    import torch
    from monai.bundle import ConfigParser

    from monai_pipeline.preprocessing import PreprocessingConfig
    from monai_pipeline.training import BEST_NAME, build_network, write_run_record

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / name) for name in ("train.json", "cpu.json")])
    network_args, inference_args = (parser.get_parsed_content(key) for key in ("network_args", "inference_args"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_run_record(folder, network_args, inference_args, note="untrained: the memory worst case")
    PreprocessingConfig(spacing=(MODEL_SETTINGS["spacing_mm"],) * 3).save(folder / "preprocessing.json")
    torch.manual_seed(0)
    torch.save(build_network(**network_args).state_dict(), folder / BEST_NAME)
    return folder


def model_description(run: Path) -> dict:
    """What the run was trained with, as its own records say."""
    record = json.loads((run / "run.json").read_text())
    preprocessing = json.loads((run / "preprocessing.json").read_text())
    return {
        "run": str(run),
        "spacing_mm": preprocessing["spacing"],
        "window_hu": preprocessing["window"],
        "crop_to_body": preprocessing["crop_to_body"],
        "filters": record["network"]["filters"],
        "roi_size": record["inference"]["roi_size"],
        "sw_batch_size": record["inference"]["sw_batch_size"],
        "overlap_ours": record["inference"]["overlap"],
    }


def make_scan(folder: Path, seed: int, size: tuple[int, int, int], spacing: tuple[float, float, float]) -> Path:
    """A phantom CT and its label in ``folder`` (written once): ``ct.nii.gz``, ``label.nii.gz``."""
    from monai_pipeline.io import write_image
    from monai_pipeline.synth import make_phantom

    scan = folder / "ct.nii.gz"
    if not scan.is_file():
        print(f"writing a phantom {size} at {spacing} mm -> {folder}", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        image, label = make_phantom(seed, size=size, spacing=spacing, orientation="LPS")
        write_image(label, folder / "label.nii.gz")
        del label
        write_image(image, scan)
    return scan


def dice_table(
    ours: Path, reference: Path | None, truth: Path | None, ours_off: Path | None, ours_windows: Path | None = None
) -> dict:
    """Liver (label >= 1) and tumour (label 2) Dice between the masks written, each on the scan's grid."""
    import numpy as np
    import SimpleITK as sitk

    masks = {}
    for name, path in (
        ("ours", ours),
        ("ours_no_post", ours_off),
        ("ours_reference_windows", ours_windows),
        ("reference", reference),
        ("truth", truth),
    ):
        if path is not None:
            image = sitk.ReadImage(str(path))
            masks[name] = (np.rint(sitk.GetArrayViewFromImage(image)).astype(np.uint8), image)
    first = masks["ours"][1]
    for name, (_, image) in masks.items():
        same = image.GetSize() == first.GetSize() and np.allclose(image.GetOrigin(), first.GetOrigin(), atol=0.01)
        if not same or not np.allclose(image.GetDirection(), first.GetDirection(), atol=1e-4):
            raise RuntimeError(f"the {name} mask is not on the scan's grid: {image.GetSize()} {image.GetOrigin()}")

    def dice(a: np.ndarray, b: np.ndarray) -> float:
        total = int(a.sum()) + int(b.sum())
        return round(2.0 * int(np.logical_and(a, b).sum()) / total, 4) if total else 1.0

    pairs = [("ours", "reference"), ("ours_no_post", "reference"), ("ours_reference_windows", "reference")]
    pairs += [("ours", "truth"), ("ours_no_post", "truth"), ("ours_reference_windows", "truth"), ("reference", "truth")]
    result = {}
    for a, b in pairs:
        if a in masks and b in masks:
            left, right = masks[a][0], masks[b][0]
            result[f"{a}_vs_{b}"] = {"liver": dice(left >= 1, right >= 1), "tumour": dice(left == 2, right == 2)}
    return result


ABLATION = (
    ("ours (body crop, separate z, Gaussian weights, overlap 0.25)", {}, {}),
    ("no body crop", {"crop_to_body": False}, {}),
    ("linear along z (no separate z)", {"anisotropy_threshold": 1e6}, {}),
    ("overlap 0.5", {}, {"overlap": 0.5}),
    ("overlap 0.5, constant weights", {}, {"overlap": 0.5, "mode": "constant"}),
    ("no body crop, overlap 0.5, constant weights", {"crop_to_body": False}, {"overlap": 0.5, "mode": "constant"}),
    (
        "all four as the reference",
        {"crop_to_body": False, "anisotropy_threshold": 1e6},
        {"overlap": 0.5, "mode": "constant"},
    ),
)
"""Ours' choices changed one or more at a time towards the reference's: (label, preprocessing, windows)."""


def ablation(run: Path, scan: Path, reference: Path, truth: Path | None) -> list[dict]:
    """Liver and tumour Dice against the reference (and the truth) of ours without post-processing, with each of
    its choices that the reference makes otherwise switched to the reference's (in this process; not timed)."""
    import dataclasses

    import numpy as np
    import SimpleITK as sitk
    from monai.inferers import SlidingWindowInferer

    from monai_pipeline.inference import PostprocessConfig, load_model, segment
    from monai_pipeline.io import read_image

    def labels(path: Path) -> np.ndarray:
        return np.rint(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).astype(np.uint8)

    def dice(a: np.ndarray, b: np.ndarray) -> float:
        return round(2.0 * int(np.logical_and(a, b).sum()) / max(1, int(a.sum()) + int(b.sum())), 4)

    masks = {"reference": labels(reference)}
    if truth is not None:
        masks["truth"] = labels(truth)
    image, base = read_image(scan), load_model(run, device="cpu")
    rows = []
    for label, preprocessing, windows in ABLATION:
        model = dataclasses.replace(base, preprocessing=dataclasses.replace(base.preprocessing, **preprocessing))
        if windows:
            settings = {"overlap": base.inference["overlap"], "mode": "gaussian", **windows}
            model.inferer = SlidingWindowInferer(
                roi_size=base.inference["roi_size"], sw_batch_size=base.inference["sw_batch_size"], **settings
            )
        mask = sitk.GetArrayFromImage(segment(image, model, postprocessing=PostprocessConfig.off()).mask)
        row = {"variant": label}
        for name, other in masks.items():
            row[f"vs_{name}"] = {"liver": dice(mask >= 1, other >= 1), "tumour": dice(mask == 2, other == 2)}
        rows.append(row)
        print(f"  ablation: {label}: {row}", flush=True)
    return rows


def measure(kind: str, run: Path, scan: Path, keep: Path | None, timeout: float | None) -> dict:
    """One measurement in a fresh process; the output folder is kept in ``keep`` (for the Dice) or removed."""
    out = keep or Path(tempfile.mkdtemp(prefix="bench-infer-"))
    if keep is not None:
        shutil.rmtree(keep, ignore_errors=True)
        keep.mkdir(parents=True)
    try:
        if kind == "reference":
            return run_script(REFERENCE, run, scan, out, timeout=timeout)
        return run_script(OURS, run, scan, out, kind, timeout=timeout)
    finally:
        if keep is None:
            shutil.rmtree(out, ignore_errors=True)


def median_result(runs: list[dict]) -> dict:
    """Medians of wall, peak and network time, and of every stage."""
    stages = sorted({k for r in runs for k in r["stages"]})
    wall = statistics.median(r["wall_s"] for r in runs)
    network = statistics.median(r["network_s"] for r in runs)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 2),
        "peak_mib": round(statistics.median(r["peak_mib"] for r in runs)),
        "network_s": round(network, 2),
        "network_calls": runs[0]["network_calls"],
        "outside_network_share": round(1 - network / wall, 3),
        "stages_s": {k: round(statistics.median(r["stages"].get(k, 0.0) for r in runs), 2) for k in stages},
        "load": [r["load"] for r in runs],
        "runs_wall_s": [round(r["wall_s"], 2) for r in runs],
    }


def stage_table(results: dict) -> list[str]:
    """Markdown rows of the per-stage breakdown, ours (with post-processing) beside the reference."""
    names = [n for n in ("ours", "ours_no_post", "ours_reference_windows", "reference") if n in results]
    lines = ["| stage | " + " | ".join(f"{n} s" for n in names) + " |", "|---|" + "---:|" * len(names)]
    for label, ours_keys, reference_keys in (
        *STAGE_ROWS,
        ("other (summary.json, lazy imports, ...)", ("other",), ("other",)),
    ):
        cells = []
        for name in names:
            keys = reference_keys if name == "reference" else ours_keys
            stages = results[name]["stages_s"]
            cells.append(f"{sum(stages.get(k, 0.0) for k in keys):.2f}" if keys else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| **total (wall)** | " + " | ".join(f"**{results[n]['wall_s']:.2f}**" for n in names) + " |")
    return lines


def goals(report: dict, tall: bool) -> dict[str, tuple[str, bool]]:
    """The issue's goals that this run measures: name -> (figure, met)."""
    results, dice, found = report["results"], report["dice"], {}
    if "speedup_ours_vs_reference" in report:
        found["ours >= 3x faster end to end"] = (
            f"{report['speedup_ours_vs_reference']:.2f}x",
            report["speedup_ours_vs_reference"] >= 3,
        )
    if "ours" in results:
        share = results["ours"]["outside_network_share"]
        found["ours' time outside the network <= 25 %"] = (f"{100 * share:.0f} %", share <= 0.25)
    for pair in ("ours_vs_reference", "ours_no_post_vs_reference", "ours_reference_windows_vs_reference"):
        if pair in dice:
            found[f"Dice {pair.replace('_vs_', ' vs ')} (liver) >= 0.98"] = (
                f"{dice[pair]['liver']:.4f}",
                dice[pair]["liver"] >= 0.98,
            )
    if tall and "ours" in results:
        peak = results["ours"]["peak_mib"]
        found["ours' peak RSS <= 6 GB on 512x512x900"] = (f"{peak / 1024:.2f} GiB", peak <= 6 * 1024)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="256x256x150 at 1.6x1.6x5 mm instead of 512x512x300")
    parser.add_argument("--tall", action="store_true", help="512x512x900 at 0.8x0.8x1.0 mm (memory check)")
    parser.add_argument("--input", type=Path, help="benchmark this scan instead of a phantom")
    parser.add_argument("--label", type=Path, help="its reference label, for Dice against the truth")
    parser.add_argument("--model", type=Path, help="an existing training run (default: the cached benchmark model)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument("--no-reference", action="store_true", help="measure ours only")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per measurement")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (not one of the training phantoms)")
    parser.add_argument(
        "--default-network",
        action="store_true",
        help="time ours with the bundle's default network and preprocessing (untrained weights; no reference, no Dice)",
    )
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also the Dice against the reference with each of ours' choices switched to the reference's",
    )
    parser.add_argument(
        "--weak-model",
        action="store_true",
        help="the memory worst case: an untrained network that marks liver and tumour all over the scan (with --tall "
        "for the 512x512x900 peak; no reference, no Dice)",
    )
    parser.add_argument("--json", type=Path, help="default: results/infer.json (infer-tall.json with --tall)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if (args.default_network or args.weak_model) and args.model is not None:
        parser.error("--default-network and --weak-model build their own run; leave out --model")

    model_cache = RESULTS / "model"
    model_info = None
    run = args.model
    if args.default_network:
        run, args.no_reference = default_network_run(RESULTS / "default-network-run"), True
    elif args.weak_model:
        run, args.no_reference = weak_model_run(RESULTS / "weak-model-run"), True
    elif run is None:
        run, model_info = ensure_model(model_cache)
    model = model_description(run)
    if model_info:
        model.update({k: v for k, v in model_info.items() if k != "settings"})
        model["training"] = {k: v for k, v in MODEL_SETTINGS.items() if k != "overrides"}

    truth = args.label
    if args.input is not None:
        scan, volume = args.input, {"file": str(args.input)}
    else:
        if args.tall:
            size, spacing = (512, 512, 900), (0.8, 0.8, 1.0)
        elif args.quick:
            size, spacing = (256, 256, 150), (1.6, 1.6, 5.0)
        else:
            size, spacing = (512, 512, 300), (0.8, 0.8, 2.5)
        folder = RESULTS / "data" / f"infer-{'x'.join(map(str, size))}-seed{args.seed}"
        scan = make_scan(folder, args.seed, size, spacing)
        truth = folder / "label.nii.gz"
        volume = {"size": size, "spacing": spacing, "seed": args.seed, "orientation": "LPS", "file": str(scan)}
    print(f"model {run}: spacing {model['spacing_mm']} mm, roi {model['roi_size']}, filters {model['filters']}")

    kinds = ["ours", "ours_no_post"] + ([] if args.no_reference else ["ours_reference_windows", "reference"])
    keep = {kind: RESULTS / "infer-outputs" / kind for kind in kinds}
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    failed: dict[str, str] = {}
    for repeat in range(args.repeats):
        for kind in kinds:
            if kind in failed:
                continue
            last = repeat == args.repeats - 1
            try:
                result = measure(kind, run, scan, keep[kind] if last else None, args.timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                failed[kind] = str(err).splitlines()[0]
                print(f"  {kind:<13} failed: {failed[kind]}", flush=True)
                continue
            runs[kind].append(result)
            print(
                f"  {kind:<13} {result['wall_s']:7.2f} s (CPU {result['cpu_s']:6.2f} s)  "
                f"{result['peak_mib']:7.0f} MiB  network {result['network_s']:6.2f} s  (load {result['load']})",
                flush=True,
            )

    results = {kind: median_result(r) for kind, r in runs.items() if r}
    files = {
        kind: next(iter(sorted(keep[kind].glob("*seg.nii.gz")) or sorted(keep[kind].glob("*.nii.gz"))), None)
        for kind in results
    }
    dice, dice_error = {}, None
    if "ours" in results:
        try:
            dice = dice_table(
                files["ours"],
                files.get("reference"),
                truth if truth is not None and truth.is_file() else None,
                files.get("ours_no_post"),
                files.get("ours_reference_windows"),
            )
        except RuntimeError as err:  # a mask off the scan's grid: report the timings all the same
            dice_error = str(err)
    if args.ablation and files.get("reference") is not None:
        known_truth = truth if truth is not None and truth.is_file() else None
        report_ablation = ablation(run, scan, files["reference"], known_truth)
    else:
        report_ablation = []
    report = {
        "ablation": report_ablation,
        "volume": volume,
        "model": model,
        "repeats": args.repeats,
        "cpu_cores": os.cpu_count(),
        "results": results,
        "failed": failed,
        "dice": dice,
        "dice_error": dice_error,
    }
    if args.default_network:
        report["dice"], report["note"] = {}, "untrained default network: timings only, the masks mean nothing"
    if args.weak_model:
        report["dice"], report["note"] = {}, "untrained network: the memory worst case, the masks mean nothing"
    if "ours" in results and "reference" in results:
        report["speedup_ours_vs_reference"] = round(results["reference"]["wall_s"] / results["ours"]["wall_s"], 2)
        report["speedup_ours_no_post_vs_reference"] = round(
            results["reference"]["wall_s"] / results["ours_no_post"]["wall_s"], 2
        )
        report["cpu_time_ratio_reference_to_ours"] = round(results["reference"]["cpu_s"] / results["ours"]["cpu_s"], 2)
    report["goals"] = goals(report, tall=args.tall)
    default_json = RESULTS / ("infer-tall.json" if args.tall else "infer.json")
    if args.default_network:
        default_json = default_json.with_name(default_json.stem + "-default-network.json")
    elif args.weak_model:
        default_json = default_json.with_name(default_json.stem + "-weak-model.json")
    json_path = args.json or default_json
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")

    print()
    print(
        f"| measurement (median of {args.repeats}) | wall s | CPU s | peak RSS MiB | network s | outside the network |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for kind, r in results.items():
        print(
            f"| {kind} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_mib']} | {r['network_s']:.2f} | "
            f"{100 * r['outside_network_share']:.0f} % |"
        )
    print()
    print("\n".join(stage_table(results)))
    print()
    for pair, scores in report["dice"].items():
        print(f"Dice {pair}: liver {scores['liver']:.4f}, tumour {scores['tumour']:.4f}")
    if dice_error:
        print(f"no Dice: {dice_error}")
    if report["ablation"]:
        print()
        names = [key for key in report["ablation"][0] if key.startswith("vs_")]
        print(
            "| ours without post-processing, changed | "
            + " | ".join(f"{region} {name.replace('_', ' ')}" for name in names for region in ("liver", "tumour"))
            + " |"
        )
        print("|---|" + "---:|" * (2 * len(names)))
        for row in report["ablation"]:
            cells = [f"{row[name][region]:.4f}" for name in names for region in ("liver", "tumour")]
            print(f"| {row['variant']} | " + " | ".join(cells) + " |")
    if "speedup_ours_vs_reference" in report:
        print(
            f"speed-up ours vs reference: {report['speedup_ours_vs_reference']:.2f}x "
            f"({report['speedup_ours_no_post_vs_reference']:.2f}x without post-processing; "
            f"CPU time {report['cpu_time_ratio_reference_to_ours']:.2f}x)"
        )
    print()
    print("| goal | figure | met |")
    print("|---|---:|---|")
    for name, (figure, met) in report["goals"].items():
        print(f"| {name} | {figure} | {'yes' if met else '**no**'} |")
    for kind, message in failed.items():
        print(f"{kind} failed: {message}")
    print(f"results: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
