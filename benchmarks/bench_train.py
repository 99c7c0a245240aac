"""Benchmark of the training input pipeline against the model-zoo spleen bundle's, and of one training step.

Run ``python benchmarks/bench_train.py``; ``--quick`` for smaller volumes, fewer cases and one repeat; ``--profile``
adds the CPU cost of each random transform. Each measurement runs in a fresh process; figures are medians (of the
epochs within a process, then of ``--repeats`` processes).

Data: synthetic LiTS-like CTs (``monai_pipeline.synth.write_synthetic_dataset``, MSD layout), prepared to 1.5 mm by
``prepare_dataset`` (timed separately: preparation is its own offline stage).

1. Reference: the spleen bundle's train pipeline as it runs, written here from its description: a CacheDataset of
   LoadImaged, EnsureChannelFirstd, ScaleIntensityRanged(-57..164 -> 0..1), CropForegroundd, Orientationd(RAS),
   Spacingd(1.5x1.5x2.0), EnsureTyped over the RAW files, then RandCropByPosNegLabeld(96^3, pos 1, neg 1, 4 samples)
   each epoch; DataLoader(batch_size 2, shuffle, 2 workers). It only crops.
2. Ours: ``train#dataset`` and ``train#dataloader`` of ``bundles/liver_tumor_ct/configs/train.json`` (dataset_dir,
   fold 0 and num_workers 2 overridden) over the prepared files: the cache, the class-balanced crop, flips, affine and
   intensity augmentation exactly as training runs them.
   Both use the same training cases (fold 0 held out); only the DataLoader is iterated, no network.
3. One training step (forward, backward, optimizer step) of the bundle's ``network``, ``loss`` and ``optimizer`` on
   the CPU, on a batch of batch_size x num_samples patches of patch_size (from the config), after a warm-up step.

Goals: ours delivers >= 1x the reference's patches/s; ours' first epoch (cache build + first pass) costs no more than
the reference's cache build.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BUNDLE = Path(__file__).resolve().parent.parent / "bundles" / "liver_tumor_ct"

# Shared by both pipelines. ``measure``: build the dataset (cache), then time each pass over the DataLoader; CPU
# seconds (user + system) of the passes are this process's plus its DataLoader workers', counted once the workers
# have exited (the reference's at the end of each pass; persistent workers when shut down after the last pass).
# ``profile``: CPU time of each step after the cache, one transform at a time in this process, on one thread as in a
# DataLoader worker.
COMMON = """
import json, resource, sys, time
from copy import deepcopy
import monai
import torch

def cpu_s():
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime

def measure(build_dataset, build_loader, epochs):
    monai.utils.set_determinism(seed=0)
    start = time.perf_counter()
    dataset = build_dataset()
    cache = time.perf_counter() - start
    loader = build_loader(dataset)
    seconds, patches, start_cpu = [], [], cpu_s()
    for _ in range(epochs + 1):
        start, count = time.perf_counter(), 0
        for batch in loader:
            count += batch["image"].shape[0]
        seconds.append(time.perf_counter() - start)
        patches.append(count)
    if getattr(loader, "_iterator", None) is not None:  # persistent workers
        loader._iterator._shutdown_workers()
    cpu = cpu_s() - start_cpu
    shape = list(batch["image"].shape[1:])
    print(json.dumps({"cache_s": cache, "epoch_s": seconds, "patches": patches, "cpu_s": cpu, "cases": len(dataset),
                      "patch_shape": shape}))

def profile(transform, files, rounds, copy=True):
    from monai.data import list_data_collate
    from monai.transforms import RandomizableTrait, Transform, apply_transform
    torch.set_num_threads(1)
    transform.set_random_state(seed=0)
    first = transform.get_index_of_first(lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform))
    cached = [transform(item, end=first) for item in files]
    steps = transform.transforms[first:]
    names = ["copy of the cached case (CacheDataset copy_cache)" if copy else "(no copy of the cached case)"]
    names += [f"{i}. {type(t).__name__} (p={getattr(t, 'prob', 1):g})" for i, t in enumerate(steps, 1)] + ["collate"]
    seconds, patches = [0.0] * len(names), 0
    for _ in range(rounds):
        for item in cached:
            start = time.process_time()
            data = deepcopy(item) if copy else item
            seconds[0] += time.process_time() - start
            for index, step in enumerate(steps, 1):
                start = time.process_time()
                data = apply_transform(step, data, map_items=True)
                seconds[index] += time.process_time() - start
            start = time.process_time()
            list_data_collate(data)
            seconds[-1] += time.process_time() - start
            patches += len(data)
    print(json.dumps({"steps": dict(zip(names, (1000 * s / patches for s in seconds))), "patches": patches}))
