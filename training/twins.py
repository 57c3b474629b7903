"""Does a test score rest on near-copies of training images?

A grouped split keeps together the near-duplicates its rule finds; copies it misses (another
export of one scan, the next slice, the next video frame) would let a model score by
recognition rather than by reading the image, and such a score would not carry over to a new
hospital's images. For every test image :func:`nearest` finds its most similar image outside
the test split (the Pearson correlation of 32 x 32 grey thumbnails over the pixels the
preprocessing keeps, the measure the split's grouping uses), and :func:`twin_report` scores the
model on the half of the test images least like anything it trained on beside the other half,
and beside two classifiers that can score only by likeness: the label of that nearest image
(1-nearest neighbour on thumbnails) and of the nearest image in frozen ImageNet feature space.

A model that holds its accuracy on the less similar half, and clearly beats both neighbours,
does not owe its figure to near-copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from models.card import wilson_interval

if TYPE_CHECKING:
    import torch

    from models.card import ModelCard

__all__ = ["COPY_CORRELATION", "nearest", "training_copies", "twin_report"]

COPY_CORRELATION = 0.95  # the staging's own threshold for a copy of an independent-set image


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def nearest(query: np.ndarray, reference: np.ndarray, block: int = 1024
            ) -> tuple[np.ndarray, np.ndarray]:
    """Index and cosine similarity of each ``query`` row's most similar ``reference`` row (for
    standardised thumbnails, :func:`training.data.thumbnails`, the cosine is the Pearson
    correlation). Compared in blocks of ``block`` query rows, so memory stays bounded."""
    if not len(reference):
        raise ValueError("no reference rows to compare with")
    query, reference = _unit(query), _unit(reference)
    index, similarity = [], []
    for start in range(0, len(query), block):
        sims = query[start:start + block] @ reference.T
        index.append(sims.argmax(1))
        similarity.append(sims.max(1))
    return np.concatenate(index), np.concatenate(similarity)


def _share(hits: np.ndarray) -> dict[str, Any]:
    n, k = int(hits.size), int(hits.sum())
    return {"n": n, "accuracy": k / n if n else None,
            "ci95": list(wilson_interval(k, n)) if n else None}


def twin_report(labels: np.ndarray, correct: np.ndarray, similarity: np.ndarray,
                pixel_neighbour_labels: np.ndarray, feature_neighbour_labels: np.ndarray
                ) -> dict[str, Any]:
    """The model's accuracy by how alike each test image is to its nearest training image.

    ``correct``: the model's hits per test image; ``similarity``: each test image's nearest
    thumbnail correlation (:func:`nearest`); the two neighbour labels: the class of that
    nearest image and of the nearest in feature space. The halves split at the median
    similarity (ties go to the nearer half); ``without_copies`` leaves out the test images
    correlating above :data:`COPY_CORRELATION` with a training image.
    """
    labels, correct, similarity = np.asarray(labels), np.asarray(correct, bool), np.asarray(similarity)
    if not labels.size or not labels.shape == correct.shape == similarity.shape:
        raise ValueError("labels, correct and similarity need one entry per test image")
    median = float(np.median(similarity))
    nearer, copies = similarity >= median, similarity > COPY_CORRELATION
    return {
        "n": int(labels.size),
        "similarity": {"median": median, "p10": float(np.quantile(similarity, 0.1)),
                       "p90": float(np.quantile(similarity, 0.9))},
        "copies": int(copies.sum()),
        "copy_correlation": COPY_CORRELATION,
        "model": {"all": _share(correct), "less_alike_half": _share(correct[~nearer]),
                  "more_alike_half": _share(correct[nearer]),
                  "without_copies": _share(correct[~copies])},
        "nearest_neighbour": {
            "pixels": _share(np.asarray(pixel_neighbour_labels) == labels),
            "features": _share(np.asarray(feature_neighbour_labels) == labels)},
    }


def training_copies(card: ModelCard, images: torch.Tensor, correct: np.ndarray,
                    threads: int = 2) -> dict[str, Any]:
    """Which of ``images`` (model views, ``(N, 3, S, S)`` uint8, with the model's ``correct``
    hits) nearly copy an image the model was trained or validated on: the card's data listed
    again (:func:`training.data.card_data`, relative sources under the working directory) but
    its test files. An external set of "other copies of a public dataset" can hold the training
    images themselves; their share, and the accuracy without them."""
    from imaging.preprocess import kept_region
    from training.data import card_data, decode_images, thumbnails

    paths, _, is_test = card_data(card)
    seen = decode_images([p for p, test in zip(paths, is_test, strict=True) if not test],
                         card.preprocessing, card.input_size, threads)
    keep = kept_region(card.preprocessing, card.input_size)
    _, similarity = nearest(thumbnails(images, keep), thumbnails(seen, keep))
    copies = similarity > COPY_CORRELATION
    return {"n": int(len(similarity)), "copies": int(copies.sum()),
            "copy_correlation": COPY_CORRELATION, "compared_with": int(len(seen)),
            "similarity": {"median": float(np.median(similarity)),
                           "max": float(similarity.max())},
            "without_copies": _share(np.asarray(correct, bool)[~copies])}
