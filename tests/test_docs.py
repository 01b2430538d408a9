"""The documentation is complete and correct (sqlite-utils' test_docs.py, restic's
generated completions).

- Every click command has a man page, and every option of every command (each long
  and short spelling) is a .TP entry in that page; every option a page lists exists
  (directly or as a classic spelling that ndump/cli/argv.py translates).
- The pages have the Linux dump section order, the exit-status table of
  ndump.errors.ExitStatus, and render with groff without a warning once
  scripts/build_man.py has filled in the version.
- completions/ are what click generates now (scripts/gen_completions.py).
- README.md names every command, has the exit-status table, and its two set-up
  commands exist in setup.sh.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ndump.cli import cli
from ndump.cli.argv import classic_argv
from ndump.errors import ExitStatus

REPO = Path(__file__).resolve().parent.parent
MAN = REPO / "man"
README = REPO / "README.md"

SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT", "FILES", "EXIT STATUS",
            "COMPATIBILITY", "EXAMPLES", "SEE ALSO", "BUGS", "HISTORY"]
OPTION_SECTIONS = ("DESCRIPTION", "OPTIONS")     # where option entries (.TP tags) live
OPTION_RE = re.compile(r"(?<![\w-])--?[A-Za-z0-9][A-Za-z0-9-]*")



def _loaded_commands() -> dict:
    """The group's commands, loaded (the group imports them lazily)."""
    ctx = click.Context(cli)
    return {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}

def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_man = _load_script("build_man")
gen_completions = _load_script("gen_completions")


# --- the click tree -------------------------------------------------------------------

def _root_ctx() -> click.Context:
    return click.Context(cli, info_name="ndump", **cli.context_settings)


def _commands() -> dict[str | None, tuple[click.Command, click.Context]]:
    """None -> the group itself; name -> each subcommand, with a context for get_params."""
    root = _root_ctx()
    found = {None: (cli, root)}
    for name, cmd in _loaded_commands().items():
        found[name] = (cmd, click.Context(cmd, info_name=name, parent=root))
    return found


def _spellings(cmd: click.Command, ctx: click.Context) -> set[str]:
    names: set[str] = set()
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    if isinstance(cmd, click.Group) and ctx.parent is not None:
        # a command with subcommands (ndump catalog find ...): one page for all of them
        for sub in cmd.list_commands(ctx):
            command = cmd.get_command(ctx, sub)
            names |= _spellings(command, click.Context(command, info_name=sub, parent=ctx))
    return names


def _shared_spellings() -> set[str]:
    """Options dump and restore both have (-f, -b, -v, -q, ...), which ndump.8 may describe once."""
    sets = [_spellings(cmd, ctx) for name, (cmd, ctx) in COMMANDS.items()
            if name is not None and not isinstance(cmd, click.Group)]
    return set.intersection(*sets) if sets else set()


def _page(name: str | None) -> Path:
    return MAN / ("ndump.8" if name is None else f"ndump-{name}.8")


def _label(name: str | None) -> str:
    return "ndump" if name is None else f"ndump {name}"


# --- reading man(7) source -------------------------------------------------------------

def _plain(line: str) -> str:
    """Text of one source line: macro name and quotes dropped, escapes resolved."""
    line = line.rstrip("\n")
    if line.startswith((".", "'")):
        parts = line.split(None, 1)
        line = parts[1] if len(parts) > 1 else ""
        line = line.replace('"', "")
    line = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", line)
    line = line.replace("\\-", "-").replace("\\(aq", "'").replace("\\(em", "--")
    line = line.replace("\\&", "").replace("\\e", "\\").replace("\\ ", " ")
    return line


def _sections(text: str) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(".SH"):
            out.append((_plain(line).strip(), []))
        elif out:
            out[-1][1].append(line)
    return out


def _tags(lines: list[str]) -> list[str]:
    """The tag line of every .TP entry, as plain text."""
    return [_plain(lines[i + 1]) for i, line in enumerate(lines[:-1])
            if re.match(r"\.TP\b", line)]


