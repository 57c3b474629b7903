"""Lazy package attributes: a name resolves to its home module's object, an unknown one is an
AttributeError (so ``hasattr`` and ``from ... import`` behave as for any module)."""

from __future__ import annotations

import pytest

import models.batch
import models.predict
import xai
from models.lazy import lazy_attributes


def test_names_resolve_to_their_home_modules() -> None:
    from models.batch.run import run_batch
    from models.predict.__main__ import main
    from models.predict.inference import predict
    from xai.engine import explain_loaded
    from xai.registry import register_method

    assert models.predict.predict is predict and models.predict.main is main
    assert models.batch.run_batch is run_batch
    assert xai.explain_loaded is explain_loaded and xai.register_method is register_method
    for package in (models.predict, models.batch, xai):
        assert all(hasattr(package, name) for name in package.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(models.predict, "no_such_name")
    with pytest.raises(ImportError, match="no_such_name"):
        from models.predict import no_such_name  # noqa: F401
    with pytest.raises(AttributeError, match="'pkg' has no attribute 'x'"):
        lazy_attributes("pkg", {})("x")
