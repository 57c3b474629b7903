"""The registry carries each method's kind, cost and variant; the engine and compare read it."""

from __future__ import annotations

import pytest
import torch

from tests.xai.conftest import STAGES, TinyNet
from xai import registry
from xai.compare import method_groups
from xai.engine import SINGLE_PASS, available_methods, explain_tensor, resolve_methods
from xai.registry import (
    OWN_PASSES,
    SHARED_PASS,
    CamMethod,
    PassContext,
    PassMethod,
    PassResult,
    method_info,
    method_names,
    register_method,
)


def test_kinds_costs_and_variants() -> None:
    assert method_info("Grad-CAM++").kind == SHARED_PASS
    assert method_info("eigencam").needs_grad is False and method_info("gradcam").needs_grad
    dt, exact, fast = (method_info(n) for n in ("dt_gradcam", "scorecam", "scorecam_fast"))
    assert dt.kind == exact.kind == fast.kind == OWN_PASSES
    assert exact.expensive and not fast.expensive and not dt.expensive
    assert fast.variant_of == "scorecam" and exact.variant_of is None
    assert method_names(SHARED_PASS) == list(SINGLE_PASS)
    assert method_names(OWN_PASSES) == ["dt_gradcam", "scorecam", "scorecam_fast"]
    # the Predict page's list: no expensive method, no fast variant
    assert method_names(include_expensive=False, include_variants=False) == [
        *SINGLE_PASS, "dt_gradcam"]
    with pytest.raises(ValueError, match="kind"):
        method_names("two_passes")


def test_a_new_method_is_planned_from_its_kind(monkeypatch: pytest.MonkeyPatch,
                                               tiny: TinyNet) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_method("meanact", "Mean activation")
    class MeanActivation(CamMethod):
        """Mean of the channels, no gradient."""

        needs_grad = False

        def cam(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
            return a.mean(dim=1)

    @register_method("centre", "Centre prior")
    class CentrePrior(PassMethod):
        """A fixed map, to check own-pass methods get their own group."""

        expensive = True

        def run(self, ctx: PassContext) -> PassResult:
            maps = torch.zeros(ctx.x.shape[0], *ctx.x.shape[-2:])
            maps[:, 8:24, 8:24] = 1.0
            return PassResult(maps, torch.zeros(ctx.x.shape[0], dtype=torch.bool),
                              ctx.target_layer)

    assert "meanact" in resolve_methods("single_pass")
    assert "meanact" in available_methods() and "centre" not in available_methods(
        include_expensive=False)
    assert ["centre"] in method_groups(STAGES, exact_scorecam=True)
    assert "meanact" in method_groups(STAGES, exact_scorecam=True)[0]
    e = explain_tensor(tiny, torch.randn(3, 32, 32), target_layer="layer4",
                       methods=["meanact", "centre"])
    assert e.maps["meanact"].grids == ((8, 8),) and e.maps["meanact"].label == "Mean activation"
    assert e.maps["centre"].map[16, 16] == 1.0 and e.maps["centre"].grids == ((8, 8),)
