"""Deterministic test-only forecasters, registered for one test via :func:`register`."""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import pandas as pd
import pytest

from pipeline import forecasters
from pipeline.forecasters.baselines import Naive


class NumpyBound(Naive):
    """A naive forecaster whose saved file 'depends' on the exact numpy version."""

    name: ClassVar[str] = "numpybound"
    libraries: ClassVar[tuple[str, ...]] = ("numpy",)


class Broken(Naive):
    """Always fails to fit, like a model that does not converge."""

    name: ClassVar[str] = "broken"
    complexity: ClassVar[int] = 5

    def _fit(self, y: pd.Series) -> None:
        raise RuntimeError("simulated fit failure")


def register(monkeypatch: pytest.MonkeyPatch, *classes: type[Naive]) -> None:
    """Make ``classes`` resolvable by name through the forecaster registry for one test."""
    module = types.ModuleType("pipeline.forecasters._test_fakes")
    for cls in classes:
        setattr(module, cls.__name__, cls)
        monkeypatch.setitem(forecasters.REGISTRY, cls.name, f"_test_fakes:{cls.__name__}")
    monkeypatch.setitem(sys.modules, "pipeline.forecasters._test_fakes", module)
