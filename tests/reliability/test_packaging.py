"""``pip install .`` ships every package of the app, subpackages included."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parents[2]


def test_the_distribution_ships_every_package() -> None:
    found = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = set(find_packages(where=str(REPO), include=found["include"],
                                exclude=found.get("exclude", ())))
    roots = ("imaging", "models", "xai", "training")
    on_disk = {".".join(init.parent.relative_to(REPO).parts)
               for root in roots for init in (REPO / root).rglob("__init__.py")}
    assert {"models.batch", "models.predict"} <= on_disk
    assert on_disk <= shipped, f"not shipped: {sorted(on_disk - shipped)}"
    assert not {p for p in shipped if p.split(".")[0] not in roots}, "only the app's packages"
