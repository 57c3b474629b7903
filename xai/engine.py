"""The explanation engine: every single-pass map from ONE forward and ONE gradient pass.

Own code rather than one pytorch-grad-cam object per method: the library runs a full forward
and a full backward (weight gradients included) with numpy round-trips for each method; Grad-CAM,
Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM, Eigen-CAM, HayCAM+ and the per-stage maps all follow
from the activations ``A`` of the requested layers and ``dY/dA`` from ``torch.autograd.grad``.

* Score ``Y``: the raw logit of the target class (see :mod:`xai.targets`); probabilities are
  reported with softmax (sigmoid for single-logit models) at the card's temperature. The
  predicted class (and default target) follows the card's two-class decision threshold when it
  has one, as :func:`models.predict.predict` does, so maps explain the label the app shows.
* Maps stay torch tensors until the end; each final map is float32 in [0, 1] at the input
  resolution (ReLU, min-max, bilinear upsampling, min-max), with its time, layer, native grid
  (the layer's h x w before upsampling) and a ``flat`` flag (a constant map is returned as
  zeros, never NaN).
* Which pass a method needs comes from the registry (:func:`xai.registry.method_info`).
* Per-stage maps: ``gradcam_<stage>`` is Grad-CAM at ``stage_layers[stage]`` (e.g. ResNet
  ``layer3``/``layer4``); ``gradcam_fused`` is the mean of the normalised, input-size stage
  maps, min-max normalised again (every stage weighs the same).
* Thread-safe on a shared model, hooks always removed, model mode restored: see
  :mod:`xai.capture`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

# Importing these modules registers their methods.
from xai import dt_gradcam as _dt_gradcam  # noqa: F401
from xai import methods as _methods  # noqa: F401
from xai import scorecam as _scorecam  # noqa: F401
from xai.capture import forward_capture
from xai.folding import inference_forward
from xai.maps import minmax, normalize_cams
from xai.methods import GradCAM
from xai.registry import (
    OWN_PASSES,
    SHARED_PASS,
    CamMethod,
    PassContext,
    PassMethod,
    canonical_name,
    get_method,
    method_info,
    method_names,
    registered_methods,
)
from xai.targets import Target, predicted, probabilities, resolve_targets, target_scores

if TYPE_CHECKING:
    from models.predict import Prediction
    from models.registry import LoadedModel

__all__ = [
    "DEFAULT_METHODS",
    "FUSED",
    "SINGLE_PASS",
    "CamMap",
    "Explanation",
    "available_methods",
    "explain_batch",
    "explain_loaded",
    "explain_tensor",
    "explain_view",
    "method_label",
    "resolve_methods",
    "stage_methods",
]

SINGLE_PASS = tuple(method_names(SHARED_PASS))
"""The built-in maps that share one forward and one gradient pass at the target layer."""
DEFAULT_METHODS = ("gradcam", "hirescam", "haycam_plus")
"""The maps shown when nobody chose: the Predict page's and the batch summary's."""
FUSED = "gradcam_fused"
STAGE_PREFIX = "gradcam_"


@dataclass(frozen=True, eq=False)
class CamMap:
    """One method's map for one image.

    ``map``: (H, W) float32 in [0, 1] at the model input resolution. ``ms``: the method's own
    time per image, excluding the shared forward/gradient pass (see ``Explanation.pass_ms``);
    for DT Grad-CAM and Score-CAM it includes their own passes. ``flat``: the raw map was
    constant, so ``map`` is all zeros. ``info``: extra numbers (HayCAM+ ``n_components``,
    DT Grad-CAM ``threshold``, ``sigma``, ``kept`` ...). ``mask``: DT Grad-CAM's region (bool
    (H, W)), else None. ``grids``: the native (h, w) of the layer the map was computed at, before
    upsampling (the fused map lists each stage's); empty when unknown.
    """

    name: str
    label: str
    map: np.ndarray
    ms: float
    layer: str
    flat: bool
    info: dict[str, float] = field(default_factory=dict)
    mask: np.ndarray | None = None
    grids: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, eq=False)
class Explanation:
    """Maps of one image plus the prediction they explain.

    ``probabilities`` are softmax(logits / T) (sigmoid pair for one logit), or the decision of
    a model that averages centre crops (:func:`explain_view`); ``target_index`` is
    the class whose raw logit was differentiated. ``pass_ms`` is the shared forward + gradient
    pass per image. ``image`` is the model's view of the image (uint8 RGB) when explained from
    an image (:func:`explain_loaded`), else None.
    """

    maps: dict[str, CamMap]
    target_index: int
    predicted_index: int
    probabilities: np.ndarray
    logits: np.ndarray
    class_names: list[str] | None
    pass_ms: float
    image: np.ndarray | None = None

    @property
    def target_label(self) -> str:
        """Target class name (its index as text when no class names are known)."""
        return self._name(self.target_index)

    @property
    def label(self) -> str:
        """Predicted class name (its index as text when no class names are known)."""
        return self._name(self.predicted_index)

    @property
    def confidence(self) -> float:
        """Probability of the predicted class."""
        return float(self.probabilities[self.predicted_index])

    def _name(self, index: int) -> str:
        return self.class_names[index] if self.class_names else str(index)


def method_label(name: str) -> str:
    """Display name: ``"gradcampp"`` -> ``"Grad-CAM++"``, ``"gradcam_stage3"`` -> ``"Grad-CAM (stage3)"``."""
    key = canonical_name(name)
    if key == FUSED:
        return "Grad-CAM (fused stages)"
    try:
        return get_method(key).label
    except KeyError:
        if key.startswith(STAGE_PREFIX):
            return f"Grad-CAM ({key[len(STAGE_PREFIX):]})"
        return name


def stage_methods(stage_layers: Mapping[str, str] | None) -> list[str]:
    """The per-stage map names of these stage layers and the fused map (none without stages)."""
    stages = [STAGE_PREFIX + s for s in (stage_layers or {})]
    return [*stages, FUSED] if stages else []


def available_methods(
    stage_layers: Mapping[str, str] | None = None, include_expensive: bool = True
) -> list[str]:
    """Every method name usable with these stage layers, in display order: the shared-pass
    methods, the stage maps, then the methods with passes of their own."""
    return [*method_names(SHARED_PASS), *stage_methods(stage_layers),
            *method_names(OWN_PASSES, include_expensive=include_expensive)]


def resolve_methods(
    methods: str | Sequence[str], stage_layers: Mapping[str, str] | None = None
) -> list[str]:
    """Canonical, de-duplicated method names.

    ``methods`` is a list of names or one comma-separated string. Groups: ``all`` (every method
    except the expensive ones such as the exact ``scorecam``, which must be named),
    ``single_pass`` (the shared-pass maps), ``stages`` (each stage map and the fused map).
    """
    items = [m for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    stage_names = stage_methods(stage_layers)[:-1]
    out: list[str] = []
    for item in items:
        key = canonical_name(item)
        if not key:
            continue
        if key == "all":
            expanded = available_methods(stage_layers, include_expensive=False)
        elif key == "single_pass":
            expanded = method_names(SHARED_PASS)
        elif key == "stages":
            if not stage_names:
                raise ValueError("method group 'stages' needs stage layers")
            expanded = stage_methods(stage_layers)
        elif key in stage_names:
            expanded = [key]
        elif key == FUSED:
            if not stage_names:
                raise ValueError(f"method {FUSED!r} needs stage layers")
            expanded = [key]
        else:
            try:
                get_method(key)
            except KeyError as exc:
                known = ", ".join(available_methods(stage_layers))
                raise ValueError(f"unknown method {item.strip()!r}; known: {known}, "
                                 "or the groups all, single_pass, stages") from exc
            expanded = [key]
        out.extend(e for e in expanded if e not in out)
    if not out:
        raise ValueError("no method requested")
    return out


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@dataclass
class _Result:
    maps: torch.Tensor
    flat: torch.Tensor
    layer: str
    ms: float
    info: dict[str, torch.Tensor] = field(default_factory=dict)
    masks: torch.Tensor | None = None
    grids: tuple[tuple[int, int], ...] = ()


def _instantiate(name: str, options: Mapping[str, Mapping[str, Any]]) -> CamMethod | PassMethod:
    try:
        return get_method(name)(**dict(options.get(name, {})))
    except TypeError as exc:
        raise ValueError(f"bad options for method {name!r}: {exc}") from None


@dataclass
class _Plan:
    """Which methods run, at which layers, and whether a gradient pass is needed."""

    names: list[str]
    cam_methods: list[str]
    pass_methods: list[str]
    wanted_stages: list[str]
    stages: list[str]
    layers: list[str]
    grad_layers: list[str]


def _plan(names: list[str], target_layer: str, stage_layers: Mapping[str, str]) -> _Plan:
    infos = {n: method_info(n) for n in names if n in registered_methods()}
    cam_methods = [n for n, info in infos.items() if info.kind == SHARED_PASS]
    pass_methods = [n for n, info in infos.items() if info.kind == OWN_PASSES]
    wanted = [n[len(STAGE_PREFIX):] for n in names
              if n.startswith(STAGE_PREFIX) and n[len(STAGE_PREFIX):] in stage_layers]
    stages = list(stage_layers) if FUSED in names else wanted
    grad_layers = [stage_layers[s] for s in stages]
    if any(infos[n].needs_grad for n in cam_methods):
        grad_layers.insert(0, target_layer)
    grad_layers = list(dict.fromkeys(grad_layers))
    layers = list(dict.fromkeys(([target_layer] if cam_methods or pass_methods else [])
                                + grad_layers))
    return _Plan(names, cam_methods, pass_methods, wanted, stages, layers, grad_layers)


def _decided(logits: torch.Tensor, temperature: float, threshold: float | None) -> torch.Tensor:
    """(B,) predicted classes: argmax, or the card's two-class decision threshold on the
    calibrated probabilities (:func:`models.predict.decide`)."""
    if threshold is None:
        return predicted(logits)
    from models.predict import decide

    return decide(probabilities(logits, temperature), threshold)


def _shared_pass(
    model: nn.Module, x: torch.Tensor, plan: _Plan, target: Target | Sequence[Target],
    class_names: Sequence[str] | None, decide: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """ONE forward and (if needed) ONE gradient pass: (logits, targets, activations, grads)."""
    # The caller may be under no_grad / inference_mode (a Streamlit callback, say).
    with torch.inference_mode(False), torch.enable_grad():
        captured = forward_capture(model, x, plan.layers, bool(plan.grad_layers))
        logits = captured.logits
        targets = resolve_targets(logits.detach(), target, class_names, decide(logits.detach()))
        grads: dict[str, torch.Tensor] = {}
        if plan.grad_layers:
            score = target_scores(logits, targets).sum()
            tensors = [captured.activations[name] for name in plan.grad_layers]
            result = torch.autograd.grad(score, tensors, allow_unused=True)
            grads = {name: (g if g is not None else torch.zeros_like(t))
                     for name, g, t in zip(plan.grad_layers, result, tensors, strict=True)}
        acts = {name: a.detach() for name, a in captured.activations.items()}
    return logits.detach(), targets, acts, grads


def _stage_maps(
    plan: _Plan, stage_layers: Mapping[str, str], acts: Mapping[str, torch.Tensor],
    grads: Mapping[str, torch.Tensor], size: tuple[int, int], device: torch.device,
) -> dict[str, _Result]:
    """Grad-CAM at each stage layer, and the fused map (mean of the normalised stage maps)."""
    stage_results: dict[str, _Result] = {}
    for stage in plan.stages:
        t0 = _now(device)
        layer = stage_layers[stage]
        maps, flat = normalize_cams(GradCAM().cam(acts[layer], grads[layer]), size)
        stage_results[stage] = _Result(maps, flat, layer, (_now(device) - t0) * 1000,
                                       grids=(_grid(acts[layer]),))
    results = {STAGE_PREFIX + stage: stage_results[stage] for stage in plan.wanted_stages}
    if FUSED in plan.names:
        t0 = _now(device)
        stacked = torch.stack([r.maps for r in stage_results.values()])
        flat = torch.stack([r.flat for r in stage_results.values()]).all(dim=0)
        fused = minmax(stacked.mean(dim=0), flat).clamp_(0.0, 1.0)
        ms = (_now(device) - t0) * 1000 + sum(r.ms for r in stage_results.values())
        results[FUSED] = _Result(fused, flat, "+".join(stage_layers[s] for s in plan.stages), ms,
                                 grids=tuple(r.grids[0] for r in stage_results.values()))
    return results


def _grid(activations: torch.Tensor) -> tuple[int, int]:
    """(h, w) of a layer's activations (B, K, h, w): the native resolution of its maps."""
    return int(activations.shape[-2]), int(activations.shape[-1])


def explain_batch(
    model: nn.Module,
    x: torch.Tensor,
    *,
    target_layer: str,
    stage_layers: Mapping[str, str] | None = None,
    methods: str | Sequence[str] = "all",
    target: Target | Sequence[Target] = None,
    class_names: Sequence[str] | None = None,
    temperature: float = 1.0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    decision_threshold: float | None = None,
) -> list[Explanation]:
    """Explain a batch ``x`` (B, C, H, W) with every requested method; one result per image.

    ``target_layer`` / ``stage_layers`` are dotted submodule names. ``target``: None (predicted
    class), an index, a class name, or one of those per image. ``options``: per-method keyword
    arguments, e.g. ``{"dt_gradcam": {"n": 8}, "scorecam_fast": {"top_k": 32}}``.
    ``decision_threshold``: a two-class model's threshold on the calibrated probability of its
    second class (the card's), which decides the predicted class.
    """
    if x.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    options = options or {}
    stage_layers = dict(stage_layers or {})
    plan = _plan(resolve_methods(methods, stage_layers), target_layer, stage_layers)
    instances = {n: _instantiate(n, options) for n in plan.cam_methods + plan.pass_methods}
    size = (int(x.shape[-2]), int(x.shape[-1]))
    x = x.detach() if x.is_floating_point() else x.detach().float()
    device = x.device

    start = _now(device)
    def decide(logits: torch.Tensor) -> torch.Tensor:
        return _decided(logits, temperature, decision_threshold)

    logits, targets, acts, grads = _shared_pass(model, x, plan, target, class_names, decide)
    pass_ms = (_now(device) - start) * 1000

    results: dict[str, _Result] = {}
    for name in plan.cam_methods:
        t0 = _now(device)
        method = instances[name]
        assert isinstance(method, CamMethod)
        raw, info = method.cam_with_info(acts[target_layer], grads.get(target_layer))
        maps, flat = normalize_cams(raw, size)
        results[name] = _Result(maps, flat, target_layer, (_now(device) - t0) * 1000, info,
                                grids=(_grid(acts[target_layer]),))
    results.update(_stage_maps(plan, stage_layers, acts, grads, size, device))
    if plan.pass_methods:
        ctx = PassContext(
            model=model, x=x, targets=targets, target_layer=target_layer, activations=acts,
            capture=lambda xx, lys, ng: forward_capture(model, xx, lys, ng),
            infer=lambda xx: inference_forward(model, xx), score=target_scores, logits=logits,
        )
        for name in plan.pass_methods:
            t0 = _now(device)
            method = instances[name]
            assert isinstance(method, PassMethod)
            with torch.inference_mode(False), torch.enable_grad():
                out = method.run(ctx)
            results[name] = _Result(out.maps, out.flat, out.layer, (_now(device) - t0) * 1000,
                                    out.info, out.masks,
                                    (_grid(acts[out.layer]),) if out.layer in acts else ())
    return _package(plan.names, results, logits, targets, decide(logits), temperature,
                    class_names, pass_ms)


def _package(
    names: list[str], results: Mapping[str, _Result], logits: torch.Tensor,
    targets: torch.Tensor, predictions: torch.Tensor, temperature: float,
    class_names: Sequence[str] | None, pass_ms: float,
) -> list[Explanation]:
    """Tensors -> one :class:`Explanation` of numpy maps per image (the only host copy)."""
    batch = logits.shape[0]
    probs = probabilities(logits, temperature).cpu().numpy()
    preds = predictions.cpu().numpy()
    logits_np = logits.float().cpu().numpy()
    tgt = targets.cpu().numpy()
    host = {name: (r.maps.cpu().numpy().astype(np.float32, copy=False), r.flat.cpu().numpy(),
                   {k: v.cpu().numpy() for k, v in r.info.items()},
                   None if r.masks is None else r.masks.cpu().numpy())
            for name, r in results.items()}
    out = []
    for i in range(batch):
        maps_i = {}
        for name in names:
            r, (maps_np, flat_np, info_np, masks_np) = results[name], host[name]
            maps_i[name] = CamMap(
                name=name, label=method_label(name), map=maps_np[i], ms=r.ms / batch,
                layer=r.layer, flat=bool(flat_np[i]),
                info={k: float(v[i]) for k, v in info_np.items()},
                mask=None if masks_np is None else masks_np[i], grids=r.grids,
            )
        out.append(Explanation(
            maps=maps_i, target_index=int(tgt[i]), predicted_index=int(preds[i]),
            probabilities=probs[i], logits=logits_np[i],
            class_names=list(class_names) if class_names is not None else None,
            pass_ms=pass_ms / batch,
        ))
    return out


def explain_tensor(
    model: nn.Module,
    x: torch.Tensor,
    *,
    target_layer: str,
    stage_layers: Mapping[str, str] | None = None,
    methods: str | Sequence[str] = "all",
    target: Target = None,
    class_names: Sequence[str] | None = None,
    temperature: float = 1.0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    decision_threshold: float | None = None,
) -> Explanation:
    """Explain one image tensor (C, H, W) or (1, C, H, W); see :func:`explain_batch`."""
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (C, H, W) or (1, C, H, W), got {tuple(x.shape)}")
    return explain_batch(model, x, target_layer=target_layer, stage_layers=stage_layers,
                         methods=methods, target=target, class_names=class_names,
                         temperature=temperature, options=options,
                         decision_threshold=decision_threshold)[0]


def explain_loaded(
    loaded: LoadedModel,
    rgb: np.ndarray,
    *,
    methods: str | Sequence[str] = "all",
    target: Target = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Explanation:
    """Explain an RGB image (H, W, 3 uint8) with a registry model (card preprocessing applied).

    Layers come from the architecture spec, class names, temperature and decision threshold
    from the model card; ``Explanation.image`` is the model's view of the image, on which the
    maps lie.
    """
    from models.predict import model_view

    view = model_view(loaded, rgb)  # preprocess once: the input and the image the maps lie on
    return explain_view(loaded, view, methods=methods, targets=[target], options=options)[0]


def explain_view(
    loaded: LoadedModel,
    view: np.ndarray,
    *,
    methods: str | Sequence[str] = "all",
    targets: Sequence[Target] = (None,),
    options: Mapping[str, Mapping[str, Any]] | None = None,
    decision: Prediction | None = None,
) -> list[Explanation]:
    """Explain the model's view of an image (already preprocessed, see
    :func:`models.predict.model_view`) for each of ``targets``: one :class:`Explanation` each.

    Several targets (every class, say) share ONE batched pass: the view is repeated along the
    batch and each copy differentiates its own class, so the maps are those of one target at
    a time (samples are independent in eval mode). ``Explanation.image`` is ``view``. A card
    with test-time crops or flips decides on the image and those views: the predicted class and
    probabilities are that decision, as the app predicts; the maps explain the image itself.
    ``decision``: the prediction already made for this view (:func:`models.predict.predict`),
    reused; without it such a card costs one more forward pass, without gradients.
    """
    from models.predict import view_to_input

    targets = list(targets)
    if not targets:
        raise ValueError("no target to explain")
    x = view_to_input(loaded, view)
    if not loaded.card.decision_views:  # the image alone decides: the explanation pass does
        decision = None
    elif decision is None:
        from models.predict import predict_batch

        decision = predict_batch(loaded, [view], views=False)[0]
    if decision is not None:
        targets = [decision.index if t is None else t for t in targets]
    batch = x.expand(len(targets), -1, -1, -1).contiguous()
    results = explain_batch(
        loaded.model, batch, target_layer=loaded.arch.target_layer,
        stage_layers=loaded.arch.stage_layers, methods=methods, target=targets,
        class_names=loaded.card.classes, temperature=loaded.card.temperature, options=options,
        decision_threshold=loaded.card.decision_threshold,
    )
    if decision is not None:
        probs = np.array([decision.probabilities[c] for c in loaded.card.classes], dtype=np.float32)
        results = [replace(r, predicted_index=decision.index, probabilities=probs) for r in results]
    return [replace(result, image=view) for result in results]