def _section(text: str, name: str) -> list[str]:
    for title, lines in _sections(text):
        if title == name:
            return lines
    return []


def _prose(lines: list[str]) -> str:
    return " ".join(_plain(line) for line in lines if not line.startswith('.\\"'))


def _documented_options(text: str) -> set[str]:
    found: set[str] = set()
    for title in OPTION_SECTIONS:
        for tag in _tags(_section(text, title)):
            found.update(OPTION_RE.findall(tag))
    return found


def _read(path: Path) -> str:
    assert path.exists(), f"{path.relative_to(REPO)} is missing"
    return path.read_text(encoding="utf-8")


COMMANDS = _commands()
PAGES = sorted(MAN.glob("*.8"))


# --- (a) every command and option is documented, and nothing else ------------------------

@pytest.mark.parametrize("name", list(COMMANDS), ids=lambda n: _label(n))
def test_every_option_has_an_entry_in_its_man_page(name):
    cmd, ctx = COMMANDS[name]
    page = _page(name)
    documented = _documented_options(_read(page))
    missing = sorted(_spellings(cmd, ctx) - documented)
    assert not missing, (f"options of `{_label(name)}` without a .TP entry under DESCRIPTION or"
                         f" OPTIONS in {page.relative_to(REPO)}: {', '.join(missing)}")


def _known_by_translation(name: str | None, token: str, spellings: set[str]) -> bool:
    """A classic spelling (-0 ... -9, -z, -j) that argv.py turns into a real option."""
    if name is None:
        return False
    words = classic_argv([name, token])[1:]
    options = [w.split("=", 1)[0] for w in words if w.startswith("-")]
    return bool(options) and all(o in spellings for o in options) and words != [token]


@pytest.mark.parametrize("name", list(COMMANDS), ids=lambda n: _label(n))
def test_every_documented_option_exists(name):
    """A page must not describe an option the command does not have (yet)."""
    cmd, ctx = COMMANDS[name]
    spellings = _spellings(cmd, ctx) | (_shared_spellings() if name is None else set())
    page = _page(name)
    unknown = sorted(t for t in _documented_options(_read(page))
                     if t not in spellings and not _known_by_translation(name, t, spellings))
    assert not unknown, (f"{page.relative_to(REPO)} has entries for options `{_label(name)}`"
                         f" does not have: {', '.join(unknown)}")


def test_every_command_is_in_the_overview_page():
    text = _read(_page(None))
    tags = {t.strip() for t in _tags(_section(text, "DESCRIPTION"))}
    see_also = _prose(_section(text, "SEE ALSO"))
    for name in _loaded_commands():
        assert name in tags, f"man/ndump.8: no .TP entry for the command `{name}` under DESCRIPTION"
        assert f"ndump-{name}" in see_also, f"man/ndump.8: SEE ALSO does not name ndump-{name}(8)"
        assert _page(name).exists(), f"`ndump {name}` has no man page man/ndump-{name}.8"


def test_every_command_page_is_for_a_command():
    for page in PAGES:
        if page.name in ("ndump.8", "amndump.8"):     # amndump.8: the Amanda application
            continue
        m = re.fullmatch(r"ndump-(\w+)\.8", page.name)
        assert m and m.group(1) in _loaded_commands(), \
            f"man/{page.name} documents a command that `ndump` does not have"


