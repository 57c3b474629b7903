"""Datasets for training and evaluation: listing, decoding once, near-duplicate groups, splits.

Input is an ImageFolder tree (``DIR/<class>/<image>``) or a CSV with a header naming a path
column (``path`` or ``file``, relative to the CSV's folder), a ``label`` column and, optionally, a
group column (e.g. LC25000's ``augmentation_group``). Every image is read with
:func:`imaging.load_path` and :func:`imaging.preprocess` exactly as inference reads it, once per
run, into a uint8 tensor kept in memory.

Splits are stratified by class over *groups*: images whose difference hashes (dHash) differ in at
most ``max_hamming`` of their bits are joined (union-find, so near-duplicate chains such as
adjacent MRI slices or consecutive capsule frames form one group), and so are images whose grey
thumbnails correlate above ``min_correlation`` (when set: repeated video frames) and images
sharing a group-column value or a ``group_pattern`` match. A group never straddles two splits.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from imaging import load_path, preprocess, preprocess_with_geometry
from imaging.preprocess import kept_region

if TYPE_CHECKING:
    from models.card import ModelCard

__all__ = [
    "IMAGE_SUFFIXES",
    "Dataset",
    "GroupRule",
    "Split",
    "assign_parts",
    "card_data",
    "decode_images",
    "decode_regions",
    "dhash",
    "find_region_masks",
    "group_ids",
    "list_files",
    "list_sources",
    "make_split",
    "sha256_of_files",
    "source_location",
    "thumbnails",
]

# Files a class folder may hold; DICOM files often have no suffix at all.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp",
                            ".dcm", ".dicom", ""})
_PATH_COLUMNS = ("path", "file", "filename", "image")


@dataclass(frozen=True)
class Dataset:
    """Listed samples: ``files`` relative to ``root``, class index ``labels``, optional ``groups``."""

    root: Path
    files: list[str]
    labels: np.ndarray
    classes: list[str]
    groups: list[str] | None = None

    @property
    def paths(self) -> list[Path]:
        """Absolute paths of the files."""
        return [self.root / f for f in self.files]

    def counts(self, index: np.ndarray | None = None) -> dict[str, int]:
        """Images per class, over ``index`` (all when ``None``)."""
        labels = self.labels if index is None else self.labels[index]
        tally = Counter(int(v) for v in labels)
        return {c: tally.get(i, 0) for i, c in enumerate(self.classes)}


def list_files(data: Path, *, group_column: str | None = None,
               classes: Sequence[str] | None = None, max_per_class: int | None = None) -> Dataset:
    """List an ImageFolder tree or a CSV file; classes are sorted unless ``classes`` is given.

    ``max_per_class`` keeps the first N files of each class in listing order (smoke runs).
    """
    data = Path(data)
    if data.is_file():
        root, files, names, groups = _read_csv(data, group_column)
    elif data.is_dir():
        if group_column:
            raise ValueError("--group-column needs a CSV input, not a folder")
        root, groups = data, None
        files, names = [], []
        for folder in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in sorted(folder.rglob("*")):
                if (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
                        and not path.name.startswith(".")):
                    files.append(path.relative_to(data).as_posix())
                    names.append(folder.name)
    else:
        raise FileNotFoundError(f"no dataset at {data}: expected a folder of class folders or a CSV")
    if max_per_class is not None:
        seen: Counter[str] = Counter()
        keep = []
        for name in names:
            seen[name] += 1
            keep.append(seen[name] <= max_per_class)
        files, names = list(compress(files, keep)), list(compress(names, keep))
        groups = list(compress(groups, keep)) if groups is not None else None
    if not files:
        raise ValueError(f"no images found in {data}")
    found = sorted(set(names))
    classes = list(classes) if classes is not None else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"classes {unknown} in {data} are not among {classes}")
    index = {c: i for i, c in enumerate(classes)}
    return Dataset(root, files, np.array([index[n] for n in names], dtype=np.int64), classes, groups)


def list_sources(sources: Sequence[Path], *, group_column: str | None = None,
                 max_per_class: int | None = None) -> Dataset:
    """One dataset over several sources (folders or CSVs), classes the sorted union.

    A source ``DIR=LABEL`` gives every image under ``DIR`` (recursively) the class ``LABEL``
    (e.g. a modality router's ``kvasir-seg/images=endoscopy``). Files are relative to the
    sources' common parent (so each keeps its source folder in its name, e.g.
    ``brain-tumor-mri-more/glioma/x.jpg``); one source is listed as it is.
    """
    parts = [_list_labelled(Path(s), max_per_class) if _fixed_label(Path(s)) else
             list_files(s, group_column=group_column, max_per_class=max_per_class)
             for s in sources]
    if len(parts) == 1:
        return parts[0]
    classes = sorted({c for part in parts for c in part.classes})
    root = Path(os.path.commonpath([p.root.resolve() for p in parts]))
    files: list[str] = []
    labels: list[int] = []
    groups: list[str] | None = [] if group_column else None
    for part in parts:
        prefix = part.root.resolve().relative_to(root)
        files += [(prefix / f).as_posix() for f in part.files]
        labels += [classes.index(part.classes[int(y)]) for y in part.labels]
        if groups is not None:
            groups += [f"{prefix}:{g}" if g else "" for g in (part.groups or [""] * len(part.files))]
    return Dataset(root, files, np.array(labels, dtype=np.int64), classes, groups)


def source_location(source: Path) -> Path:
    """The folder or CSV of a source (``DIR`` of ``DIR=LABEL``)."""
    return Path(str(source).rpartition("=")[0]) if _fixed_label(source) else Path(source)


def _fixed_label(source: Path) -> str | None:
    """``LABEL`` of a ``DIR=LABEL`` source whose ``DIR`` exists, else ``None``."""
    folder, equals, label = str(source).rpartition("=")
    return label if equals and label and Path(folder).is_dir() else None


def _list_labelled(source: Path, max_per_class: int | None = None) -> Dataset:
    """Every image under ``DIR`` of ``DIR=LABEL`` (the first ``max_per_class``), all of class
    ``LABEL`` (suffix-less files only when they are DICOM)."""
    folder, _, label = str(source).rpartition("=")
    root = Path(folder)
    files = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*"))
             if p.is_file() and not p.name.startswith(".") and _is_image_file(p)][:max_per_class]
    if not files:
        raise ValueError(f"no images found in {root}")
    return Dataset(root, files, np.zeros(len(files), dtype=np.int64), [label])


def _is_image_file(path: Path) -> bool:
    if path.suffix:
        return path.suffix.lower() in IMAGE_SUFFIXES
    with path.open("rb") as handle:
        return handle.read(132)[128:] == b"DICM"


def _read_csv(path: Path, group_column: str | None) -> tuple[Path, list[str], list[str], list[str] | None]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    header = list(rows[0]) if rows else []
    path_column = next((c for c in _PATH_COLUMNS if c in header), None)
    if path_column is None or "label" not in header:
        raise ValueError(f"{path} needs a header with a path column ({'/'.join(_PATH_COLUMNS)}) "
                         f"and a 'label' column; found {header}")
    if group_column and group_column not in header:
        raise ValueError(f"group column {group_column!r} is not in {path} (columns: {header})")
    files = [r[path_column] for r in rows]
    groups = [r[group_column] for r in rows] if group_column else None
    return path.parent, files, [r["label"] for r in rows], groups


def decode_images(paths: Sequence[Path], preprocessing: str, size: int,
                  threads: int = 2) -> torch.Tensor:
    """``(N, 3, size, size)`` uint8: each file loaded and preprocessed as at inference."""
    def one(path: Path) -> np.ndarray:
        return preprocess(load_path(path).rgb, preprocessing, size)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        views = list(pool.map(one, paths))
    return torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).contiguous()


def find_region_masks(paths: Sequence[Path], folders: Sequence[Path]) -> list[Path | None]:
    """Each image's region mask: the image file in ``folders`` (searched recursively) with the
    image's stem (e.g. Kvasir-SEG's ``masks/<name>.png`` for ``images/<name>.jpg``), or
    ``None``. Raises ``ValueError`` for a missing folder or a stem found twice."""
    by_stem: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(f"region mask folder {folder} does not exist")
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES - {""}:
                if path.stem in by_stem:
                    raise ValueError(f"two region masks are named {path.stem}: "
                                     f"{by_stem[path.stem]} and {path}")
                by_stem[path.stem] = path
    return [by_stem.get(path.stem) for path in paths]


def decode_regions(paths: Sequence[Path], masks: Sequence[Path | None], preprocessing: str,
                   size: int, threads: int = 2) -> torch.Tensor:
    """``(N, size, size)`` uint8 region masks (255 inside) cut and resized as each image's view
    is (:meth:`imaging.ViewGeometry.to_view`; zero where the preprocessing blacks out, and for
    an image without a mask)."""
    keep = kept_region(preprocessing, size)

    def one(item: tuple[Path, Path | None]) -> np.ndarray:
        path, mask = item
        if mask is None:
            return np.zeros((size, size), np.uint8)
        grey = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise ValueError(f"cannot read region mask {mask}")
        _, geometry = preprocess_with_geometry(load_path(path).rgb, preprocessing, size)
        region = geometry.to_view((grey > 127).astype(np.float32))
        return np.rint(region * (255 if keep is None else 255 * keep)).astype(np.uint8)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return torch.from_numpy(np.stack(list(pool.map(one, zip(paths, masks, strict=True)))))


def dhash(images: torch.Tensor, bits: int = 16) -> np.ndarray:
    """Difference hash of each ``(3, S, S)`` uint8 image: ``bits*bits`` booleans per image.

    Grey thumbnail of ``bits+1`` x ``bits`` (area interpolation); bit = left pixel > right pixel.
    """
    out = np.empty((len(images), bits * bits), dtype=bool)
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        thumb = cv2.resize(grey, (bits + 1, bits), interpolation=cv2.INTER_AREA).astype(np.int16)
        out[i] = (thumb[:, :-1] > thumb[:, 1:]).ravel()
    return out


def thumbnails(images: torch.Tensor, keep: np.ndarray | None = None, side: int = 32) -> np.ndarray:
    """Standardised grey ``side`` x ``side`` thumbnails (area interpolation) of ``(N, 3, S, S)``
    uint8 images, one row each, over the cells wholly inside ``keep`` (``(S, S)`` bool; all when
    ``None``), so that a row product divided by the row length is a Pearson correlation.

    Cells outside ``keep`` are left out because a fixed mask, the same in every image, would
    make every pair look alike.
    """
    cells = np.ones(side * side, dtype=bool) if keep is None else cv2.resize(
        keep.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA).ravel() >= 1 - 1e-6
    out = np.empty((len(images), int(cells.sum())), dtype=np.float32)
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        thumb = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA)
        thumb = thumb.astype(np.float32).ravel()[cells]
        out[i] = (thumb - thumb.mean()) / max(float(thumb.std()), 1e-6)
    return out


@dataclass(frozen=True)
class GroupRule:
    """How images are joined into groups that never straddle splits (recorded in the card).

    Defaults measured on the staged data: a 16x16 dHash (256 bits) with Hamming distance <= 24
    joins every MRI pair whose 32x32 thumbnail correlation exceeds 0.99 and ~95% of such capsule
    frame pairs (the rest are joined through chains), while the largest groups stay small
    (MRI 7, capsule 29, chest X-ray 16 images). An 8x8 hash is too coarse: chest X-rays all look
    alike at 8x8 and merge into one group even at distance 2. ``min_correlation`` (off by
    default) also joins images whose 32x32 grey thumbnails correlate above it: on the colonoscopy
    frames (Kvasir-SEG + HyperKvasir lower GI, masked views) the hash alone joins 334 of the 353
    pairs correlating > 0.98 in the staged files, with 0.93 added all 353 (largest group 36).
    """

    max_hamming: int = 24
    hash_bits: int = 16
    group_column: str | None = None
    group_pattern: str | None = None
    min_correlation: float | None = None

    def describe(self) -> str:
        """One sentence for the model card."""
        parts = [f"dHash {self.hash_bits}x{self.hash_bits} of the preprocessed image, "
                 f"Hamming distance <= {self.max_hamming}" if self.max_hamming >= 0 else "no hashing"]
        if self.min_correlation is not None:
            parts.append(f"32x32 grey thumbnail correlation > {self.min_correlation} over the "
                         "pixels the preprocessing keeps")
        if self.group_column:
            parts.append(f"same value in CSV column {self.group_column!r}")
        if self.group_pattern:
            parts.append(f"same match of {self.group_pattern!r} in the file name")
        return "union-find over: " + "; ".join(parts)


def _close_pairs(n: int, close: Callable[[slice], np.ndarray]) -> Iterator[tuple[int, int]]:
    """Pairs ``i < j`` where ``close(rows)`` (a block of rows against all ``n``) is true."""
    for start in range(0, n, 512):  # chunked all-pairs comparisons
        for i, j in zip(*np.nonzero(close(slice(start, start + 512))), strict=True):
            if start + i < j:
                yield start + int(i), int(j)


def group_ids(dataset: Dataset, hashes: np.ndarray | None, rule: GroupRule,
              thumbs: np.ndarray | None = None) -> np.ndarray:
    """Connected-component id per image (ids are the smallest member index); ``thumbs``
    (:func:`thumbnails`) are needed when the rule sets ``min_correlation``."""
    n = len(dataset.files)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    if hashes is not None and rule.max_hamming >= 0:
        packed = hashes.astype(np.int32)
        for i, j in _close_pairs(n, lambda rows: packed[rows] @ (1 - packed).T
                                 + (1 - packed[rows]) @ packed.T <= rule.max_hamming):
            union(i, j)
    if rule.min_correlation is not None:
        if thumbs is None:
            raise ValueError("a rule with min_correlation needs the images' thumbnails")
        for i, j in _close_pairs(n, lambda rows: thumbs[rows] @ thumbs.T / thumbs.shape[1]
                                 > rule.min_correlation):
            union(i, j)
    keys: list[list[str]] = []
    if dataset.groups is not None:
        keys.append(dataset.groups)
    if rule.group_pattern:
        pattern = re.compile(rule.group_pattern)
        keys.append([m[0] if (m := pattern.search(Path(f).name)) else f for f in dataset.files])
    for key in keys:  # one patient / study / family is one group, whatever its labels
        first: dict[str, int] = {}
        for i, value in enumerate(key):
            if value:
                union(first.setdefault(value, i), i)
    return np.array([find(i) for i in range(n)])


def assign_parts(labels: np.ndarray, groups: np.ndarray, weights: Sequence[float],
                 seed: int) -> np.ndarray:
    """Part index per image: whole groups, stratified by class, parts sized by ``weights``.

    Per class (a group counts for its majority label), groups are shuffled with ``seed``,
    ordered largest first, and each goes to the part furthest below its target share.
    """
    rng = np.random.default_rng(seed)
    weights = np.asarray(weights, dtype=float) / float(np.sum(weights))
    part = np.empty(len(labels), dtype=np.int64)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(int(g), []).append(i)
    by_class: dict[int, list[list[int]]] = {}
    for idx in members.values():
        majority = Counter(int(labels[i]) for i in idx).most_common(1)[0][0]
        by_class.setdefault(majority, []).append(idx)
    for label in sorted(by_class):
        group_list = by_class[label]
        order = rng.permutation(len(group_list))
        ordered = sorted((group_list[k] for k in order), key=len, reverse=True)
        target = weights * sum(len(g) for g in ordered)
        filled = np.zeros(len(weights))
        for idx in ordered:
            choice = int(np.argmax(target - filled))
            part[idx] = choice
            filled[choice] += len(idx)
    return part


@dataclass(frozen=True)
class Split:
    """Indices of train / val / test images and the record that reproduces them."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    record: dict[str, object]


