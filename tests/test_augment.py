"""The random rotation / scale augmentation of training patches (``RandGridAffined``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _bundle_data import BUNDLE
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose
from scipy import ndimage

from monai_pipeline.training import RandGridAffined
from monai_pipeline.training.augment import rotation_scale_matrix, sampling_grid


def scipy_reference(volume: np.ndarray, matrix: np.ndarray, order: int) -> np.ndarray:
    """The input sampled at ``centre + matrix @ (x - centre)``, edges repeated: scipy's ``affine_transform``."""
    centre = (np.asarray(volume.shape) - 1) / 2
    return ndimage.affine_transform(volume, matrix, offset=centre - matrix @ centre, order=order, mode="nearest")


def apply(matrix: np.ndarray, volume: np.ndarray, mode: str) -> np.ndarray:
    grid = sampling_grid(matrix, volume.shape)
    tensor = torch.from_numpy(volume)[None, None]
    return torch.nn.functional.grid_sample(tensor, grid, mode=mode, padding_mode="border", align_corners=True)[
        0, 0
    ].numpy()


@pytest.mark.parametrize("shape", [(21, 17, 11), (16, 16, 16), (13, 19)])
def test_sampling_grid_matches_scipy_affine_transform_on_anisotropic_shapes(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    volume = rng.normal(size=shape).astype(np.float32)
    angles = [0.3] if len(shape) == 2 else [0.3, -0.2, 0.25]
    matrix = rotation_scale_matrix(angles, [1.1, 0.9, 1.05][: len(shape)])
    np.testing.assert_allclose(apply(matrix, volume, "bilinear"), scipy_reference(volume, matrix, 1), atol=1e-4)


def test_quarter_turn_equals_rot90_and_identity_changes_nothing() -> None:
    rng = np.random.default_rng(1)
    volume = rng.normal(size=(9, 9, 5)).astype(np.float32)
    np.testing.assert_allclose(apply(np.eye(3), volume, "bilinear"), volume, atol=1e-5)
    turned = apply(rotation_scale_matrix([0.0, 0.0, math.pi / 2], [1, 1, 1]), volume, "nearest")
    # input point = R @ (x - c) + c with R rotating the first two axes by +90 degrees: out[i, j] = in[c - (j - c), i]
    np.testing.assert_array_equal(turned, np.rot90(volume, k=-1, axes=(0, 1)))


def test_rotation_matrix_is_orthonormal_and_scales_multiply_determinant() -> None:
    matrix = rotation_scale_matrix([0.2, -0.1, 0.3], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-12)
    scaled = rotation_scale_matrix([0.2, -0.1, 0.3], [1.1, 0.9, 1.2])
    assert math.isclose(np.linalg.det(scaled), 1.1 * 0.9 * 1.2, rel_tol=1e-12)
    with pytest.raises(ValueError, match="2 or 3"):
        rotation_scale_matrix([0.1], [1.0])


def test_image_and_label_move_together_and_label_keeps_its_values_and_dtype() -> None:
    image = torch.zeros(1, 32, 32, 32)
    image[:, 8:20, 10:24, 12:18] = 1.0
    label = (image > 0.5).to(torch.uint8) * 2
    transform = RandGridAffined(
        ["image", "label"], prob=1.0, rotate_range=0.26, scale_range=0.15, mode=["bilinear", "nearest"]
    )
    transform.set_random_state(3)
    out = transform({"image": image, "label": label})
    assert out["label"].dtype == torch.uint8 and out["image"].dtype == torch.float32
    assert out["image"].shape == image.shape and out["label"].shape == label.shape
    assert set(out["label"].unique().tolist()) == {0, 2}
    assert not torch.equal(out["label"], label)  # something moved
    # the label is the nearest-neighbour sampling of the same grid: where the image is clearly inside, so is the label
    assert torch.all(out["label"][out["image"] > 0.9] == 2) and torch.all(out["label"][out["image"] < 0.1] == 0)
    expected = scipy_reference(label[0].numpy().astype(np.float32), transform.matrix, order=0)
    assert (out["label"][0].numpy() != expected).mean() < 1e-3  # ties at exact half-voxels may round apart


def test_probability_zero_returns_the_sample_untouched_and_seed_repeats() -> None:
    data = {"image": torch.rand(1, 12, 12, 12), "label": torch.randint(0, 3, (1, 12, 12, 12), dtype=torch.uint8)}
    untouched = RandGridAffined(["image", "label"], prob=0.0, rotate_range=0.3)(data)
    assert untouched["image"] is data["image"]
    runs = []
    for _ in range(2):
        transform = RandGridAffined(["image", "label"], prob=1.0, rotate_range=0.3, scale_range=0.1)
        transform.set_random_state(7)
        runs.append(transform(data)["image"])
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_metatensor_keeps_meta_and_the_affine_follows_the_voxels() -> None:
    affine = torch.tensor([[0.0, -1.5, 0, 10], [1.5, 0, 0, -4], [0, 0, 2.5, 7], [0, 0, 0, 1]], dtype=torch.float64)
    image = MetaTensor(torch.rand(1, 10, 12, 8), affine=affine, meta={"case": "x"})
    transform = RandGridAffined("image", prob=1.0, rotate_range=0.2, scale_range=0.1)
    transform.set_random_state(0)
    out = transform({"image": image})["image"]
    assert isinstance(out, MetaTensor) and out.meta["case"] == "x"
    mapping = transform.voxel_map(image.shape[1:])
    voxel = np.array([3.0, 4.0, 5.0, 1.0])  # an output voxel and the input voxel it was sampled from share a place
    np.testing.assert_allclose(out.affine.numpy() @ voxel, affine.numpy() @ (mapping @ voxel), atol=1e-9)


def test_two_dimensional_channel_stacks() -> None:
    data = {"image": torch.rand(5, 24, 20), "label": torch.randint(0, 3, (1, 24, 20), dtype=torch.uint8)}
    transform = RandGridAffined(["image", "label"], prob=1.0, rotate_range=[0.26], scale_range=[0.15, 0.15])
    transform.set_random_state(0)
    out = transform(data)
    assert out["image"].shape == (5, 24, 20) and out["label"].shape == (1, 24, 20)
    assert transform.matrix.shape == (2, 2)


def test_bad_arguments_and_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        RandGridAffined("image", mode="bicubic")
    with pytest.raises(ValueError, match="padding_mode"):
        RandGridAffined("image", padding_mode="wrap")
    transform = RandGridAffined(["image", "label"], prob=1.0, rotate_range=0.1)
    with pytest.raises(ValueError, match="one spatial shape"):
        transform({"image": torch.rand(1, 8, 8, 8), "label": torch.zeros(1, 8, 8, 6)})


def test_bundle_training_recipe_uses_it_and_runs_without_copying_the_cache() -> None:
    parser = ConfigParser()
    parser.read_config(BUNDLE / "configs" / "train.json")
    affine = [t for t in parser["train"]["spatial_augmentation"] if "Affine" in t["_target_"]]
    assert [t["_target_"] for t in affine] == ["monai_pipeline.training.RandGridAffined"]
    assert parser["train"]["dataset"]["copy_cache"] is False
    parser["patch_size"] = [24, 24, 24]
    groups = ("crop", "spatial_augmentation", "intensity_augmentation")
    transforms = Compose([t for group in groups for t in parser.get_parsed_content(f"train#{group}")])
    # no step may write into the cached volume, since the cache is not copied before the random transforms
    label = torch.zeros(1, 40, 40, 40, dtype=torch.uint8)
    label[:, 10:30, 10:30, 10:30] = 1
    label[:, 15:20, 15:20, 15:20] = 2
    cached = {"image": torch.rand(1, 40, 40, 40), "label": label}
    before = {k: v.clone() for k, v in cached.items()}
    for seed in range(20):
        transforms.set_random_state(seed)
        transforms(dict(cached))
    for key, value in before.items():
        assert torch.equal(cached[key], value)


def test_two_dimensional_metatensor_with_the_default_3d_affine() -> None:
    """A 2D sample that became a MetaTensor in a flip carries MONAI's default 4x4 affine."""
    image = MetaTensor(torch.rand(5, 16, 12))
    assert image.affine.shape == (4, 4)
    transform = RandGridAffined("image", prob=1.0, rotate_range=[0.3], scale_range=[0.1, 0.1])
    transform.set_random_state(0)
    out = transform({"image": image})["image"]
    expected = np.eye(4)
    expected[:2, :2], expected[:2, 3] = transform.voxel_map((16, 12))[:2, :2], transform.voxel_map((16, 12))[:2, 2]
    np.testing.assert_allclose(out.affine.numpy(), expected, atol=1e-12)


def test_mirror_transforms_flip_only_the_named_axes() -> None:
    from monai_pipeline.training import mirror_transforms

    assert mirror_transforms([]) == []
    flips = mirror_transforms([0, 2], prob=1.0)
    assert [flip.flipper.spatial_axis for flip in flips] == [0, 2]
    image = torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4)
    out = Compose(flips)({"image": image, "label": image.clone()})
    np.testing.assert_array_equal(out["image"].numpy(), image.numpy()[:, ::-1, :, ::-1])
    np.testing.assert_array_equal(out["label"].numpy(), out["image"].numpy())
    with pytest.raises(ValueError, match="mirror_axes must be distinct axes in 0..1"):
        mirror_transforms([2], spatial_dims=2)
    with pytest.raises(ValueError, match="distinct"):
        mirror_transforms([0, 0])


