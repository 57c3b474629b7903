"""Models: every installed model card, rendered (data, split, recipe, metrics, checksum)."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from models.card import ModelCard, headline
from models.registry import list_cards
from pages import page_header

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
    role = "modality router" if card.kind == "router" else card.modality
    with st.expander(f"{role}: {card.name} - {sentence}", expanded=card.default):
        st.markdown(f"**{sentence[0].upper()}{sentence[1:]}.**")
        st.caption("95% CI: Wilson score interval over the n held-out test images (same sources "
                   "as training). External: images from another source. Linear-probe baseline: "
                   "logistic regression on frozen ImageNet features, the floor to beat.")
        left, right = st.columns(2)
        left.markdown(f"**Architecture** {card.arch}, input {card.input_size} px, "
                      f"preprocessing `{card.preprocessing}`  \n**Classes** "
                      f"{', '.join(card.classes)}  \n**Temperature** {card.temperature:.3f}")
        measured = card.trust.get("test")
        if measured:
            def share(value: float | None) -> str:
                return "n/a" if value is None else f"{value:.1%}"

            left.markdown(
                f"**Trust signals** (test split, n={measured['n']}): "
                f"{measured['uncertain_fraction']:.1%} flagged uncertain, accuracy "
                f"{share(measured['accuracy_uncertain'])} on those vs "
                f"{share(measured['accuracy_certain'])} on the rest; "
                f"{share(measured.get('ood_flagged_fraction'))} flagged out of distribution.")
        else:
            left.markdown("**Trust signals** not fitted: run `python -m training.trust`.")
        left.markdown("**Data**")
        left.json(card.data, expanded=False)
        left.markdown("**Split**")
        left.json(card.split, expanded=False)
        right.markdown("**Recipe**")
        right.json(card.recipe, expanded=False)
        right.markdown(f"**Weights sha256** `{card.sha256}`  \n**Code version** "
                       f"`{card.code_version}`  \n**Created** {card.created}")
        scalars = {k: v for k, v in test.items() if isinstance(v, int | float)}
        if scalars:
            st.markdown("**Test-split metrics**")
            st.dataframe([{"metric": k, "value": round(float(v), 4)} for k, v in scalars.items()],
                         hide_index=True)
        if isinstance(test.get("per_class"), dict):
            st.dataframe([{"class": c, **{k: round(float(v), 4) for k, v in m.items()}}
                          for c, m in test["per_class"].items()], hide_index=True)
        plots = st.columns(3)
        if test.get("confusion_matrix"):
            figure = go.Figure(go.Heatmap(z=test["confusion_matrix"], x=card.classes,
                                          y=card.classes, colorscale="Blues", texttemplate="%{z}"))
            figure.update_layout(title="Confusion matrix", xaxis_title="predicted",
                                 yaxis_title="true", height=380, yaxis_autorange="reversed")
            plots[0].plotly_chart(figure, width="stretch", key=f"cm-{card.name}")
        if isinstance(test.get("roc"), dict):
            figure = go.Figure([go.Scatter(x=c["fpr"], y=c["tpr"], name=name)
                                for name, c in test["roc"].items()])
            figure.update_layout(title="ROC (one vs rest)", xaxis_title="false positive rate",
                                 yaxis_title="true positive rate", height=380)
            plots[1].plotly_chart(figure, width="stretch", key=f"roc-{card.name}")
        if isinstance(test.get("reliability"), dict):
            bins = test["reliability"]
            figure = go.Figure([go.Bar(x=bins["confidence"], y=bins["accuracy"], name="accuracy"),
                                go.Scatter(x=[0, 1], y=[0, 1], name="perfect calibration")])
            figure.update_layout(title="Reliability", xaxis_title="confidence",
                                 yaxis_title="accuracy", height=380)
            plots[2].plotly_chart(figure, width="stretch", key=f"rel-{card.name}")
