"""Shared fixtures; each area keeps its own in ``fixtures_<area>.py`` (loaded as plugins)."""

import os

# Tests never touch the network: the hub libraries must work from local folders only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

pytest_plugins = ["fixtures_models", "fixtures_corpus"]
