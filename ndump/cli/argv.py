"""Classic dump/restore command-line syntax -> click's (classic: FreeBSD obsolete()).

``ndump dump -0uf FILE PATH`` becomes ``dump --level 0 -u -f FILE PATH``;
``ndump dump 0uf FILE PATH`` (no dash, BSD style) takes the arguments of the
letters from the following words in order; ``-z``/``-z6``/``-j``/``-j9`` become
``--compress``, as do ``--zstd``, ``--zstd=N`` and ``--zstd N``; ``restore -rf FILE`` and ``restore -xvf FILE path`` are split.
"""
from __future__ import annotations

import re

# letters that take an argument, per command (Linux dump 0.4b47 / restore)
DUMP_ARG_LETTERS = set("ABbdDeEfFhILQsT")
RESTORE_ARG_LETTERS = set("AbDfFLQsTX")
_OPTIONAL_LEVEL = {"z": "zlib", "j": "bzip2"}


def classic_argv(argv: list[str]) -> list[str]:
    if not argv:
        return argv
    cmd, rest = argv[0], argv[1:]
    if cmd == "dump":
        return [cmd] + _translate(rest, DUMP_ARG_LETTERS, levels=True)
    if cmd == "restore":
        return [cmd] + _translate(rest, RESTORE_ARG_LETTERS, levels=False)
    return argv


def _translate(args: list[str], arg_letters: set[str], *, levels: bool) -> list[str]:
    out: list[str] = []
    i = 0
    if args and levels and re.fullmatch(r"[0-9][0-9A-Za-z]*", args[0]):
        bundle, i = _obsolete(args, arg_letters)
        out += bundle
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            out += args[i - 1:]
            break
        if arg == "--zstd" or arg.startswith("--zstd="):
            level = arg.partition("=")[2]
            if arg == "--zstd" and i < len(args) and args[i].isdigit():
                level = args[i]               # `--zstd 7 PATH`: a number after it is its level
                i += 1
            out.append("--compress=zstd" + (f":{level}" if level else ""))
            continue
        if arg.startswith("--") or not arg.startswith("-") or arg == "-":
            out.append(arg)
            continue
        words, i = _bundle(arg[1:], args, i, arg_letters, levels)
        out += words
    return out


def _bundle(letters: str, args: list[str], i: int, arg_letters: set[str], levels: bool):
    """getopt semantics: an argument letter takes the rest of the bundle or the next word."""
    out: list[str] = []
    j = 0
    while j < len(letters):
        c = letters[j]
        if levels and c.isdigit():
            k = _digits_end(letters, j)
            out += ["--level", letters[j:k]]
            j = k
            continue
        if levels and c in _OPTIONAL_LEVEL:
            k = _digits_end(letters, j + 1)
            level = letters[j + 1:k]
            out.append(f"--compress={_OPTIONAL_LEVEL[c]}" + (f":{level}" if level else ""))
            j = k
            continue
        if c in arg_letters:
            value = letters[j + 1:]
            if not value:
                if i >= len(args):
                    out.append(f"-{c}")       # click reports the missing value
                    return out, i
                value = args[i]
                i += 1
            out += [f"-{c}", value]
            return out, i
        out.append(f"-{c}")
        j += 1
    return out, i


def _digits_end(letters: str, j: int) -> int:
    """Index just past the run of digits starting at j."""
    while j < len(letters) and letters[j].isdigit():
        j += 1
    return j


def _obsolete(args: list[str], arg_letters: set[str]):
    """BSD style: first word is all flags, their arguments follow in order."""
    letters = args[0]
    i = 1
    out: list[str] = []
    j = 0
    while j < len(letters):
        c = letters[j]
        if c.isdigit():
            k = _digits_end(letters, j)
            out += ["--level", letters[j:k]]
            j = k
            continue
        if c in arg_letters and i < len(args):
            out += [f"-{c}", args[i]]
            i += 1
        elif c in _OPTIONAL_LEVEL:
            out.append(f"--compress={_OPTIONAL_LEVEL[c]}")
        else:
            out.append(f"-{c}")
        j += 1
    return out, i
