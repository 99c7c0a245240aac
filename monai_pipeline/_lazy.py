"""Package namespaces that import a submodule only when one of its names is first used.

Importing torch and MONAI takes seconds; a package whose ``__init__`` imports every submodule makes each command,
even ``--help``, pay for all of them. A lazy package lists where each public name lives and imports that module on
first access, so ``from monai_pipeline.training import TimeLimit`` and bundle expressions such as
``$monai_pipeline.training.fold_files(...)`` keep working while ``import monai_pipeline.training.data`` stays quick.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a lazy package.

    Args:
        package: the package's ``__name__``.
        exports: each public name mapped to the submodule (relative to ``package``) that defines it.

    Returns:
        ``(__getattr__, __dir__)``: a public name imports its submodule and is returned; any other name that is a
        submodule of ``package`` is imported and returned; anything else raises ``AttributeError``.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        if not name.startswith("__"):
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":
                    raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    module = sys.modules[package]
    module.__class__ = _LazyPackage
    module.__dict__["_shadowed"] = {name for name, source in exports.items() if name == source}
    return __getattr__, __dir__


class _LazyPackage(types.ModuleType):
    """A package whose public names win over submodules of the same name (``inference.segment`` is the function,
    as an eager ``from .segment import segment`` would make it): importing the submodule does not rebind it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_shadowed", ()):
            return
        super().__setattr__(name, value)