"""

OURS = """
from monai.bundle import ConfigParser
bundle, prep, mode, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
parser = ConfigParser()
parser.read_config(f"{bundle}/configs/train.json")
parser.update({"dataset_dir": prep, "fold": 0, "num_workers": 2})
if mode == "measure":
    measure(lambda: parser.get_parsed_content("train#dataset"),
            lambda _: parser.get_parsed_content("train#dataloader"), count)
else:
    profile(parser.get_parsed_content("train#preprocessing"), parser.get_parsed_content("train#dataset#data"), count,
            parser.get_parsed_content("train#dataset#copy_cache", default=True))
"""

REFERENCE = """
from monai.data import CacheDataset, DataLoader
from monai.transforms import (Compose, CropForegroundd, EnsureChannelFirstd, EnsureTyped, LoadImaged, Orientationd,
                              RandCropByPosNegLabeld, ScaleIntensityRanged, Spacingd)
from monai_pipeline.training import fold_files
raw, prep, mode, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
# the raw files of the same training cases as ours
files = [{"image": f"{raw}/imagesTr/{e['case']}.nii.gz", "label": f"{raw}/labelsTr/{e['case']}.nii.gz"}
         for e in fold_files(prep, 0, "train")]
keys = ["image", "label"]
transform = Compose([
    LoadImaged(keys=keys),
    EnsureChannelFirstd(keys=keys),
    ScaleIntensityRanged(keys="image", a_min=-57, a_max=164, b_min=0.0, b_max=1.0, clip=True),
    CropForegroundd(keys=keys, source_key="image"),
    Orientationd(keys=keys, axcodes="RAS"),
    Spacingd(keys=keys, pixdim=(1.5, 1.5, 2.0), mode=("bilinear", "nearest")),
    EnsureTyped(keys=keys),
    RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=(96, 96, 96), pos=1, neg=1, num_samples=4,
                           image_key="image", image_threshold=0),
])
if mode == "measure":
    measure(lambda: CacheDataset(files, transform, cache_rate=1.0, num_workers=2, progress=False),
            lambda dataset: DataLoader(dataset, batch_size=2, shuffle=True, num_workers=2), count)
else:
    profile(transform, files, count)
"""

PREPARE = """
import json, sys, time
from monai_pipeline.prepare import prepare_dataset
from monai_pipeline.preprocessing import PreprocessingConfig
raw, out, folds = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
summary = prepare_dataset(raw, out, PreprocessingConfig(spacing=(1.5, 1.5, 1.5)), folds=folds, workers=2,
                          progress=False)
assert summary.ok, summary.failed
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

STEP = """
import json, sys, time
import monai
import torch
from monai.bundle import ConfigParser
bundle, prep, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
parser = ConfigParser()
parser.read_config(f"{bundle}/configs/train.json")
parser.update({"dataset_dir": prep, "device": "$torch.device('cpu')"})
monai.utils.set_determinism(seed=0)
network, loss_function, optimizer = (parser.get_parsed_content(k) for k in ("network", "loss", "optimizer"))
network.train()
n = parser.get_parsed_content("batch_size") * parser.get_parsed_content("num_samples")
shape = [n, parser.get_parsed_content("in_channels"), *parser.get_parsed_content("patch_size")]
image, label = torch.rand(shape), torch.randint(0, 3, [n, 1, *shape[2:]])
wall, cpu = [], []
for _ in range(steps + 1):
    start, start_cpu = time.perf_counter(), time.process_time()
    optimizer.zero_grad(set_to_none=True)
    loss_function(network(image), label).backward()
    optimizer.step()
    wall.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
print(json.dumps({"wall_s": wall[1:], "cpu_s": cpu[1:], "warmup_wall_s": wall[0], "batch_shape": shape,
                  "threads": torch.get_num_threads(), "filters": parser.get_parsed_content("filters")}))
"""


