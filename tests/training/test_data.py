"""Listing, near-duplicate grouping and grouped stratified splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.helpers import CLASSES, make_image_folder
from training.data import (
    Dataset,
    GroupRule,
    assign_parts,
    decode_images,
    dhash,
    group_ids,
    list_files,
    make_split,
)


def _dataset(labels: list[int], groups: list[str] | None = None) -> Dataset:
    files = [f"c{label}/img{i:03d}.png" for i, label in enumerate(labels)]
    return Dataset(Path("."), files, np.array(labels), ["a", "b", "c"][: max(labels) + 1], groups)


def _random_hashes(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, (n, 256)).astype(bool)


def test_folder_and_csv_listing(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=3)
    folder = list_files(root)
    assert folder.classes == list(CLASSES)
    assert folder.counts() == dict.fromkeys(CLASSES, 3)
    assert list_files(root, max_per_class=2).counts() == dict.fromkeys(CLASSES, 2)

    rows = ["file,label,family"] + [f"{f},{CLASSES[int(y)]},g{i // 2}"
                                     for i, (f, y) in enumerate(zip(folder.files, folder.labels, strict=True))]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    table = list_files(root / "labels.csv", group_column="family")
    assert table.files == folder.files and table.groups[:2] == ["g0", "g0"]
    assert (table.labels == folder.labels).all()
    with pytest.raises(ValueError, match="group column"):
        list_files(root / "labels.csv", group_column="patient")
    with pytest.raises(ValueError, match="not among"):
        list_files(root, classes=["alpha", "beta"])


def test_dhash_joins_near_duplicates_only(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=2, size=64)
    dataset = list_files(root)
    images = decode_images(dataset.paths, "resize", 64)
    noisy = (images.int() + torch.randint(-4, 5, images.shape)).clamp(0, 255).to(torch.uint8)
    both = torch.cat([images, noisy])
    twins = Dataset(root, dataset.files * 2, np.concatenate([dataset.labels] * 2), dataset.classes)
    groups = group_ids(twins, dhash(both), GroupRule())
    n = len(images)
    assert (groups[:n] == groups[n:]).all(), "an image and its noisy copy must share a group"
    assert len(set(groups[:n].tolist())) == n, "unrelated noise images must stay apart"


def test_group_column_and_pattern_join() -> None:
    dataset = _dataset([0, 0, 0, 1, 1, 1], groups=["x", "x", "", "y", "z", "y"])
    groups = group_ids(dataset, None, GroupRule(max_hamming=-1, group_column="g"))
    assert groups[0] == groups[1] and groups[3] == groups[5] and len(set(groups.tolist())) == 4
    named = Dataset(Path("."), ["person1_a.png", "person1_b.png", "person2_a.png"], np.zeros(3, int), ["a"])
    groups = group_ids(named, None, GroupRule(max_hamming=-1, group_pattern=r"^person\d+"))
    assert groups.tolist() == [0, 0, 2]


def test_split_is_deterministic_grouped_and_stratified() -> None:
    labels = [0] * 60 + [1] * 40
    groups = [f"g{i // 3}" for i in range(100)]  # families of three
    dataset = _dataset(labels, groups)
    rule = GroupRule(max_hamming=-1, group_column="family")
    first = make_split(dataset, None, rule, seed=7)
    again = make_split(dataset, None, rule, seed=7)
    other = make_split(dataset, None, rule, seed=8)
    for a, b in zip((first.train, first.val, first.test), (again.train, again.val, again.test), strict=True):
        assert (a == b).all()
    assert first.record["test_sha256"] == again.record["test_sha256"] != other.record["test_sha256"]
    role = np.empty(100, int)
    for r, index in enumerate((first.train, first.val, first.test)):
        role[index] = r
    for g in set(groups):
        assert len({role[i] for i in range(100) if groups[i] == g}) == 1, "a family straddles splits"
    counts = first.record["counts"]
    assert sum(counts["train"].values()) == pytest.approx(80, abs=4)
    assert counts["test"]["a"] == pytest.approx(6, abs=3) and counts["test"]["b"] == pytest.approx(4, abs=3)
    assert first.record["test_files"] == sorted(dataset.files[i] for i in first.test)


def test_kfold_parts_partition_and_rotate() -> None:
    labels = np.array([0] * 30 + [1] * 20)
    dataset = _dataset(labels.tolist())
    hashes = _random_hashes(50)
    parts = assign_parts(labels, np.arange(50), [1] * 5, seed=0)
    assert sorted(np.bincount(parts).tolist()) == [10] * 5
    tests = [set(make_split(dataset, hashes, GroupRule(), seed=0, folds=5, fold=k).test.tolist())
             for k in range(5)]
    assert set().union(*tests) == set(range(50)) and sum(map(len, tests)) == 50
    with pytest.raises(ValueError):
        make_split(dataset, hashes, GroupRule(), seed=0, folds=5, fold=5)


def test_real_mri_neighbours_stay_together(shared_data: Path) -> None:
    """Adjacent MRI slices (near-identical hashes) never straddle splits on the real data."""
    dataset = list_files(shared_data / "brain-tumor-mri", max_per_class=60)
    images = decode_images(dataset.paths, "brain_mri", 64)
    hashes = dhash(images)
    rule = GroupRule()
    split = make_split(dataset, hashes, rule, seed=0)
    role = np.empty(len(dataset.files), int)
    for r, index in enumerate((split.train, split.val, split.test)):
        role[index] = r
    bits = hashes.astype(int)
    distance = bits @ (1 - bits).T + (1 - bits) @ bits.T
    close = np.argwhere(np.triu(distance <= rule.max_hamming, 1))
    assert len(close), "expected some near-duplicate slices in the first 60 per class"
    assert all(role[i] == role[j] for i, j in close)


def test_a_group_value_joins_images_whatever_their_labels() -> None:
    dataset = _dataset([0, 1, 0, 1], groups=["p1", "p1", "p2", "p3"])
    groups = group_ids(dataset, None, GroupRule(max_hamming=-1, group_column="g"))
    assert groups[0] == groups[1] and len(set(groups.tolist())) == 3
    split = make_split(dataset, None, GroupRule(max_hamming=-1, group_column="g"), seed=0,
                       ratios=(1, 1, 1))
    role = {i: r for r, part in enumerate((split.train, split.val, split.test)) for i in part}
    assert role[0] == role[1], "one patient's images must share a split"


def test_sources_union_and_fixed_labels(tmp_path: Path) -> None:
    from training.data import list_sources

    make_image_folder(tmp_path / "a", per_class=2, seed=1)
    make_image_folder(tmp_path / "b", per_class=3, seed=2)
    both = list_sources([tmp_path / "a", tmp_path / "b"])
    assert both.root == tmp_path and both.classes == list(CLASSES)
    assert both.counts() == dict.fromkeys(CLASSES, 5)
    assert both.files[0].startswith("a/") and both.files[-1].startswith("b/")
    (tmp_path / "a" / "README").write_text("not an image")
    labelled = list_sources([Path(f"{tmp_path / 'a'}=mri"), Path(f"{tmp_path / 'b'}=xray")])
    assert labelled.counts() == {"mri": 6, "xray": 9}
    assert not any(f.endswith("README") for f in labelled.files)


def test_thumbnail_correlation_joins_repeated_frames(tmp_path: Path) -> None:
    from training.data import thumbnails

    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.uniform(0, 255, (3, 3, 8, 8)))  # smooth, unrelated frames
    frames = torch.nn.functional.interpolate(coarse, size=64, mode="bilinear").to(torch.uint8)
    repeat = (frames[:1].int() + torch.randint(-6, 7, (1, 3, 64, 64))).clamp(0, 255)
    images = torch.cat([frames, repeat.to(torch.uint8)])
    dataset = _dataset([0, 0, 1, 1])
    rule = GroupRule(max_hamming=-1, min_correlation=0.93)
    groups = group_ids(dataset, None, rule, thumbnails(images))
    assert groups[3] == groups[0] and len(set(groups.tolist())) == 3
    assert len(set(group_ids(dataset, None, GroupRule(max_hamming=-1)).tolist())) == 4
    with pytest.raises(ValueError, match="thumbnails"):
        group_ids(dataset, None, rule)
    assert "thumbnail correlation > 0.93" in rule.describe()


def test_thumbnails_leave_out_the_fixed_mask(tmp_path: Path) -> None:
    """Two unrelated masked frames share the black mask; over all cells that alone makes them
    correlate, over the kept cells they do not."""
    from imaging.preprocess import frame_keep
    from training.data import thumbnails

    rng = np.random.default_rng(1)
    views = rng.integers(60, 256, (2, 64, 64, 3), dtype=np.uint8)
    views[:, ~frame_keep(64)] = 0
    images = torch.from_numpy(views).permute(0, 3, 1, 2)
    everywhere, kept = thumbnails(images), thumbnails(images, frame_keep(64))
    assert everywhere[0] @ everywhere[1] / everywhere.shape[1] > 0.8
    assert abs(kept[0] @ kept[1] / kept.shape[1]) < 0.2


def test_max_per_class_limits_fixed_label_sources(tmp_path: Path) -> None:
    from training.data import list_sources, source_location

    make_image_folder(tmp_path / "a", per_class=4)
    source = Path(f"{tmp_path / 'a'}=polyp")
    assert list_sources([source], max_per_class=5).counts() == {"polyp": 5}
    assert source_location(source) == tmp_path / "a" and source_location(tmp_path) == tmp_path


def test_validation_folds_keep_the_test_split_and_cover_the_rest_once() -> None:
    labels = np.array([0] * 36 + [1] * 24)
    dataset = _dataset(labels.tolist(), groups=[f"p{i // 2}" for i in range(60)])  # pairs
    hashes = None
    rule = GroupRule(max_hamming=-1, group_column="g")
    plain = make_split(dataset, hashes, rule, seed=1, ratios=(6, 1, 3))
    folds = []
    for k in range(3):
        split = make_split(dataset, hashes, rule, seed=1, ratios=(6, 1, 3), val_folds=3, val_fold=k)
        assert split.test.tolist() == plain.test.tolist()
        assert split.record["test_sha256"] == plain.record["test_sha256"]
        assert (split.record["val_folds"], split.record["val_fold"]) == (3, k)
        assert not set(split.val.tolist()) & set(split.train.tolist())
        assert all(set(range(2 * p, 2 * p + 2)) <= set(split.val.tolist())
                   or not set(range(2 * p, 2 * p + 2)) & set(split.val.tolist()) for p in range(30))
        folds.append(set(split.val.tolist()))
    rest = set(range(60)) - set(plain.test.tolist())
    assert set().union(*folds) == rest and sum(map(len, folds)) == len(rest)
    assert all(len(f) == pytest.approx(len(rest) / 3, abs=3) for f in folds)
    for bad in ({"val_folds": 1}, {"val_folds": 3, "val_fold": 3}, {"val_folds": 3, "folds": 5}):
        with pytest.raises(ValueError, match="--val-folds"):
            make_split(dataset, hashes, rule, seed=1, ratios=(6, 1, 3), **bad)
