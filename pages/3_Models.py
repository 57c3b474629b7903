"""Models: every installed model card in plain words (data, split, recipe, metrics, checksum)."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from models.card import ModelCard, headline
from models.card_text import (
    checks_text,
    data_text,
    metric_rows,
    model_text,
    per_class_rows,
    recipe_text,
    split_text,
)
from models.registry import list_cards
from models.route import describe
from pages import page_header

CHART_HEIGHT = 480


def sentences(container, title: str, lines: list[str]) -> None:
    """A bold title and one line per sentence."""
    container.markdown(f"**{title}**  \n" + "  \n".join(lines))


def share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


page_header("Models")

entries = list_cards()
if not entries:
    st.info("No model is installed. Train one with `python -m training.train` (see the README).")
for folder, card in entries:
    if not isinstance(card, ModelCard):
        st.error(f"{folder.name}: {card}")
        continue
    test = card.metrics  # test-split figures at the top level; "val", "calibration" nested
    sentence = headline(card).sentence
    role = "modality router" if card.kind == "router" else describe(card.task)
    with st.expander(f"{role}: {card.name} - {sentence}", expanded=card.default):
        st.markdown(f"**{sentence[0].upper()}{sentence[1:]}.**")
        st.caption("95% CI: Wilson score interval over the n held-out test images (same sources "
                   "as training). External: images from another source. Linear-probe baseline: "
                   "logistic regression on frozen ImageNet features, the floor to beat.")
        left, right = st.columns(2)
        sentences(left, "Model", model_text(card))
        measured = card.trust.get("test")
        if measured:
            left.markdown(
                f"**Trust signals** (test split, n={measured['n']}): "
                f"{measured['uncertain_fraction']:.1%} flagged uncertain, accuracy "
                f"{share(measured['accuracy_uncertain'])} on those vs "
                f"{share(measured['accuracy_certain'])} on the rest; "
                f"{share(measured.get('ood_flagged_fraction'))} flagged out of distribution.")
        else:
            left.markdown("**Trust signals** not fitted: run `python -m training.trust`.")
        sentences(right, "Training data", data_text(card))
        sentences(right, "Split", split_text(card))
        sentences(st, "How it was trained", recipe_text(card))
        if card.recipe.get("command"):
            st.code(card.recipe["command"], language="bash", wrap_lines=True)
        rows = metric_rows(test)
        if rows:
            st.markdown("**Test-split metrics**")
            st.table(rows, border="horizontal")  # a static table wraps the explanations
        checks = checks_text(card)
        if checks:
            sentences(st, "Beyond the test split", checks)
        per_class = per_class_rows(test)
        if per_class:
            st.markdown("**Per class** (sensitivity: share of that class found; specificity: "
                        "share of the other classes correctly not called it; PPV / NPV: share "
                        "of the calls for / against it that are right)")
            st.dataframe(per_class, hide_index=True, height="content", width="stretch")
        plots = st.columns(2)
        if test.get("confusion_matrix"):
            figure = go.Figure(go.Heatmap(z=test["confusion_matrix"], x=card.classes,
                                          y=card.classes, colorscale="Blues", texttemplate="%{z}"))
            figure.update_layout(title="Confusion matrix (test images)", xaxis_title="predicted",
                                 yaxis_title="true", height=CHART_HEIGHT,
                                 yaxis_autorange="reversed")
            plots[0].plotly_chart(figure, width="stretch", key=f"cm-{card.name}")
        if isinstance(test.get("roc"), dict):
            figure = go.Figure([go.Scatter(x=c["fpr"], y=c["tpr"], name=name)
                                for name, c in test["roc"].items()])
            figure.update_layout(title="ROC curve per class (one vs rest)",
                                 xaxis_title="false positive rate (1 - specificity)",
                                 yaxis_title="true positive rate (sensitivity)",
                                 height=CHART_HEIGHT)
            plots[1].plotly_chart(figure, width="stretch", key=f"roc-{card.name}")
        if isinstance(test.get("reliability"), dict):
            bins = test["reliability"]
            counts = bins.get("count") or []
            figure = go.Figure([go.Bar(x=bins["confidence"], y=bins["accuracy"], name="accuracy",
                                       text=[f"n={c}" for c in counts], textposition="outside"),
                                go.Scatter(x=[0, 1], y=[0, 1], name="perfect calibration")])
            figure.update_layout(title="Reliability: is a 90% confidence right 90% of the time? "
                                       "(n: test images in the bin)",
                                 xaxis_title="stated confidence", yaxis_title="actual accuracy",
                                 height=CHART_HEIGHT)
            st.columns(2)[0].plotly_chart(figure, width="stretch", key=f"rel-{card.name}")
        st.caption(f"Weights sha256 `{card.sha256}` (checked on every load) - code version "
                   f"`{card.code_version}` - created {card.created}")
