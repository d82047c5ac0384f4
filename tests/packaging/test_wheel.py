"""The distributable packages `make wheel` builds: an abi3 manylinux wheel and an sdist.

The wheel is installed into a fresh virtual environment (with the venv's own pip, from the
file, no index) and the README's Python quick start runs from it with a PATH that has no
cargo, so nothing is compiled and nothing comes from this checkout. `make wheel-test`
runs this module after `make wheel`; SMTPX_DIST names the folder the packages are in.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIST = pathlib.Path(os.environ.get("SMTPX_DIST", ROOT / "target" / "wheels" / "dist"))
# A PATH with the system's tools and no cargo or rustc (they live in ~/.cargo/bin).
SYSTEM_PATH = "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"


def only(pattern: str) -> pathlib.Path:
    found = sorted(DIST.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {DIST} (run `make wheel`), found {found}"
    return found[0]


def quick_start() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- python-quick-start: begin -->\n```python\n(.*?)```\n", readme, re.S)
    assert found is not None, "README.md lacks the python-quick-start block"
    return found.group(1)


def test_the_wheel_is_abi3_manylinux_and_carries_the_whole_package() -> None:
    wheel = only("smtpx-*.whl")
    assert re.fullmatch(r"smtpx-[\d.]+-cp310-abi3-manylinux_\d+_\d+_x86_64\.whl", wheel.name), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/WHEEL"))
        tags = archive.read(metadata).decode()
    assert "smtpx/_native.abi3.so" in names
    for module in ("__init__.py", "server.py", "adapter.py", "aio/server.py", "aio/client.py", "py.typed", "_native.pyi"):
        assert f"smtpx/{module}" in names, module
    assert re.search(r"^Tag: cp310-abi3-manylinux_\d+_\d+_x86_64$", tags, re.M), tags


def test_the_sdist_builds_from_its_own_sources() -> None:
    sdist = only("smtpx-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    top = names[0].split("/")[0]
    assert f"{top}/pyproject.toml" in names
    assert any(n.endswith("smtp-core/src/lib.rs") for n in names), "the sdist lacks the Rust core"
    assert any(n.endswith("python/smtpx/server.py") for n in names)


def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_quick_start(tmp_path: pathlib.Path) -> None:
    wheel = only("smtpx-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    path = f"{venv / 'bin'}:{SYSTEM_PATH}"
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    env = {"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
         "--disable-pip-version-check", str(wheel)],
        check=True, env=env, cwd=tmp_path, timeout=300,
    )
    script = tmp_path / "quick_start.py"
    script.write_text("import smtpx, sys\nprint('from', smtpx.__file__)\n" + quick_start())
    done = subprocess.run([str(venv / "bin" / "python"), str(script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == f"from {venv}/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages/smtpx/__init__.py"
    assert "stored 23 bytes for ['bob@example.net']" in out
    assert any(line.startswith("queued as") for line in out), out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
