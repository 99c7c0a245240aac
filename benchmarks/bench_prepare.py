"""Benchmark of the preparation against reading and writing alone, and of 2 workers against 1.

Run ``python benchmarks/bench_prepare.py`` (``make bench``); ``--quick`` for a smaller volume. Each measurement runs in
a fresh process, so the peak memory (max RSS) is that process's alone; medians over ``--repeats`` runs.

1. Reference: read a 512x512x300 int16 CT (0.8x0.8x2.5 mm) and its label from .nii.gz and write both back (.nii.gz).
2. Whole preparation of the same case to 1.5 mm: read, check, fingerprint, reorient, crop, resample, window, write.
3. ``prepare_dataset`` over several such cases with 1 and with 2 workers.

Goals: (2) within 2x of (1); 2 workers >= 1.7x one; peak memory of (2) under 3x the float32 volume.
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

PEAK = """
def peak_mib():
    # VmHWM: this process's own peak RSS (ru_maxrss would carry the parent's peak across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

READ_WRITE = """
import sys, time, SimpleITK as sitk
{PEAK}from monai_pipeline.io import read_image, write_image
raw, out = sys.argv[1], sys.argv[2]
start = time.perf_counter()
for name in ("volume-0", "segmentation-0"):
    write_image(read_image(f"{raw}/{name}.nii.gz"), f"{out}/{name}.nii.gz")
print(time.perf_counter() - start, peak_mib())
"""

PREPARE_ONE = """
import sys, time
{PEAK}from pathlib import Path
from monai_pipeline.prepare.case import prepare_case
from monai_pipeline.prepare.discover import find_cases
from monai_pipeline.preprocessing import PreprocessingConfig
raw, out = Path(sys.argv[1]), Path(sys.argv[2])
case = [c for c in find_cases(raw) if c.name == "liver_0"][0]
start = time.perf_counter()
result = prepare_case(case, out, PreprocessingConfig(spacing=(1.5, 1.5, 1.5)), raw)
assert result.error is None, result.error
print(time.perf_counter() - start, peak_mib())
"""

PREPARE_ALL = """
import sys, time
{PEAK}from monai_pipeline.prepare import prepare_dataset
from monai_pipeline.preprocessing import PreprocessingConfig
raw, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
summary = prepare_dataset(raw, out, PreprocessingConfig(spacing=(1.5, 1.5, 1.5)), folds=2, workers=workers,
                          progress=False)
assert summary.ok, summary.failed
print(time.perf_counter() - start, peak_mib())
"""


def run(script: str, *args: object) -> tuple[float, float]:
    """Run a measurement in a fresh interpreter; returns (seconds, peak MiB)."""
    script = script.replace("{PEAK}", PEAK)
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, check=True)
    seconds, peak = done.stdout.split()[-2:]
    return float(seconds), float(peak)


def make_data(raw: Path, cases: int, size: tuple[int, int, int], spacing: tuple[float, float, float]) -> None:
    """Write ``cases`` phantoms in the LiTS layout unless they are already there."""
    from monai_pipeline.io import write_image
    from monai_pipeline.synth import make_phantom

    raw.mkdir(parents=True, exist_ok=True)
    for index in range(cases):
        if (raw / f"segmentation-{index}.nii.gz").is_file():
            continue
        image, label = make_phantom(index, size=size, spacing=spacing, orientation="LPS")
        write_image(image, raw / f"volume-{index}.nii.gz")
        write_image(label, raw / f"segmentation-{index}.nii.gz")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="256x256x150 instead of 512x512x300")
    parser.add_argument("--cases", type=int, default=4, help="cases for the workers comparison")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / "results" / "data", help="phantom cache")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "prepare.json")
    args = parser.parse_args()

    size = (256, 256, 150) if args.quick else (512, 512, 300)
    spacing = (1.6, 1.6, 5.0) if args.quick else (0.8, 0.8, 2.5)
    raw = args.data / "x".join(map(str, size))
    print(f"phantoms {size} int16 at {spacing} mm -> {raw}", flush=True)
    make_data(raw, args.cases, size, spacing)
    float32_mib = size[0] * size[1] * size[2] * 4 / 2**20

    results: dict[str, list[tuple[float, float]]] = {
        "read_write": [],
        "prepare_one": [],
        "workers_1": [],
        "workers_2": [],
    }
    for _ in range(args.repeats):
        for key, script, extra in (
            ("read_write", READ_WRITE, ()),
            ("prepare_one", PREPARE_ONE, ()),
            ("workers_1", PREPARE_ALL, (1,)),
            ("workers_2", PREPARE_ALL, (2,)),
        ):
            out = Path(tempfile.mkdtemp(prefix="bench-"))
            try:
                results[key].append(run(script, raw, out, *extra))
            finally:
                shutil.rmtree(out)
            print(f"  {key:<12} {results[key][-1][0]:7.2f} s  {results[key][-1][1]:7.0f} MiB", flush=True)

    median = {
        key: (statistics.median(s for s, _ in v), statistics.median(m for _, m in v)) for key, v in results.items()
    }
    report = {
        "volume": {"size": size, "spacing": spacing, "target_spacing": [1.5, 1.5, 1.5], "float32_mib": float32_mib},
        "cases_for_workers": args.cases,
        "repeats": args.repeats,
        "median_seconds": {k: round(v[0], 2) for k, v in median.items()},
        "median_peak_mib": {k: round(v[1], 0) for k, v in median.items()},
        "prepare_vs_read_write": round(median["prepare_one"][0] / median["read_write"][0], 2),
        "speedup_2_workers": round(median["workers_1"][0] / median["workers_2"][0], 2),
        "prepare_peak_vs_float32_volume": round(median["prepare_one"][1] / float32_mib, 2),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(f"| measurement (median of {args.repeats}) | seconds | peak MiB |")
    print("|---|---:|---:|")
    for key, (seconds, peak) in median.items():
        print(f"| {key} | {seconds:.2f} | {peak:.0f} |")
    print()
    print(f"whole preparation / read+write alone: {report['prepare_vs_read_write']:.2f}x (goal <= 2)")
    print(f"2 workers speed-up over 1 ({args.cases} cases): {report['speedup_2_workers']:.2f}x (goal >= 1.7)")
    print(
        f"peak memory of one preparation / float32 volume ({float32_mib:.0f} MiB): "
        f"{report['prepare_peak_vs_float32_volume']:.2f}x (goal < 3)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