@pytest.mark.parametrize("name", list(COMMANDS), ids=lambda n: _label(n))
def test_every_option_has_help_text(name):
    """--help and the zsh/fish completions show it."""
    cmd, ctx = COMMANDS[name]
    bare = [p.opts[0] for p in cmd.get_params(ctx)
            if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not bare, f"options of `{_label(name)}` without help text: {', '.join(bare)}"
    if name is not None:
        assert (cmd.help or "").strip(), f"`ndump {name}` has no help text"


# --- page structure -------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_sections_in_linux_dump_order(page):
    titles = [t for t, _ in _sections(_read(page))]
    assert titles == SECTIONS, f"man/{page.name}: sections {titles}, expected {SECTIONS}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_exit_status_table(page):
    lines = _section(_read(page), "EXIT STATUS")
    codes = [t.strip() for t in _tags(lines)]
    assert codes == [str(int(s)) for s in ExitStatus], \
        f"man/{page.name}: EXIT STATUS lists {codes}, ndump.errors.ExitStatus has {list(map(int, ExitStatus))}"
    assert "X_REWRITE" in _prose(lines), \
        f"man/{page.name}: EXIT STATUS must say that status 2 is not BSD's X_REWRITE"


def _environ_names() -> set[str]:
    source = (REPO / "ndump" / "settings.py").read_text(encoding="utf-8")
    names = set(re.findall(r"""env\.get\(\s*["']([A-Z][A-Z0-9_]*)["']""", source))
    assert names, "found no env.get(...) in ndump/settings.py: update this test"
    return names


def test_overview_page_names_every_environment_variable():
    lines = _section(_read(_page(None)), "ENVIRONMENT")
    tags = {t.strip() for t in _tags(lines)}
    missing = sorted(_environ_names() - tags)
    assert not missing, f"man/ndump.8 ENVIRONMENT lacks variables read by ndump/settings.py: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_documented_environment_variables_exist(page):
    tags = {t.strip() for t in _tags(_section(_read(page), "ENVIRONMENT"))}
    unknown = sorted(tags - _environ_names())
    assert not unknown, f"man/{page.name} ENVIRONMENT names variables ndump does not read: {unknown}"


# --- (b) groff renders the built pages cleanly ----------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_version_placeholder_in_title(page):
    th = [line for line in _read(page).splitlines() if line.startswith(".TH ")]
    assert len(th) == 1 and f'"ndump {build_man.PLACEHOLDER}"' in th[0], \
        f'man/{page.name}: the .TH line must carry "ndump {build_man.PLACEHOLDER}" (filled in by scripts/build_man.py)'
    rendered = build_man.render(_read(page))
    assert build_man.PLACEHOLDER not in rendered
    assert f'"ndump {build_man.version()}"' in rendered


@pytest.mark.parametrize("device", ["ps", "utf8"])
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_groff_has_no_warnings(page, device):
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("needs groff (apt-get install groff-base)")
    source = build_man.render(_read(page))
    proc = subprocess.run([groff, "-man", "-ww", "-z", f"-T{device}"], input=source,
                          capture_output=True, text=True, timeout=60)
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and not out, f"groff -man -ww -z -T{device} man/{page.name}:\n{out}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_fits_an_80_column_terminal(page):
    """Examples in no-fill blocks are not wrapped by man: keep them short."""
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("needs groff (apt-get install groff-base)")
    proc = subprocess.run([groff, "-man", "-Tutf8", "-rLL=78n", "-P-cbou"],
                          input=build_man.render(_read(page)), capture_output=True, text=True,
                          timeout=60, check=True)
    wide = [line for line in proc.stdout.splitlines() if len(line) > 80]
    assert not wide, f"man/{page.name}: lines wider than 80 columns in `man` output:\n" + "\n".join(wide)


def test_build_man_writes_every_page(tmp_path):
    assert build_man.main([str(tmp_path / "man")]) == 0
    built = sorted(p.name for p in (tmp_path / "man").iterdir())
    assert built == [p.name for p in PAGES]
    for name in built:
        assert build_man.PLACEHOLDER not in (tmp_path / "man" / name).read_text(encoding="utf-8")


# --- (c) completions are what click generates now --------------------------------------------

@pytest.mark.parametrize("shell", list(gen_completions.FILES))
def test_completions_are_up_to_date(shell):
    path = REPO / "completions" / gen_completions.FILES[shell]
    assert path.exists(), f"{path.relative_to(REPO)} is missing: run python3 scripts/gen_completions.py"
    generated = gen_completions.generate(shell)
    assert path.read_text(encoding="utf-8") == generated, (
        f"{path.relative_to(REPO)} differs from what click {importlib.metadata.version('click')}"
        " generates now: run python3 scripts/gen_completions.py and commit the result")


def test_bash_completion_parses_and_completes(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash")
    script = REPO / "completions" / "ndump.bash"
    subprocess.run([bash, "-n", str(script)], check=True)
    wrapper = tmp_path / "ndump"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ndump "$@"\n')
    wrapper.chmod(0o755)
    probe = (f'source "{script}"\n'
             'ask() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=();'
             f' _ndump_completion "{wrapper}"; printf "%s\\n" "${{COMPREPLY[@]}}"; }}\n'
             'ask ndump re; echo ==; ask ndump dump --upd; echo ==; ask ndump restore --keep\n')
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([bash, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    answers = [a.split() for a in proc.stdout.split("==\n")]
    assert answers == [["restore"], ["--update-dumpdates"], ["--keep-existing"]], proc.stdout + proc.stderr


def _click_fish_broken() -> bool:
    return importlib.metadata.version("click") in ("8.4.0", "8.4.1")


@pytest.mark.xfail(_click_fish_broken(), strict=True,
                   reason="click 8.4.0 and 8.4.1 write a broken fish script (pallets/click#3502);"
                          " require click>=8.4.2 and regenerate")
def test_fish_completion_is_well_formed():
    text = (REPO / "completions" / "ndump.fish").read_text(encoding="utf-8")
    logical = text.replace("\\\n", " ").splitlines()
    unbalanced = [line for line in logical if line.count("(") != line.count(")")]
    assert not unbalanced, f"completions/ndump.fish has unbalanced parentheses: {unbalanced}"


# --- (d, e) README ---------------------------------------------------------------------------

def test_readme_names_every_command():
    text = _read(README)
    for name in _loaded_commands():
        assert f"ndump {name}" in text, f"README.md does not mention `ndump {name}`"
    for page in PAGES:
        assert f"man/{page.name}" in text, f"README.md does not point to man/{page.name}"
    assert "completions/" in text, "README.md does not point to completions/"
    assert re.search(r"^## Performance\s*$", text, re.M), "README.md lost its ## Performance section"


def _exit_table(text: str) -> list[str]:
    """First cells of the table whose header row starts with "status"."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\|\s*(exit\s+)?status\s*\|", line, re.I):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(row.strip("|").split("|")[0].strip().strip("`"))
            return rows
    return []


def test_readme_exit_status_table():
    rows = _exit_table(_read(README))
    assert rows == [str(int(s)) for s in ExitStatus], \
        f"README.md exit-status table rows {rows}, ndump.errors.ExitStatus has {list(map(int, ExitStatus))}"


def test_readme_setup_commands_exist():
    text = _read(README)
    commands = re.findall(r"^\s*(?:\$\s*|#\s*)?\./setup\.sh\s+(\S+)\s*$", text, re.M)
    assert sorted(set(commands)) == ["demo", "test"], \
        f"README.md should give exactly the set-up commands ./setup.sh demo and ./setup.sh test, has {commands}"
    setup = REPO / "setup.sh"
    assert setup.exists(), "README.md tells users to run ./setup.sh, which is missing"
    assert os.access(setup, os.X_OK), "setup.sh is not executable"
    source = setup.read_text(encoding="utf-8")
    branches = set()
    for pattern in re.findall(r"^\s*\(?([\w|-]+)\)\s", source, re.M):
        branches.update(pattern.split("|"))
    for sub in ("demo", "test"):
        assert sub in branches, f"setup.sh has no `{sub})` branch for ./setup.sh {sub}"


# --- (f) what the pages say about an option's values is what the code does -----------------

_RANGE_RE = re.compile(r"\b(\d+) (?:to|-) (\d+)\b")


def _entries(text: str) -> dict[str, str]:
    """{option spelling: its .TP entry's text} under DESCRIPTION and OPTIONS."""
    out: dict[str, str] = {}
    for title in OPTION_SECTIONS:
        lines = _section(text, title)
        starts = [i for i, line in enumerate(lines) if re.match(r"\.(TP|SH|SS|PP)\b", line)]
        for k, i in enumerate(starts):
            if not lines[i].startswith(".TP") or i + 1 >= len(lines):
                continue
            end = starts[k + 1] if k + 1 < len(starts) else len(lines)
            body = _prose(lines[i + 2:end])
            for spelling in OPTION_RE.findall(_plain(lines[i + 1])):
                out.setdefault(spelling, body)
    return out


def _int_ranges(cmd: click.Command, ctx: click.Context):
    for param in cmd.get_params(ctx):
        t = param.type
        if isinstance(param, click.Option) and isinstance(t, click.IntRange) \
                and t.min is not None and t.max is not None:
            yield param, (t.min, t.max)


@pytest.mark.parametrize("name", [n for n in COMMANDS if n is not None], ids=lambda n: _label(n))
def test_documented_option_ranges_are_the_code_s(name):
    """An option whose page entry or help text states a range (``4 to 1024``,
    ``4-1024``) takes exactly that range."""
    cmd, ctx = COMMANDS[name]
    entries = _entries(_read(_page(name)))
    wrong = []
    for param, bounds in _int_ranges(cmd, ctx):
        for where, text in [("man page", entries.get(param.opts[-1], "")),
                            ("--help", param.help or "")]:
            stated = [(int(a), int(b)) for a, b in _RANGE_RE.findall(text)]
            if stated and stated[0] != bounds:
                wrong.append(f"{'/'.join(param.opts)}: {where} says {stated[0][0]} to"
                             f" {stated[0][1]}, the code takes {bounds[0]} to {bounds[1]}")
    assert not wrong, "; ".join(wrong)


def _example_commands() -> list[tuple[str, list[str]]]:
    """(page, argv) of every ``ndump ...`` command line in the pages' examples."""
    found = []
    for page in PAGES:
        if page.name == "amndump.8":      # its examples are Amanda configuration, not ndump commands
            continue
        inside = False
        for line in _read(page).splitlines():
            if line.startswith((".nf", ".fi")):
                inside = line.startswith(".nf")
                continue
            text = _plain(line).rstrip(" \\|")
            if inside and "ndump " in text:
                text = text.split("| ")[-1]
                words = text[text.index("ndump "):].split()[1:]
                found.append((page.name, words))
    return found


def _parse(words: list[str]) -> dict:
    """The parameters click gives the command for ``ndump WORDS`` (nothing runs)."""
    argv = classic_argv(words)
    cmd = _loaded_commands()[argv[0]]
    ctx = cmd.make_context(argv[0], argv[1:], parent=_root_ctx())
    return ctx.params


@pytest.mark.parametrize("page,words", _example_commands(),
                         ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_examples_parse(page, words):
    try:
        _parse(words)
    except click.UsageError as e:
        pytest.fail(f"{page}: `ndump {' '.join(words)}` does not parse: {e.format_message()}")


def test_compression_level_syntax_is_the_page_s():
    """ndump-dump(8): the level follows -z/-j without a space, --zstd after '=' or as
    the next word; PATH is still PATH."""
    text = _prose(_section(_read(_page("dump")), "OPTIONS"))
    assert "a number that follows a bare --zstd is taken for its level" in text
    for words, want in [(["-z6"], ("zlib", 6)), (["-j9"], ("bzip2", 9)),
                        (["--zstd=7"], ("zstd", 7)), (["--zstd", "7"], ("zstd", 7)),
                        (["--zstd"], ("zstd", 3)), (["-z"], ("zlib", 2))]:
        params = _parse(["dump", *words, "-f", "/tmp/x", "/srv"])
        assert (params["compress"], params["path"]) == (want, "/srv"), words
