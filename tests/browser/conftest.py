"""Session fixtures of the app tests: the tiny demo on disk and the real app serving it."""

import pytest

from browser.tiny_demo import AppProcess, make_demo


@pytest.fixture(scope="session")
def tiny_demo_env(tmp_path_factory, tiny_checkpoint, tiny_corpus) -> dict[str, str]:
    """``XMR_*`` variables of a tiny demo (12 corpus items, tiny checkpoint, indexes, empty label DB)."""
    return make_demo(tmp_path_factory.mktemp("app_demo"), tiny_checkpoint, tiny_corpus)


@pytest.fixture(scope="session")
def demo_media(tiny_demo_env):
    """``media(modality, item_id)`` -> the path of an item's audio or image file."""
    from xmr.data.manifest import read_manifest

    rows = read_manifest(tiny_demo_env["XMR_MANIFEST"]).set_index("id")
    return lambda modality, item: str(rows.loc[item, modality])


@pytest.fixture(scope="session")
def demo_items(tiny_demo_env) -> list[str]:
    """The ids of the tiny demo's items, sorted (odd positions are the test split)."""
    from xmr.data.manifest import read_manifest

    return sorted(read_manifest(tiny_demo_env["XMR_MANIFEST"])["id"])


@pytest.fixture(scope="session")
def app_server(tiny_demo_env, tmp_path_factory):
    """``python app.py`` on a free localhost port, serving the tiny demo."""
    app = AppProcess(tiny_demo_env, log=tmp_path_factory.mktemp("app_log") / "app.log")
    yield app
    app.stop()
