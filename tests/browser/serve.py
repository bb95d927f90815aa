"""Launch ``app.py`` (used by the tests while ``xmr.index`` is incomplete: installs the stand-in)."""

import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from browser.standin_index import install  # noqa: E402

install()
runpy.run_path(str(Path(__file__).resolve().parents[2] / "app.py"), run_name="__main__")
