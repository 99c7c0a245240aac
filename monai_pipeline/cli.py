"""The ``monai-pipeline`` command: parses arguments and calls the Python API; errors print as one line."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Sequence

from monai_pipeline import __version__
from monai_pipeline.errors import Interrupted, PipelineError, reason, root_cause

__all__ = ["DefaultsHelpFormatter", "main", "run_command"]


_NO_DEFAULT = (None, False, argparse.SUPPRESS)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, written as it would be typed (``1.5 1.5 1.5``), unless the
    help text already speaks of its default or there is none (a flag, an option that is off unless given)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text
            or any(default is off for off in _NO_DEFAULT)
            or default == []
        ):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``monai-pipeline`` with ``argv`` (default: the process's arguments) and return the exit code."""
    from monai_pipeline.commands import demo, evaluate, export, infer, inspect, prepare, synth, train

    parser = argparse.ArgumentParser(
        prog="monai-pipeline",
        description="Liver and liver-tumour CT segmentation with MONAI: prepare, train, infer, evaluate.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (prepare, train, infer, evaluate, export, synth, inspect, demo):
        sub = commands.add_parser(
            module.NAME, help=module.HELP, description=module.HELP, formatter_class=DefaultsHelpFormatter
        )
        module.add_arguments(sub)
        add_common_arguments(sub)
        sub.set_defaults(func=module.run)
    args = parser.parse_args(argv)
    return run_command(args.func, args)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every command takes."""
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings and errors only")


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Call a command; a :class:`PipelineError` (or any error, unless ``--debug``) becomes one line on stderr."""
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s: %(message)s",
    )
    # MONAI announces optional GPU DICOM decoders it cannot find; that is no news on a CPU and not for our users
    warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    try:
        return func(args)
    except Exception as err:  # noqa: BLE001 - the user sees one line; --debug shows the traceback
        if args.debug:
            raise
        cause = _user_error(err)
        if cause is not None:
            print(f"error: {cause}", file=sys.stderr)
        else:
            root = root_cause(err)
            shown = ": ".join(part for part in (type(root).__name__, reason(root)) if part)
            print(f"error: unexpected {shown} (run with --debug for details)", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        said = str(err) if isinstance(err, Interrupted) and str(err) else "interrupted; files already written are kept"
        print(f"error: {said}", file=sys.stderr)
        return 130


def _user_error(err: BaseException) -> PipelineError | None:
    """The :class:`PipelineError` behind ``err``, also when a library (e.g. a MONAI bundle) wrapped it."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, PipelineError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
