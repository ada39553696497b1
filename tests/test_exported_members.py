"""The public surface: everything in __all__ exists, and nothing public is left out."""

from __future__ import annotations

import inspect

import mlops_nb
from mlops_nb import errors


def test_all_is_complete_and_importable() -> None:
    public = {n for n in dir(mlops_nb) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(mlops_nb, n))}
    assert set(mlops_nb.__all__) == (public - modules) | {"__version__"}
    for name in mlops_nb.__all__:
        assert hasattr(mlops_nb, name), name


def test_one_exception_tree() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, mlops_nb.MlopsError), name
        assert cls.__doc__, name
        assert name in mlops_nb.__all__, name
