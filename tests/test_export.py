"""Exporting a run's network: TorchScript and ONNX files that compute the PyTorch logits, a sidecar that describes
them, and one-line errors on the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from monai_pipeline import cli
from monai_pipeline.errors import PipelineError
from monai_pipeline.inference import export as export_module
from monai_pipeline.inference.export import export_model
from monai_pipeline.preprocessing.config import PreprocessingConfig
from monai_pipeline.training.network import build_network
from monai_pipeline.training.record import write_run_record

TINY = [4, 8, 16]
RUNS = {
    "3d": {"spatial_dims": 3, "roi_size": [16, 16, 16], "context": 1},
    "2d": {"spatial_dims": 2, "roi_size": [32, 32], "context": 3},
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest on one thread, and do not stall on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _make_run(folder: Path, kind: str, seed: int = 0) -> Path:
    inference = {**RUNS[kind], "overlap": 0.25, "sw_batch_size": 2}
    network = {"spatial_dims": inference["spatial_dims"], "in_channels": inference["context"], "filters": TINY}
    torch.manual_seed(seed)
    folder.mkdir(parents=True)
    torch.save(build_network(**network).state_dict(), folder / "model.pt")
    write_run_record(folder, network, inference, fold=0)
    PreprocessingConfig().save(folder / "preprocessing.json")
    return folder


def _reference(run: Path, patch: torch.Tensor) -> np.ndarray:
    record = json.loads((run / "run.json").read_text())
    network = build_network(**record["network"])
    network.load_state_dict(torch.load(run / "model.pt", weights_only=True))
    with torch.inference_mode():
        return network.eval()(patch).numpy()


def _exported_logits(path: Path, format: str, patch: torch.Tensor) -> np.ndarray:
    if format == "torchscript":
        with torch.inference_mode():
            return torch.jit.load(str(path))(patch).numpy()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: patch.numpy()})[0]


@pytest.mark.parametrize("kind", list(RUNS))
@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_export_computes_the_pytorch_logits(tmp_path: Path, kind: str, format: str) -> None:
    run = _make_run(tmp_path / "run", kind)
    out = export_model(run, tmp_path / "deploy" / f"liver.{format}", format)

    assert out == tmp_path / "deploy" / f"liver.{format}"
    assert sorted(p.name for p in out.parent.iterdir()) == [f"liver.{format}", f"liver.{format}.json"]  # no temp files
    shape = (RUNS[kind]["context"], *RUNS[kind]["roi_size"])
    patch = torch.rand(3, *shape, generator=torch.Generator().manual_seed(7))  # another batch size than the export's
    expected = _reference(run, patch)
    actual = _exported_logits(out, format, patch)
    assert actual.shape == (3, 3, *shape[1:])
    assert np.abs(actual - expected).max() <= 1e-4

    sidecar = json.loads((tmp_path / "deploy" / f"liver.{format}.json").read_text())
    assert sidecar["file"] == out.name and sidecar["format"] == format
    assert sidecar["input"]["shape"] == ["batch", *shape]
    assert sidecar["output"]["shape"] == ["batch", 3, *shape[1:]]
    assert sidecar["output"]["channels"] == ["background", "liver", "tumour"]
    assert PreprocessingConfig.from_dict(sidecar["preprocessing"]) == PreprocessingConfig()
    assert sidecar["inference"]["roi_size"] == RUNS[kind]["roi_size"]
    check = sidecar["verification"]
    assert check["checked_with"] == ("torch.jit.load" if format == "torchscript" else "onnxruntime")
    assert check["max_abs_difference"] <= 1e-4


def test_cli_writes_the_default_file_of_the_chosen_fold(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _make_run(tmp_path / "cv" / "fold0", "2d", seed=0)
    _make_run(tmp_path / "cv" / "fold1", "2d", seed=1)
    assert cli.main(["export", "--model", str(tmp_path / "cv"), "--format", "torchscript", "--folds", "1"]) == 0
    out = tmp_path / "cv" / "fold1" / "model.ts"
    assert f"-> {out}" in capsys.readouterr().out
    assert (tmp_path / "cv" / "fold1" / "model.ts.json").is_file()
    assert not (tmp_path / "cv" / "fold0" / "model.ts").exists()
    patch = torch.rand(1, 3, 32, 32)
    assert np.abs(_exported_logits(out, "torchscript", patch) - _reference(out.parent, patch)).max() <= 1e-4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{tmp}/absent", "--format", "onnx"], "absent: no such model folder"),
        (
            ["--model", "{tmp}/run", "--format", "tflite"],
            "unknown export format 'tflite' (choose from torchscript, onnx)",
        ),
        (["--model", "{tmp}/run", "--format", "torchscript", "--folds", "3"], "has no run folder for fold 3"),
        (["--model", "{tmp}/run", "--format", "torchscript", "--output", "{tmp}"], "is a folder"),
    ],
)
def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    _make_run(tmp_path / "run", "3d")
    assert cli.main(["export", *(a.format(tmp=tmp_path) for a in args)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.pt", "preprocessing.json", "run.json"]


def test_an_export_that_differs_is_an_error_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    run = _make_run(tmp_path / "run", "3d")
    other = build_network(spatial_dims=3, in_channels=1, filters=TINY).eval()  # other random weights

    def wrong_export(network: torch.nn.Module, path: Path) -> None:
        torch.jit.save(torch.jit.script(other), str(path))

    monkeypatch.setattr(export_module, "_to_torchscript", wrong_export)
    with pytest.raises(PipelineError, match="differs from the PyTorch network"):
        export_model(run, tmp_path / "out" / "model.ts", "torchscript")
    assert list((tmp_path / "out").iterdir()) == []


def test_without_onnxruntime_the_onnx_file_is_only_checked(tmp_path: Path, monkeypatch, caplog) -> None:
    import onnx
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["logits"])],
        "identity",
        [value("image", TensorProto.FLOAT, ["batch", 1, 4])],
        [value("logits", TensorProto.FLOAT, ["batch", 1, 4])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "identity.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails

    assert export_module._run_onnx(tmp_path / "identity.onnx", np.zeros((1, 1, 4), np.float32)) == (
        None,
        "onnx.checker",
    )
    assert "onnxruntime is not installed" in caplog.text
    with pytest.raises(PipelineError, match="the ONNX export is not a valid model"):
        export_module._run_onnx(tmp_path / "broken.onnx", np.zeros((1, 1, 4), np.float32))
