"""dump/inomap.py: stable, dense dump inode numbers."""
from ndump.dump.inomap import InodeMap


def test_numbers_are_kept_across_runs_and_level0_reuses_freed(tmp_path):
    m = InodeMap(tmp_path / "m", "/t")
    m.open()
    m.assign([100, 200, 300], level0=True, all_keys=lambda: [100, 200, 300])
    first = dict(m.map)
    m.save()
    m.close()
    assert sorted(first.values()) == [3, 4, 5]

    m = InodeMap(tmp_path / "m", "/t")
    m.open()
    m.assign([400], level0=False, all_keys=lambda: [100, 300, 400])     # incremental: nothing freed
    assert m.map[100] == first[100] and m.map[300] == first[300] and m.map[400] == 6
    m.save()
    m.close()

    m = InodeMap(tmp_path / "m", "/t")
    m.open()
    m.assign([500], level0=True, all_keys=lambda: [100, 300, 400, 500])   # 200 is gone: its number is reused
    assert m.map[500] == first[200] and 200 not in m.map
    m.close()


def test_an_unchanged_map_is_not_written_again(tmp_path):
    m = InodeMap(tmp_path / "m", "/t")
    m.open()
    m.assign([100, 200], level0=True, all_keys=lambda: [100, 200])
    m.save()
    m.close()
    before = (tmp_path / "m").stat()

    m = InodeMap(tmp_path / "m", "/t")
    m.open()
    m.assign([100, 200], level0=False, all_keys=lambda: [100, 200])   # the same inodes
    assert not m.changed
    m.save()
    m.close()
    assert (tmp_path / "m").stat().st_ino == before.st_ino         # not replaced

    m = InodeMap(tmp_path / "m", "/t")
    m.open()
    m.assign([100], level0=True, all_keys=lambda: [100])             # 200 forgotten
    assert m.changed
    m.save()
    m.close()
    m = InodeMap(tmp_path / "m", "/t")
    m.open()
    assert m.map == {100: 3}
    m.close()