def load_average() -> float:
    """The 1-minute load average: above 2 on this 2-core machine, other processes competed with the measurement."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def run(script: str, *args: object) -> dict:
    """Run a measurement in a fresh interpreter; returns the JSON it prints last, with the highest load average seen
    before and after it."""
    before = load_average()
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load"] = max(before, load_average())
    return result


def make_data(raw: Path, cases: int, size: tuple[int, int, int], spacing: tuple[float, float, float]) -> None:
    """Write ``cases`` phantoms in the MSD layout unless they are already there."""
    from monai_pipeline.synth import write_synthetic_dataset

    if not (raw / "dataset.json").is_file():
        write_synthetic_dataset(raw, cases, layout="msd", size=size, spacing=spacing, progress=False)


def loader_summary(runs: list[dict]) -> dict:
    """Medians over processes of: cache build, first pass, patches/s (median of the later passes of a process) and
    CPU ms per patch (all passes)."""
    per_run = [
        {
            "cache_s": r["cache_s"],
            "first_epoch_s": r["epoch_s"][0],
            "patches_per_s": statistics.median(p / s for p, s in zip(r["patches"][1:], r["epoch_s"][1:])),
            "cpu_ms_per_patch": 1000 * r["cpu_s"] / sum(r["patches"]),
        }
        for r in runs
    ]
    summary: dict = {key: round(statistics.median(r[key] for r in per_run), 2) for key in per_run[0]}
    summary.update(patches_per_epoch=runs[0]["patches"][0], cases=runs[0]["cases"], patch_shape=runs[0]["patch_shape"])
    summary["runs"] = runs
    return summary


def step_summary(step: dict | None) -> dict | None:
    """Medians of the timed training steps, or None when they were skipped."""
    if step is None:
        return None
    return {
        "wall_s": round(statistics.median(step["wall_s"]), 2),
        "cpu_s": round(statistics.median(step["cpu_s"]), 2),
        **{key: step[key] for key in ("batch_shape", "filters", "threads")},
        "runs": step,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="6 cases of 192x192x96, 1 repeat, 3 epochs, 1 step")
    parser.add_argument("--repeats", type=int, help="processes per loader measurement (default 3, quick 1)")
    parser.add_argument("--epochs", type=int, help="timed passes after the first (default 6, quick 3)")
    parser.add_argument(
        "--steps", type=int, help="timed training steps after a warm-up step (default 2, quick 1; 0: skip)"
    )
    parser.add_argument("--profile", action="store_true", help="also the CPU cost of each random transform")
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / "results" / "data", help="phantom cache")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "train.json")
    args = parser.parse_args()

    # 10 cases in 5 folds leave 8 training cases: 4 batches of 2, an even share for each of the 2 workers
    cases, folds = (6, 3) if args.quick else (10, 5)
    size = (192, 192, 96) if args.quick else (256, 256, 120)
    spacing = (1.6, 1.6, 3.125) if args.quick else (1.2, 1.2, 2.5)
    repeats = args.repeats or (1 if args.quick else 3)
    epochs = args.epochs or (3 if args.quick else 6)
    steps = (1 if args.quick else 2) if args.steps is None else args.steps
    raw = args.data / f"train-{'x'.join(map(str, size))}-{cases}"
    print(f"{cases} phantoms {size} int16 at {spacing} mm -> {raw}", flush=True)
    make_data(raw, cases, size, spacing)
    pipelines = {"reference": (COMMON + REFERENCE, raw), "ours": (COMMON + OURS, BUNDLE)}

    args.json.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="train-work-", dir=args.json.parent))
    try:
        prepare = []
        for index in range(repeats):
            prepare.append(run(PREPARE, raw, work / f"prep{index}", folds))
            print(f"  preparation   {prepare[-1]['seconds']:7.2f} s  (load {prepare[-1]['load']})", flush=True)
        prep = work / "prep0"
        loaders: dict[str, list[dict]] = {name: [] for name in pipelines}
        for _ in range(repeats):
            for name, (script, source) in pipelines.items():
                loaders[name].append(run(script, source, prep, "measure", epochs))
                print_run(name, loaders[name][-1])
        profiles = {}
        if args.profile:
            profiles = {name: run(script, source, prep, "profile", 8) for name, (script, source) in pipelines.items()}
        step = run(STEP, BUNDLE, prep, steps) if steps else None
        if step:
            print(
                f"  training step {' '.join(f'{s:.1f}' for s in step['wall_s'])} s  (load {step['load']})", flush=True
            )
    finally:
        shutil.rmtree(work)

    reference, ours = loader_summary(loaders["reference"]), loader_summary(loaders["ours"])
    ours_first = round(ours["cache_s"] + ours["first_epoch_s"], 2)
    measured = [*prepare, *loaders["reference"], *loaders["ours"], *profiles.values(), *filter(None, [step])]
    report = {
        "volume": {"size": size, "spacing": spacing, "cases": cases, "training_cases": ours["cases"]},
        "repeats": repeats,
        "epochs": epochs,
        "preparation_s": round(statistics.median(p["seconds"] for p in prepare), 2),
        "preparation_runs": prepare,
        "reference": reference,
        "ours": ours,
        "patches_per_s_ratio": round(ours["patches_per_s"] / reference["patches_per_s"], 2),
        "ours_first_epoch_s": ours_first,
        "first_epoch_vs_reference_cache": round(ours_first / reference["cache_s"], 2),
        "max_load_average": max(r["load"] for r in measured),
        "step": step_summary(step),
        "profile_cpu_ms_per_patch": {name: p["steps"] for name, p in profiles.items()},
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    return 0


def print_run(name: str, r: dict) -> None:
    rates = " ".join(f"{p / s:.1f}" for p, s in zip(r["patches"][1:], r["epoch_s"][1:]))
    print(
        f"  {name:<10} cache {r['cache_s']:6.2f} s  first pass {r['epoch_s'][0]:5.2f} s  patches/s {rates}  "
        f"CPU {1000 * r['cpu_s'] / sum(r['patches']):.0f} ms/patch  (load {r['load']})",
        flush=True,
    )


def print_report(report: dict) -> None:
    reference, ours = report["reference"], report["ours"]
    print()
    print(
        f"| median of {report['repeats']} processes | cache build s | first pass s | patches/s | CPU ms/patch "
        "| patches/epoch |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in (("reference (spleen recipe, raw files)", reference), ("ours (train.json, prepared)", ours)):
        print(
            f"| {name} | {r['cache_s']:.2f} | {r['first_epoch_s']:.2f} | {r['patches_per_s']:.1f} | "
            f"{r['cpu_ms_per_patch']:.0f} | {r['patches_per_epoch']} |"
        )
    print()
    print(f"preparation ({report['volume']['cases']} cases, 2 workers, offline): {report['preparation_s']:.2f} s")
    print(f"patches/s ours / reference: {report['patches_per_s_ratio']:.2f}x (goal >= 1)")
    print(
        f"ours' first epoch (cache + first pass) {report['ours_first_epoch_s']:.2f} s / reference cache build "
        f"{reference['cache_s']:.2f} s: {report['first_epoch_vs_reference_cache']:.2f}x (goal <= 1)"
    )
    step = report["step"]
    if step:
        print(
            f"training step, batch {step['batch_shape']} on {step['threads']} threads: {step['wall_s']:.2f} s, "
            f"{step['cpu_s']:.2f} CPU s"
        )
    for name, steps in report["profile_cpu_ms_per_patch"].items():
        print(f"\nCPU ms per patch, {name} (one thread):")
        for step_name, ms in steps.items():
            print(f"  {ms:6.1f}  {step_name}")
        print(f"  {sum(steps.values()):6.1f}  total")
    if report["max_load_average"] > 2:
        print(
            f"note: other processes ran at the same time (load average up to {report['max_load_average']:.1f} on 2 "
            "cores): seconds and patches/s are disturbed, CPU ms/patch and CPU s per step much less so"
        )


if __name__ == "__main__":
    sys.exit(main())
