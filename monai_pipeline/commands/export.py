"""``monai-pipeline export``: a trained run's network as TorchScript or ONNX, for deployment without this package."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = (
    "Export a trained run's network to TorchScript (model.ts) or ONNX (model.onnx), checked against PyTorch, with a "
    "JSON sidecar describing its input, output and preprocessing."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the export command."""
    parser.add_argument("--model", required=True, metavar="RUN", help="training run folder (or bundle with models/)")
    parser.add_argument("--format", required=True, metavar="FORMAT", help="torchscript or onnx")
    parser.add_argument("--output", metavar="PATH", help="file to write (default: RUN/model.ts or RUN/model.onnx)")
    parser.add_argument("--folds", metavar="K", help="export the run RUN/fold<K>")


def run(args: argparse.Namespace) -> int:
    """Export and print where the files went."""
    from monai_pipeline.inference.export import export_model

    path = export_model(args.model, args.output, args.format, [args.folds] if args.folds else None)
    print(f"exported {args.format} -> {path} (input, output and preprocessing in {path.name}.json)")
    return 0
