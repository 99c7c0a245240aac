"""``monai-pipeline train``: train the liver and tumour bundle on a prepared dataset."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

NAME = "train"
HELP = (
    "Train the bundle (3D or 2.5D DynUNet) on a dataset prepared by `monai-pipeline prepare`; re-running into the "
    "same --output-dir resumes. Under torchrun it trains on every process (DDP)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the train command."""
    from monai_pipeline.training.workflow import bundle_defaults, default_bundle

    settings = bundle_defaults(default_bundle())
    if settings:
        shown = ", ".join(f"{key}={json.dumps(value)}" for key, value in settings.items())
        parser.epilog = f"Bundle settings, changed with --set KEY=VALUE (--config cpu and --dim 2 change some): {shown}"
    parser.add_argument("--bundle", default=str(default_bundle()), help="bundle folder (default: %(default)s)")
    parser.add_argument("--dataset-dir", required=True, metavar="PREP", help="prepared dataset (with datalist.json)")
    parser.add_argument("--dim", type=int, choices=(2, 3), default=3, help="3D network, or 2.5D on axial slices")
    parser.add_argument("--fold", type=int, default=0, help="validation fold")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the bundle's)")
    parser.add_argument("--output-dir", metavar="RUN", help="run folder (default: <bundle>/models)")
    parser.add_argument(
        "--pretrained",
        metavar="CKPT",
        help="start from these weights (fine-tuning); 'phantom': the shipped phantom model's (with --config cpu)",
    )
    parser.add_argument(
        "--freeze-encoder-epochs", type=int, help="keep the encoder frozen this many epochs (default: the bundle's, 0)"
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME",
        help="overlay config of the bundle, e.g. 'cpu' (configs/cpu.json: a small network for CPUs); repeatable",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a bundle config key (repeatable)"
    )


def run(args: argparse.Namespace) -> int:
    """Train and print where the run is."""
    from monai_pipeline.samples import PHANTOM_MODEL, phantom_model
    from monai_pipeline.training.workflow import parse_override, train

    overrides = dict(parse_override(text) for text in args.set)
    if args.freeze_encoder_epochs is not None:
        overrides["freeze_encoder_epochs"] = args.freeze_encoder_epochs
    run_dir = train(
        args.bundle,
        args.dataset_dir,
        dim=args.dim,
        fold=args.fold,
        epochs=args.epochs,
        output_dir=args.output_dir,
        pretrained=phantom_model() / "model.pt" if args.pretrained == PHANTOM_MODEL else args.pretrained,
        overrides=overrides,
        configs=args.config,
        quiet=args.quiet,
    )
    log = Path(run_dir) / "training_log.csv"
    if log.is_file():
        rows = list(csv.DictReader(log.open()))
        scored = [row for row in rows if row.get("val_mean_dice")]
        if scored:
            best = max(scored, key=lambda row: float(row["val_mean_dice"]))
            print(
                f"best validation at epoch {best['epoch']}: mean Dice {float(best['val_mean_dice']):.4f} "
                f"(liver {float(best['val_liver_dice']):.4f}, tumour {float(best['val_tumour_dice']):.4f})"
            )
    print(f"run folder: {run_dir} (model.pt, checkpoint_last.pt, run.json, preprocessing.json, training_log.csv)")
    return 0
