"""MedXAI entry point: the navigation (Home, Predict, Worklist, Compare, Models) and the home
page.

The other pages are the files in ``pages/``; ``st.navigation`` names them, so no sidebar entry
is called after a file.
"""

from __future__ import annotations

import streamlit as st

from models.card import ModelCard, headline
from models.registry import ModelUnavailable, find_router, registry_status
from models.route import describe
from pages import page_header


def home() -> None:
    """What the tool is and is not, the installed models with their figures, how to use it."""
    page_header("MedXAI: explainable medical image classification", prominent=True)
    st.markdown(
        "Upload an endoscopy, brain-MRI, X-ray or histology image (PNG, JPEG, TIFF or DICOM). The app "
        "picks the fine-tuned model for that modality and task (capsule endoscopy for bleeding or "
        "colonoscopy for polyps, say), shows the prediction with its confidence, and "
        "shows class-activation maps side by side over the image, so you can see *where* the model "
        "looked before you weigh *what* it said."
    )

    st.subheader("Installed models")
    rows, untrained = [], []
    for (modality, task), entry in registry_status(by_task=True).items():
        if isinstance(entry, ModelCard):
            figures = headline(entry)
            rows.append({"modality": modality, "task": describe(task), "model": entry.name,
                         "architecture": entry.arch, "classes": ", ".join(entry.classes),
                         "test accuracy": "n/a" if figures.accuracy is None else f"{figures.accuracy:.1%}",
                         "95% CI": figures.ci_text, "test n": str(figures.n or "n/a"),
                         "external": figures.external_text,
                         "linear probe": "n/a" if figures.probe_accuracy is None
                         else f"{figures.probe_accuracy:.1%}"
                         + (" (rule not met)" if figures.beats_probe is False else ""),
                         "data": entry.data.get("name", "unknown"), "status": "ready"})
        else:
            missing = entry.reason.startswith("no model")  # else: why its cards cannot load
            rows.append({"modality": modality, "task": describe(task), "model": "-",
                         "architecture": "-", "classes": "-", "test accuracy": "-", "95% CI": "-",
                         "test n": "-", "external": "-", "linear probe": "-", "data": "-",
                         "status": "no model installed" if missing else entry.reason})
            if missing:
                untrained.append(f"`python -m training.train --modality {modality} --task {task} ...`")
    st.table(rows, hide_index=True)  # a static table: every column shown, long text wrapped
    st.caption("Test accuracy is measured on held-out images from the same sources as training; the "
               "95% CI (Wilson score interval) shows how far it could be off with that many images. "
               "*External*: accuracy on images from another source, where measured. *Linear probe*: "
               "a logistic regression on frozen ImageNet features of the same images, the floor a "
               "fine-tuned model should clearly beat (the rule: by 3 points of balanced accuracy, or "
               "no worse where the probe reaches 97%).")
    if untrained:
        st.caption("One model per modality and task. To add a missing one, train it (see the "
                   "README): " + ", ".join(untrained) + ".")
    try:
        router = ModelCard.read(find_router())
        st.markdown(f"**Modality router** `{router.name}` (classes {', '.join(router.classes)}; "
                    f"{headline(router).sentence}): every upload is routed to its model "
                    "automatically, and an image unlike all four modalities gets a warning instead of "
                    "a label.")
    except ModelUnavailable as exc:
        st.warning(f"{exc}: choose the modality of each upload yourself.")

    st.subheader("How to use it")
    st.markdown(
        "1. **Predict**: upload an image; the modality is detected (a DICOM Modality tag wins; "
        "override it if you must), press *Predict*. Warnings come first: an image unlike the "
        "training data or an uncertain model marks the label as not reliable. You get the label, "
        "its confidence, all class probabilities and the map viewer (default Grad-CAM, "
        "HiResCAM, HayCAM+) on the image you uploaded, at its resolution: zoom or pan one panel "
        "and all follow; each view has its own colour map and opacity (colour-blind-safe maps "
        "included); choose *every class* for one row of maps per class. Download the panels or "
        "an HTML/PDF report.\n"
        "2. **Worklist**: upload many images, a .zip or a DICOM series; one table of modality, "
        "label, confidence and warnings, exported as CSV; open a row in the viewer, or put a "
        "prior and a current study side by side.\n"
        "3. **Compare methods**: every method on one image, timed; upload a ground-truth mask to "
        "score each map (IoU, Dice, pointing game) and see deletion/insertion curves.\n"
        "4. **Models**: each model's card: data and licence, split, recipe, test metrics, "
        "confusion matrix, checksum and code version."
    )


st.navigation([
    st.Page(home, title="Home", icon=":material/home:", default=True),
    st.Page("pages/1_Predict.py", title="Predict", icon=":material/biotech:", url_path="Predict"),
    st.Page("pages/4_Worklist.py", title="Worklist", icon=":material/list:", url_path="Worklist"),
    st.Page("pages/2_Compare.py", title="Compare", icon=":material/compare:", url_path="Compare"),
    st.Page("pages/3_Models.py", title="Models", icon=":material/info:", url_path="Models"),
]).run()
