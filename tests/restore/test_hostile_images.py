"""More hostile images (the audit of restore against crafted input): each gives
one line per bad thing and an exit status, never a traceback."""
from __future__ import annotations

import os
import struct

from craft import Craft

from ndump.format.bsd import unpack_bsd_extattrs
from ndump.format.extattr import unpack_ea_record


def test_an_extended_attribute_name_with_a_nul_byte_is_damage_not_a_crash(restore, image_file,
                                                                           tmp_path):
    """setxattr(2) cannot take such a name: os.setxattr raised ValueError (an internal
    error with a traceback, the run ended); now the file is restored without it."""
    img = Craft().dir(2, {"a": 3, "b": 4})
    img.file(3, b"a\n", xattrs=[("user.x\x00y", b"v"), ("user.ok", b"1")])
    img.file(4, b"b\n")
    image = image_file(img)
    for mode in ("r", "x"):
        out = tmp_path / f"out-{mode}"
        out.mkdir()
        r = restore(image, mode, target=out)
        assert r.status == 2, r.err
        assert r.err == "RESTORE: ./a: damaged on the tape: EA name with a NUL byte\n"
        assert (out / "a").read_bytes() == b"a\n" and (out / "b").read_bytes() == b"b\n"
        assert os.getxattr(out / "a", "user.ok") == b"1"
    assert restore(image, "C", target=tmp_path / "out-r").status == 2


def test_the_ea_decoder_drops_a_name_with_a_nul_byte():
    entry = struct.pack("<BBHIII", 3, 1, 100, 0, 1, 0) + b"a\0b" + b"\0"
    record = struct.pack("<IIII16x", 0xEA020000, 1, 1, 0) + entry + bytes(4)
    record = record.ljust(100, b"\0") + b"v"
    assert unpack_ea_record(record.ljust(1024, b"\0")) == ([], ["EA name with a NUL byte"])


def test_a_ufs2_attribute_name_with_a_nul_byte_marks_the_area_damaged():
    def entry(name, value):
        base = (7 + len(name) + 7) // 8 * 8
        pad = -len(value) % 8
        head = struct.pack("<IBBB", base + len(value) + pad, 1, pad, len(name)) + name
        return head + bytes(base - len(head)) + value + bytes(pad)
    raw = entry(b"a\0b", b"1") + entry(b"c", b"2") + bytes(16)
    assert unpack_bsd_extattrs(raw, "<") == ([("user.c", b"2")], 0, True)


def test_a_restoresymtable_nested_too_deep_is_damaged_not_a_crash(tmp_path, run_ndump):
    """json.loads raised RecursionError (an internal error with a traceback)."""
    from ndump.restore.symtab import MAGIC, VERSION
    img = Craft(level=1, ddate=1_600_000_000).dir(2, {"a": 3}).file(3, b"a\n")
    image = tmp_path / "l1.dump"
    image.write_bytes(img.build())
    out = tmp_path / "out"
    out.mkdir()
    (out / "restoresymtable").write_bytes(f"{MAGIC} {VERSION}\n".encode() + b"[" * 100_000)
    r = run_ndump("restore", "-r", "-f", image, "--target", out)
    assert r.stderr == "RESTORE: restoresymtable is damaged (nested too deep)\n"
    assert r.returncode == 1
    assert sorted(os.listdir(out)) == ["restoresymtable"]


def test_names_with_control_characters_keep_each_message_on_one_line(restore, image_file,
                                                                      tmp_path):
    """A newline in a name split a message in two; an escape sequence reached the
    terminal as is.  Messages show them escaped (the files keep their names)."""
    img = Craft().dir(2, {"two\nlines": 3, "\x1b]0;owned\x07\x1b[31mred": 99998, "gone\r": 99999})
    img.file(3, b"3")
    bad = "RESTORE: ./\\x1b]0;owned\\x07\\x1b[31mred: bad inode number 99998; skipped\n" \
          "RESTORE: ./gone\\r: bad inode number 99999; skipped\n"
    r = restore(image_file(img), "r")
    assert r.status == 2
    assert r.err == bad
    assert (tmp_path / "out" / "two\nlines").read_bytes() == b"3"
    out = tmp_path / "out2"
    out.mkdir()
    (out / "two\nlines").mkdir()                     # a directory in the way
    (out / "two\nlines" / "x").write_text("x")
    r = restore(image_file(img), "x", target=out)
    assert r.status == 2
    assert r.err == bad + "RESTORE: ./two\\nlines: an existing directory is in the way; not replaced\n"
