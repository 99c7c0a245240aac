"""Real CT: a small phantom-trained model, fine-tuned on two real scans, segments a third real scan better than before.

Uses the labelled real scans in ``../shared/data/real`` (skipped with a reason where they are absent). The held-out
scan is the TotalSegmentator 20-slice DICOM series (upper abdomen, another patient than the two scans fine-tuned on:
the TotalSegmentator example CT and the LiTS-117 crop). The network is the bundle's, shrunk to train in seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from monai_pipeline.inference import infer
from monai_pipeline.prepare import prepare_dataset
from monai_pipeline.preprocessing import PreprocessingConfig
from monai_pipeline.synth import write_synthetic_dataset
from monai_pipeline.training.workflow import train

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "liver_tumor_ct"
SPACING = PreprocessingConfig(spacing=(4.0, 4.0, 4.0))
OVERRIDES = {
    "seed": 0,
    "filters": [8, 16, 32, 64],
    "roi_size": [48, 48, 48],
    "learning_rate": 1e-2,
    "warmup_epochs": 1,
    "val_interval": 100,
    "early_stop_patience": 0,
    "num_workers": 0,
}
FINE_TUNE = {**OVERRIDES, "learning_rate": 3e-3, "warmup_epochs": 0}
MARGIN = 0.05
"""How much liver Dice fine-tuning must add on the held-out real scan."""


def _liver_dice(run: Path, scan: Path, label: Path, out: Path) -> float:
    summary = infer(run, scan, out, device="cpu", progress=False)
    assert summary.ok, summary.failed
    (case,) = summary.cases
    mask = sitk.ReadImage(str(out / f"{case}_seg.nii.gz"))
    reference = sitk.Resample(sitk.ReadImage(str(label)), mask, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    a, b = sitk.GetArrayFromImage(mask) >= 1, sitk.GetArrayFromImage(reference) >= 1
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.mark.slow
@pytest.mark.realdata
def test_fine_tuning_on_real_scans_lifts_the_liver_dice_of_a_held_out_real_scan(real_data, tmp_path):
    phantoms = tmp_path / "phantoms"
    write_synthetic_dataset(phantoms, 4, seed=3, progress=False)
    prepare_dataset(phantoms, tmp_path / "phantoms_prep", SPACING, folds=2, progress=False)
    phantom_run = train(BUNDLE, tmp_path / "phantoms_prep", epochs=8, output_dir=tmp_path / "phantom_run",
                        overrides=OVERRIDES, quiet=True)  # fmt: skip

    real = tmp_path / "real"
    real.mkdir()
    pairs = [
        ("totalseg/example_ct.nii.gz", "totalseg/example_ct_liver_totalseg_fast.nii.gz"),
        ("lits117/volume-117.nii.gz", "lits117/segmentation-117.nii.gz"),
    ]
    for index, (scan, label) in enumerate(pairs):
        shutil.copyfile(real_data / scan, real / f"volume-{index}.nii.gz")
        shutil.copyfile(real_data / label, real / f"segmentation-{index}.nii.gz")
    prepare_dataset(real, tmp_path / "real_prep", SPACING, folds=1, progress=False)
    tuned_run = train(BUNDLE, tmp_path / "real_prep", epochs=30, output_dir=tmp_path / "tuned_run",
                      pretrained=phantom_run / "model.pt", overrides=FINE_TUNE, quiet=True)  # fmt: skip

    held_out = real_data / "totalseg" / "example_ct_dicom"
    label = real_data / "totalseg" / "example_seg_dicom_liver_binary.nii.gz"
    before = _liver_dice(phantom_run, held_out, label, tmp_path / "before")
    after = _liver_dice(tuned_run, held_out, label, tmp_path / "after")
    print(f"\nheld-out real scan liver Dice: phantom-only {before:.3f}, fine-tuned on two real scans {after:.3f}")
    assert np.isfinite(before) and after >= before + MARGIN
