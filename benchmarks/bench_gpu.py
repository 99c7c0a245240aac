"""GPU figures: inference and training-step timings with AMP, and the phantom model trained on a GPU.

    python benchmarks/bench_gpu.py --out DIR [--phantoms 96] [--minutes 5] [--workers 16]

1. Inference: ``infer(run, scan, out, device="cuda")`` on a 512x512x300 phantom at 0.8x0.8x2.5 mm with the bundle's
   default network (untrained weights: timings only) and with the phantom model trained in step 3; median of 2 after
   a warm-up run.
2. One training step (forward, backward, optimizer step, AMP) of the default 3D network on 2 x 2 patches of 96^3,
   median of 20 after 3 warm-up steps.
3. Phantom models: ``--phantoms`` phantoms (every phase and field of view) written in parallel, prepared at 3 mm
   and trained with the bundle's CPU network for ``--minutes`` on the GPU, in the variants of ``VARIANTS`` side by
   side. Each run folder is packed into ``--out/<variant>.tar.gz`` (``model.pt``, ``run.json``,
   ``preprocessing.json``, ``training_log.csv``) so that ``bench_real.py --phantom-model`` can score it on the real
   scans.

Writes ``gpu.json`` in ``--out``. Needs a CUDA device; runs (slowly) on the CPU for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_infer import default_network_run, make_scan  # noqa: E402

BUNDLE = ROOT / "bundles" / "liver_tumor_ct"


def _write_part(args: tuple[Path, int, int]) -> None:
    from monai_pipeline.synth import write_synthetic_dataset

    folder, cases, seed = args
    write_synthetic_dataset(folder, cases, seed=seed, progress=False)


def write_phantoms(raw: Path, cases: int, workers: int, seed: int) -> None:
    """``cases`` phantoms in LiTS names, written by ``workers`` processes (each its own seed), numbered apart."""
    per = -(-cases // workers)
    parts = [(raw / f"part{k}", min(per, cases - k * per), seed + k) for k in range(workers) if cases - k * per > 0]
    with ProcessPoolExecutor(len(parts)) as pool:
        list(pool.map(_write_part, parts))
    for k, (folder, _, _) in enumerate(parts):
        for path in folder.glob("*.nii.gz"):
            kind, number = path.name.split(".")[0].rsplit("-", 1)
            path.replace(raw / f"{kind}-{k * 1000 + int(number)}.nii.gz")
        shutil.rmtree(folder)


VARIANTS = {
    "recipe": {},
    "mirrored": {"mirror_axes": [0, 1, 2]},
    "roi96": {"roi_size": [96, 96, 96]},
    "scale_wide": {"train#spatial_augmentation#0#prob": 0.5, "train#spatial_augmentation#0#scale_range": [0.3] * 3},
    "no_field_of_view": {"field_of_view_prob": 0},
    "background": {"crop_ratios": [3, 2, 2]},
    "slices_2d": {"configs": ["cpu", "2d"]},
}
"""Phantom models trained side by side: the bundle's CPU recipe (no mirroring), with every axis mirrored as nnU-Net
does, on 96^3 patches (288 mm of context at 3 mm), with rotation and scaling on half the patches and scales of
0.7-1.3 (a liver whose scan states a wrong voxel size, or a small patient), without the random fields of view,
with more background patches, and the 2.5D network (whole axial slices with 5 slices of context). ``configs``
names the bundle's configuration files (default: ``cpu``)."""


def prepare_phantoms(work: Path, args: argparse.Namespace) -> tuple[Path, float]:
    from monai_pipeline.prepare import prepare_dataset
    from monai_pipeline.preprocessing import PreprocessingConfig

    raw, prepared = work / "phantoms", work / "prepared"
    start = time.perf_counter()
    write_phantoms(raw, args.phantoms, args.workers, args.seed)
    config = PreprocessingConfig(spacing=(3.0,) * 3)
    prepare_dataset(raw, prepared, config, folds=min(8, args.phantoms), workers=args.workers, progress=False)
    return prepared, time.perf_counter() - start


