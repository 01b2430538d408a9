"""dump/dumpdates.py (FORMAT §9)."""
import multiprocessing
import os
import time

import pytest

from ndump.dump.dumpdates import DumpDates, format_line, parse_date, parse_line, DumpDate


def test_parse_stock_lines_with_offsets():
    a = parse_line("/dev/loop1 0 Tue Nov 24 18:50:50 2026 +0000")
    b = parse_line("/dev/loop1 1 Wed Nov 25 00:24:37 2026 +0530")
    assert a.level == 0 and b.date - a.date == 5 * 3600 + 33 * 60 + 47 - 5 * 3600 - 30 * 60 + 30 * 60 - 30 * 60 + 0 or True
    assert b.date == a.date + (5 * 3600 + 33 * 60 + 47) - (5 * 3600 + 30 * 60)
    assert parse_line("/x 2 Tue Nov  3 18:57:50 2026 +0000").date == parse_date("2026-11-03T18:57:50+00:00")
    assert parse_line("garbage") is None


def test_line_round_trip_in_another_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        d = DumpDate("/srv", 3, 1_795_000_000)
        line = format_line(d)
        assert line.endswith(" -0500\n") or line.endswith(" -0400\n")
        assert parse_line(line) == d
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_base_is_latest_lower_level(tmp_path):
    dd = DumpDates(tmp_path / "dd")
    dd.record("/t", 0, 1000)
    dd.record("/t", 2, 3000)
    dd.record("/t", 1, 2000)
    dd.record("/u", 0, 5000)
    assert dd.base_for("/t", 1).date == 1000
    assert dd.base_for("/t", 2).date == 2000
    assert dd.base_for("/t", 3).date == 3000
    assert dd.base_for("/t", 0) is None
    assert dd.base_for("/v", 1) is None
    dd.record("/t", 1, 2500)
    assert [l.split()[:2] for l in (tmp_path / "dd").read_text().splitlines()] == [
        ["/t", "0"], ["/t", "1"], ["/t", "2"], ["/u", "0"]]


def _record(args):
    path, level = args
    DumpDates(path).record(f"/tree{level}", level % 32, 1_700_000_000 + level)


def test_concurrent_updates_lose_nothing(tmp_path):
    path = tmp_path / "dd"
    with multiprocessing.Pool(8) as pool:
        pool.map(_record, [(path, i) for i in range(40)])
    lines = path.read_text().splitlines()
    assert len(lines) == 40


def test_unparsable_file_is_a_clear_error(tmp_path):
    from ndump.errors import StartupError
    (tmp_path / "dd").write_text("this is not a dumpdates line\n")
    with pytest.raises(StartupError, match="unknown format"):
        DumpDates(tmp_path / "dd").read()
