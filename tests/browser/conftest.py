"""Session fixtures of the app tests: the tiny demo on disk and the real app serving it."""

import pytest

from browser.tiny_demo import AppProcess, make_demo


@pytest.fixture(scope="session")
def tiny_demo_env(tmp_path_factory, tiny_checkpoint) -> dict[str, str]:
    """``XMR_*`` variables of a tiny demo (12 items, tiny checkpoint, indexes, empty label DB)."""
    return make_demo(tmp_path_factory.mktemp("app_demo"), tiny_checkpoint)


@pytest.fixture(scope="session")
def app_server(tiny_demo_env, tmp_path_factory):
    """``python app.py`` on a free localhost port, serving the tiny demo."""
    app = AppProcess(tiny_demo_env, log=tmp_path_factory.mktemp("app_log") / "app.log")
    yield app
    app.stop()
