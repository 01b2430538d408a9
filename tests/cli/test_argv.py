"""cli/argv.py: classic bundles -> click words."""
import pytest

from ndump.cli.argv import classic_argv


@pytest.mark.parametrize("argv, want", [
    (["dump", "-0uf", "F", "/p"], ["dump", "--level", "0", "-u", "-f", "F", "/p"]),
    (["dump", "-0f", "F", "/p"], ["dump", "--level", "0", "-f", "F", "/p"]),
    (["dump", "-15", "-f", "F", "/p"], ["dump", "--level", "15", "-f", "F", "/p"]),
    (["dump", "0uf", "F", "/p"], ["dump", "--level", "0", "-u", "-f", "F", "/p"]),
    (["dump", "0ubf", "64", "F", "/p"], ["dump", "--level", "0", "-u", "-b", "64", "-f", "F", "/p"]),
    (["dump", "-b64", "-0", "/p"], ["dump", "-b", "64", "--level", "0", "/p"]),
    (["dump", "-0z6f", "F", "/p"], ["dump", "--level", "0", "--compress=zlib:6", "-f", "F", "/p"]),
    (["dump", "-j", "/p"], ["dump", "--compress=bzip2", "/p"]),
    (["dump", "--level", "3", "/p"], ["dump", "--level", "3", "/p"]),
    (["restore", "-rf", "F"], ["restore", "-r", "-f", "F"]),
    (["restore", "-xvf", "F", "a/b"], ["restore", "-x", "-v", "-f", "F", "a/b"]),
    (["restore", "-tf", "-"], ["restore", "-t", "-f", "-"]),
    (["restore", "-t", "--", "-odd"], ["restore", "-t", "--", "-odd"]),
])
def test_translation(argv, want):
    assert classic_argv(argv) == want


def test_zstd_takes_its_level_only_after_equals():
    assert classic_argv(["dump", "--zstd", "/home"]) == ["dump", "--compress=zstd", "/home"]
    assert classic_argv(["dump", "--zstd=9", "/home"]) == ["dump", "--compress=zstd:9", "/home"]
