"""kill -9 loses nothing acknowledged: smtp-server is SIGKILLed ten times under load from
four smtplib clients and restarted on the same Maildir each time (bench/crash.py does the
work, here with fewer kills; `bench/crash.py --kills 50` is the longer run)."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

from conftest import ROOT, example


def load_crash():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("smtpx_bench_crash", ROOT / "bench" / "crash.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses looks the module up by name while building the classes.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


crash = load_crash()


@pytest.mark.parametrize("flags", [[], ["--async"]], ids=["blocking", "async"])
def test_sigkill_loses_nothing_acknowledged(tmp_path: pathlib.Path, flags: list[str]) -> None:
    figures = crash.run(example("smtp-server"), tmp_path, kills=10, clients=4, interval=(0.2, 0.5), seed=13, flags=flags)
    summary = crash.report(figures)
    assert figures.kills == 10, summary
    # There was load to lose: messages were acknowledged, and the check below is not empty.
    assert figures.acked > 0, summary
    assert figures.lost == [], summary
    assert figures.partial == [], summary
    assert figures.duplicates == [], summary
    assert figures.refused_but_delivered == [], summary
    # The 36-hour rule at every restart: each kill planted one aged file, so at least ten
    # removals were checked, and one young file per kill was kept.
    assert figures.tmp_aged >= 10 and figures.tmp_removed == figures.tmp_aged, summary
    assert figures.aged_not_removed == [] and figures.young_removed == [], summary
    assert figures.tmp_young_kept >= 10, summary
    # A graceful stop leaves nothing of its own in tmp/.
    assert figures.tmp_unexpected_after_stop == [], summary
    assert figures.stop_status == 0, summary