@pytest.mark.parametrize(("overlay", "axes"), [(None, []), ("2d.json", [])])
def test_the_bundle_mirrors_nothing_by_default_and_records_it_for_inference(overlay, axes) -> None:
    parser = ConfigParser()
    parser.read_config([BUNDLE / "configs" / "train.json"] + ([BUNDLE / "configs" / overlay] if overlay else []))
    assert parser.get_parsed_content("train#mirroring") == []
    assert not any(type(t).__name__ == "RandFlipd" for t in parser.get_parsed_content("train#spatial_augmentation"))
    assert parser.get_parsed_content("inference_args")["mirror_axes"] == axes
    parser["mirror_axes"] = [0, 1]
    assert [f.flipper.spatial_axis for f in parser.get_parsed_content("train#mirroring", lazy=False)] == [0, 1]


@pytest.mark.parametrize("configs", [["train"], ["train", "2d"]])
def test_bundle_random_field_of_view_keeps_one_box_of_image_and_label_and_zeroes_the_rest(configs) -> None:
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / f"{name}.json") for name in configs])
    parser["field_of_view_prob"] = 1.0
    (transform,) = parser.get_parsed_content("train#field_of_view")
    patch = parser.get_parsed_content("patch_size")
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.uniform(0.1, 1.0, size=(1, *patch)).astype(np.float32))
    label = torch.from_numpy(rng.integers(1, 3, size=(1, *patch)).astype(np.uint8))
    transform.set_random_state(seed=3)
    sizes = []
    for _ in range(20):
        out = transform({"image": image.clone(), "label": label.clone()})
        kept = out["image"][0].numpy() > 0
        assert kept.any() and not kept.all()
        box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(kept))
        assert kept[box].all()  # one box, nothing kept outside it
        np.testing.assert_array_equal(out["image"][0][box], image[0][box])
        np.testing.assert_array_equal(out["label"][0].numpy() > 0, kept)  # the label follows the image
        assert out["label"].dtype == torch.uint8
        sizes.append([s.stop - s.start for s in box])
    sizes = np.array(sizes)
    assert (sizes >= np.minimum([12, 12, 4], patch)).all() and (sizes <= patch).all()
    assert "field_of_view" in parser.get("train#preprocessing#transforms")
