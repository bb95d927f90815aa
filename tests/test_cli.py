import subprocess
import sys

from xmr.cli import main


def test_help_lists_usage(capsys):
    assert main([]) == 0
    assert "usage: xmr" in capsys.readouterr().out


def test_python_dash_m_help():
    out = subprocess.run([sys.executable, "-m", "xmr", "--help"], capture_output=True, text=True, check=True)
    assert "Cross-modal retrieval" in out.stdout
