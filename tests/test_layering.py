"""The package's imports go one way: layers, no module-level import cycle, no gradio below the app.

The facts come from ``scripts/code_shape.py`` (run it to see the whole report); the checker itself
is tested first on a small package with known faults.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _code_shape():
    spec = importlib.util.spec_from_file_location("code_shape", ROOT / "scripts" / "code_shape.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


code_shape = _code_shape()


@pytest.fixture(scope="module")
def shape():
    return code_shape.analyse(ROOT / "xmr")


def _edges(imports) -> list[str]:
    return [f"{i.importer} -> {i.target} (line {i.line}, {i.where})" for i in imports]


def test_no_module_below_the_app_imports_gradio(shape):
    assert _edges(shape.ui_imports) == []


def test_no_import_cycle_at_module_level(shape):
    assert shape.cycles["module level"] == []


def test_no_package_imports_a_higher_layer(shape):
    assert _edges(shape.back_edges) == []


def test_packages_do_not_import_each_other_in_a_circle(shape):
    assert shape.package_cycles == []


def test_every_package_has_a_layer(shape):
    packages = {code_shape.package_of(m) for m in {i.importer for i in shape.imports}}
    assert sorted(p for p in packages if code_shape.layer_of(p) is None) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "xmr"


def test_the_checker_finds_cycles_back_edges_and_gradio(tmp_path):
    pkg = _write(tmp_path, {
        "xmr/__init__.py": "def load_model():\n    from xmr.models.a import f\n    return f\n",
        "xmr/errors.py": "",
        "xmr/media/__init__.py": "",
        # a back-edge at module level, and gradio below the app
        "xmr/media/audio.py": "import gradio as gr\nfrom xmr.models import a\n",
        "xmr/models/__init__.py": "",
        # a module-level cycle a <-> b; c reaches a only inside a function, d only for typing
        "xmr/models/a.py": "from xmr.models.b import g\nfrom xmr.errors import *\n",
        "xmr/models/b.py": "from . import a\n",
        "xmr/models/c.py": "def h():\n    from xmr.models import a\n",
        "xmr/models/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                           "    from xmr.models import c\n",
        # a cycle e <-> f that exists only through an import inside a function
        "xmr/models/e.py": "def p():\n    from xmr.models import f\n",
        "xmr/models/f.py": "from xmr.models.e import p\n",
        "xmr/index/__init__.py": "from xmr.models.c import h\n",
        "xmr/labels/__init__.py": "from xmr.index import h\n",
        "xmr/eval/__init__.py": "def k():\n    from xmr.labels import h\n",
        # eval -> labels (in a function) and labels -> index -> ... -> eval: a package circle
        "xmr/index/x.py": "from xmr.eval import k\n",
        "xmr/app/__init__.py": "import gradio\n",
    })
    found = code_shape.analyse(pkg)
    assert found.cycles["module level"] == [["xmr.models.a", "xmr.models.b"]]
    assert found.cycles["module level + in functions"] == [["xmr.models.a", "xmr.models.b"],
                                                           ["xmr.models.e", "xmr.models.f"]]
    assert _edges(found.back_edges) == ["xmr.media.audio -> xmr.models.a (line 2, module)"]
    assert _edges(found.ui_imports) == ["xmr.media.audio -> gradio (line 1, module)"]
    assert found.package_cycles == [["xmr.eval", "xmr.index", "xmr.labels"]]
    typing = [i for i in found.imports if i.where == "typing"]
    assert _edges(typing) == ["xmr.models.d -> xmr.models.c (line 3, typing)"]
    assert found.files[:2] == [("xmr/__init__.py", 3), ("xmr/models/d.py", 3)]  # ties by path
    assert ("xmr/__init__.py:load_model", 3) in found.functions