def make_split(dataset: Dataset, hashes: np.ndarray | None, rule: GroupRule, *, seed: int,
               ratios: Sequence[float] = (8, 1, 1), folds: int = 0, fold: int = 0,
               val_folds: int = 0, val_fold: int = 0,
               thumbs: np.ndarray | None = None) -> Split:
    """Grouped stratified split: ``ratios`` train:val:test, or ``folds``-fold with fold ``fold``
    as test and fold ``fold + 1`` (mod K) as validation (``thumbs``: see :func:`group_ids`).

    ``val_folds`` K > 0 keeps the ratio split's test images and makes validation fold
    ``val_fold`` of K grouped folds over the rest: K runs then score every non-test image once,
    out of fold, to choose a recipe on more than one small validation split.
    """
    groups = group_ids(dataset, hashes, rule, thumbs)
    if val_folds and (folds or val_folds < 2 or not 0 <= val_fold < val_folds):
        raise ValueError("--val-folds needs K >= 2, 0 <= --val-fold < K and no --folds")
    if folds:
        if not 0 <= fold < folds or folds < 3:
            raise ValueError("--folds needs K >= 3 and 0 <= --fold < K")
        parts = assign_parts(dataset.labels, groups, [1] * folds, seed)
        role = np.where(parts == fold, 2, np.where(parts == (fold + 1) % folds, 1, 0))
    else:
        if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0:
            raise ValueError("ratios need three non-negative numbers train:val:test, train > 0")
        role = assign_parts(dataset.labels, groups, ratios, seed)
        if val_folds:
            rest = np.flatnonzero(role != 2)
            parts = assign_parts(dataset.labels[rest], groups[rest], [1] * val_folds, seed)
            role[rest] = np.where(parts == val_fold, 1, 0)
    train, val, test = (np.flatnonzero(role == r) for r in range(3))
    sizes = Counter(groups.tolist())
    test_files = sorted(dataset.files[i] for i in test)
    record: dict[str, object] = {
        "method": f"stratified grouped {folds}-fold" if folds else "stratified grouped ratio split",
        "seed": seed,
        "ratios": None if folds else [float(r) for r in ratios],
        "folds": folds or None,
        "fold": fold if folds else None,
        "val_folds": val_folds or None,
        "val_fold": val_fold if val_folds else None,
        "grouping": rule.describe(),
        "group_rule": {"max_hamming": rule.max_hamming, "hash_bits": rule.hash_bits,
                       "group_column": rule.group_column, "group_pattern": rule.group_pattern,
                       "min_correlation": rule.min_correlation},
        "groups": len(sizes),
        "largest_group": max(sizes.values()),
        "largest_group_counts": dataset.counts(np.flatnonzero(groups == max(sizes, key=sizes.get))),
        "images_in_multi_image_groups": sum(s for s in sizes.values() if s > 1),
        "counts": {name: dataset.counts(idx) for name, idx in
                   (("train", train), ("val", val), ("test", test))},
        "test_sha256": sha256_of_files(test_files),
        "test_files": test_files,
    }
    return Split(train, val, test, record)