def train_variant(job: tuple[str, dict, Path, Path, dict]) -> dict:
    """Train one variant of the phantom model and pack its run folder into ``OUT/<name>.tar.gz``."""
    import tarfile

    from monai_pipeline.training.workflow import train

    name, overrides, prepared, out, settings = job
    run = prepared.parent / f"run_{name}"
    start = time.perf_counter()
    overrides = dict(overrides)
    configs = overrides.pop("configs", ["cpu"])
    train(BUNDLE, prepared, fold=0, epochs=settings["epochs"], output_dir=run, overrides={**settings["overrides"],
          **overrides}, configs=configs, quiet=True)  # fmt: skip
    seconds = time.perf_counter() - start
    with tarfile.open(out / f"{name}.tar.gz", "w:gz") as tar:
        for file in ("model.pt", "run.json", "preprocessing.json", "training_log.csv"):
            if (run / file).is_file():
                tar.add(run / file, arcname=f"{name}/{file}")
    lines = (run / "training_log.csv").read_text().splitlines()
    return {"variant": name, "overrides": job[1], "train_s": round(seconds, 1), "epochs": len(lines) - 1,
            "header": lines[0], "last_log": lines[-1], "run": str(run)}  # fmt: skip


def train_phantom_models(out: Path, work: Path, args: argparse.Namespace) -> dict:
    """Every variant trained at once, sharing the GPU and the CPU cores."""
    import multiprocessing

    prepared, data_s = prepare_phantoms(work, args)
    names = args.variants or list(VARIANTS)
    settings = {
        "epochs": args.epochs,
        "overrides": {
            "seed": 0,
            "max_minutes": args.minutes,
            "num_workers": max(2, args.workers // len(names) - 1),
            "batch_size": args.batch_size,
            "val_interval": 20,
            "early_stop_patience": 0,
        },
    }
    jobs = [(name, VARIANTS[name], prepared, out, settings) for name in names]
    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = list(pool.map(train_variant, jobs))
    return {"phantoms": args.phantoms, "data_s": round(data_s, 1), "settings": settings, "runs": runs}


def time_inference(run: Path, scan: Path, work: Path, device: str, repeats: int = 2) -> dict:
    import torch

    from monai_pipeline.inference import infer

    seconds = []
    for index in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        summary = infer(run, scan, work / f"infer_{index}", device=device, progress=False)
        if not summary.ok:
            raise RuntimeError(f"inference failed: {summary.failed}")
        seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
    return {"median_s": round(statistics.median(seconds[1:]), 2), "first_s": round(seconds[0], 2),
            "peak_gpu_mib": round(peak)}  # fmt: skip


def time_training_step(device: str, steps: int = 20) -> dict:
    import torch
    from monai.bundle import ConfigParser
    from monai.losses import DiceCELoss

    from monai_pipeline.training import build_network

    parser = ConfigParser()
    parser.read_config(BUNDLE / "configs" / "train.json")
    network = build_network(**parser.get_parsed_content("network_args")).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-4)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    scaler = torch.amp.GradScaler(enabled=device == "cuda")
    image = torch.randn(4, 1, 96, 96, 96, device=device)
    label = torch.randint(0, 3, (4, 1, 96, 96, 96), device=device)
    seconds = []
    for step in range(steps + 3):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, enabled=device == "cuda"):
            output = network(image)
            output = output[:, 0] if output.ndim == 6 else output
            loss = loss_fn(output, label)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= 3:
            seconds.append(time.perf_counter() - start)
    return {"median_step_s": round(statistics.median(seconds), 4), "batch": "4 x 96^3", "amp": device == "cuda"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_gpu"))
    parser.add_argument("--phantoms", type=int, default=96)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--scan-size", type=int, nargs=3, default=(512, 512, 300))
    parser.add_argument("--skip-timings", action="store_true")
    parser.add_argument("--variants", nargs="*", choices=sorted(VARIANTS), help="default: all")
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    report: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "torch": torch.__version__}

    def save() -> None:
        (args.out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2), flush=True)

    if not args.skip_timings:
        report["training_step_default_network"] = time_training_step(device)
        save()
    report["phantom_models"] = train_phantom_models(args.out, args.work, args)
    save()
    if not args.skip_timings:
        scan = make_scan(args.work / "scan", 3, tuple(args.scan_size), (0.8, 0.8, 2.5))
        default_run = default_network_run(args.work / "default_run")
        report["inference_default_network"] = time_inference(default_run, scan, args.work, device)
        first = report["phantom_models"]["runs"][0]
        report[f"inference_{first['variant']}"] = time_inference(Path(first["run"]), scan, args.work, device)
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
