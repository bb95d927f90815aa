"""The environment of torchrun's CPU training processes (``xmr.train.dist.cpu_launch_env``):
jemalloc preloaded, checked in a real child process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xmr.train import dist

needs_jemalloc = pytest.mark.skipif(dist.jemalloc_path() is None, reason="libjemalloc2 is not installed")

# What a child reports: whether jemalloc is mapped into it, and that torch runs there.
PROBE = ("import torch; x = torch.randn(512, 512); y = (x @ x.T).sum().item(); "
         "print('jemalloc' in open('/proc/self/maps').read(), y == y)")


def _probe(env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", PROBE], env=env, check=True, capture_output=True,
                          text=True, timeout=120).stdout.split()


@needs_jemalloc
def test_jemalloc_goes_first_and_what_was_set_is_kept():
    lib = dist.jemalloc_path()
    env = dist.cpu_launch_env({"LD_PRELOAD": f"/opt/libother.so:{lib}", "MALLOC_CONF": "narenas:2", "A": "1"})
    assert env["LD_PRELOAD"] == f"{lib}:/opt/libother.so"
    assert env["MALLOC_CONF"] == "narenas:2" and env["A"] == "1"
    fresh = dist.cpu_launch_env({})
    assert fresh["LD_PRELOAD"] == lib and fresh["MALLOC_CONF"] == dist.JEMALLOC_CONF


def test_the_system_allocator_or_no_jemalloc_leaves_the_environment_alone(monkeypatch):
    base = {"LD_PRELOAD": "/opt/libother.so", "A": "1"}
    assert dist.cpu_launch_env(base, allocator="system") == base
    monkeypatch.setattr(dist, "jemalloc_path", lambda: None)
    assert dist.cpu_launch_env(base) == base
    with pytest.raises(ValueError, match="allocator"):
        dist.cpu_launch_env(base, allocator="tcmalloc")


@needs_jemalloc
def test_a_child_started_with_it_runs_torch_on_jemalloc():
    env = dist.cpu_launch_env()
    assert _probe(env) == ["True", "True"]
    plain = {k: v for k, v in env.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    assert _probe(plain) == ["False", "True"]