def sha256_of_files(files: Sequence[str]) -> str:
    """sha256 of the sorted relative paths joined by newlines (identifies a test split)."""
    return hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()


def card_data(card: ModelCard, root: Path | None = None
              ) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """The card's images listed again from its recorded sources (relative ones under ``root``,
    else the working directory, as training ran), their labels in the card's class order, and
    which are its recorded test files (checked against ``split.test_sha256``)."""
    entries = card.data.get("sources") or [{"source": card.data["source"]}]
    dataset = list_sources([(root or Path()) / entry["source"] for entry in entries],
                           max_per_class=card.data.get("max_per_class"))
    index = {name: i for i, name in enumerate(card.classes)}
    unknown = sorted(set(dataset.classes) - set(index))
    if unknown:
        raise ValueError(f"classes {unknown} of the data are not in the card")
    labels = np.array([index[dataset.classes[y]] for y in dataset.labels], dtype=np.int64)
    test_files = card.split.get("test_files") or []
    is_test = np.isin(np.array(dataset.files), test_files)
    if int(is_test.sum()) != len(test_files) or not test_files:
        raise ValueError(f"{len(test_files) - int(is_test.sum())} of the card's "
                         f"{len(test_files)} test files are not in its data")
    if card.split.get("test_sha256") not in (None, sha256_of_files(test_files)):
        raise ValueError("the card's test files do not match its test_sha256")
    return dataset.paths, labels, is_test
