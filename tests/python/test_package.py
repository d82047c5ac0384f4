"""The installed smtpx package: its native module, version, metadata and typing files."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import pathlib
import re

import pytest

import smtpx
import smtpx._native

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def cargo_version() -> str:
    """workspace.package.version from the root Cargo.toml (no tomllib on 3.10)."""
    text = (REPO_ROOT / "Cargo.toml").read_text(encoding="utf-8")
    section = re.search(r"^\[workspace\.package\]$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert section, "Cargo.toml has a [workspace.package] table"
    version = re.search(r'^version\s*=\s*"([^"]+)"', section.group(1), re.M)
    assert version, "[workspace.package] has a version"
    return version.group(1)


def test_version_matches_cargo_and_metadata() -> None:
    assert smtpx.__version__ == cargo_version()
    assert smtpx.__version__ == smtpx._native.__version__
    assert importlib.metadata.version("smtpx") == smtpx.__version__


def test_wheel_is_abi3_for_cpython_310_and_later() -> None:
    wheel = importlib.metadata.distribution("smtpx").read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    assert tags, wheel
    assert all(tag.startswith("cp310-abi3-") for tag in tags), tags


def test_ships_type_information() -> None:
    package = importlib.resources.files("smtpx")
    assert package.joinpath("py.typed").is_file()
    assert package.joinpath("_native.pyi").is_file()


def test_all_names_exist() -> None:
    for name in smtpx.__all__:
        assert hasattr(smtpx, name), name


@pytest.mark.parametrize("code", [220, 221, 250, 354, 421, 500, 550])
def test_reply_code_meaning_of_standard_codes(code: int) -> None:
    meaning = smtpx.reply_code_meaning(code)
    assert isinstance(meaning, str)
    assert meaning


def test_reply_code_meaning_distinguishes_codes() -> None:
    assert smtpx.reply_code_meaning(250) == smtpx.reply_code_meaning(250)
    assert smtpx.reply_code_meaning(250) != smtpx.reply_code_meaning(550)


@pytest.mark.parametrize("code", [0, 1, 99, 999, 1000, 65535, 65536, -1, -250, 2**80])
def test_reply_code_meaning_is_none_without_a_standard_meaning(code: int) -> None:
    assert smtpx.reply_code_meaning(code) is None


@pytest.mark.parametrize("code", ["250", 250.0, None, b"250"])
def test_reply_code_meaning_rejects_non_ints(code: object) -> None:
    with pytest.raises(TypeError):
        smtpx.reply_code_meaning(code)  # type: ignore[arg-type]
