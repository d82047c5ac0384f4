"""The README's Python quick starts, cut out of README.md and run as programs."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

from conftest import ROOT


def quick_start(name: str) -> str:
    """The fenced code between ``<!-- NAME: begin -->`` and ``<!-- NAME: end -->``."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(
        rf"<!-- {name}: begin -->\n```python\n(.*?)```\n<!-- {name}: end -->", readme, re.S
    )
    assert found is not None, f"README.md lacks the {name} block"
    return found.group(1)


def run(code: str, cwd: pathlib.Path) -> str:
    script = cwd / "quick_start.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_blocking_quick_start_runs(tmp_path: pathlib.Path) -> None:
    out = run(quick_start("python-quick-start"), tmp_path).splitlines()
    # Two messages stored: one for bob, one for bob and carol.
    assert [line for line in out if line.startswith("stored")] == [
        "stored 23 bytes for ['bob@example.net']",
        "stored 43 bytes for ['bob@example.net', 'carol@example.net']",
    ]
    assert any(line.startswith("bob@example.net 250 ") for line in out), out
    assert any(line.startswith("carol@example.net 250 ") for line in out), out
    assert any(line.startswith("queued as") for line in out), out


def test_the_asyncio_quick_start_runs(tmp_path: pathlib.Path) -> None:
    out = run(quick_start("python-async-quick-start"), tmp_path).splitlines()
    assert out[0] == "stored 23 bytes for ['bob@example.net']", out
    assert out[1] == "refused: {'eve@example.com': 550} OK", out
    assert out[2:] == ["stored 18 bytes for ['bob@example.net']"] * 3, out
