"""Fake findmnt/lvs/vgs/lvcreate/lvremove/mount/umount that replay tests/data/lvm/.

    fakes = FakeTools(tmp_path)
    fakes.answer("lvs_origin_active")                     # a recorded or documented answer
    fakes.answer("mount_ok", MNT=mnt, effect=("copy", str(snapshot_view)))
    fakes.install()
    run_ndump(..., env=fakes.env())
    assert fakes.calls() == [...]

Each fake is a real executable in ``tmp_path/fakebin``, which is the whole PATH
of the ndump process under test (a tool without a fake is "not installed").
It appends its argv to a log, looks for an answer whose argv equals its own,
prints that answer's stdout and stderr and exits with its status; with no
answer it says so and exits 99, which the tests then see as a failure.  An
answer may carry an effect, to stand in for what a real mount does:
``("copy", DIR)`` copies DIR into the mount point (the "snapshot's" files),
``("empty",)`` empties it again (umount).  ``prefix=True`` answers every argv that
starts with the given one (for a mount point whose name the test cannot know).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "lvm"
RECORDED = json.loads((DATA / "recorded.json").read_text())
DOCUMENTED = json.loads((DATA / "documented.json").read_text())
TOOLS = ("findmnt", "lvs", "vgs", "lvcreate", "lvremove", "mount", "umount")

_FAKE = """#!{python}
import json, os, shutil, sys
tool = os.path.basename(sys.argv[0])
argv = [tool] + sys.argv[1:]
with open(os.environ["FAKE_TOOLS_LOG"], "a") as f:
    f.write(json.dumps(argv) + "\\n")
with open(os.environ["FAKE_TOOLS_SCENARIO"]) as f:
    answers = json.load(f)
for a in answers:
    if a["argv"] == argv or (a.get("prefix") and argv[:len(a["argv"])] == a["argv"]):
        effect = a.get("effect") or []
        if effect and effect[0] == "copy":
            shutil.copytree(effect[1], argv[-1], dirs_exist_ok=True, symlinks=True)
        elif effect and effect[0] == "empty":
            for name in os.listdir(argv[-1]):
                p = os.path.join(argv[-1], name)
                shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
        sys.stdout.write(a["stdout"])
        sys.stderr.write(a["stderr"])
        sys.exit(a["returncode"])
sys.stderr.write("fake %s: no answer recorded for %r\\n" % (tool, argv))
sys.exit(99)
"""


def recorded_or_documented(key: str) -> tuple[dict, str]:
    if key in RECORDED:
        return RECORDED[key], "recorded"
    return DOCUMENTED[key], "documented"


def _subst(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text


class FakeTools:
    def __init__(self, tmp_path: Path):
        self.bin = tmp_path / "fakebin"
        self.log = tmp_path / "fake-tools.log"
        self.scenario = tmp_path / "fake-tools.json"
        self.answers: list[dict] = []

    def answer(self, key: str, *, effect: tuple | None = None, argv: list[str] | None = None,
               prefix: bool = False, **values) -> list[str]:
        """Add the answer ``key`` (placeholders filled from ``values``); ``argv`` replaces
        the argv it answers (same output, another object). Returns the argv it answers."""
        data, _ = recorded_or_documented(key)
        want = argv or [_subst(a, values) for a in data["argv"]]
        self.answers.append({"argv": want, "returncode": data["returncode"],
                             "stdout": _subst(data["stdout"], values),
                             "stderr": _subst(data["stderr"], values), "effect": effect,
                             "prefix": prefix})
        return want

    def install(self, tools: tuple[str, ...] = TOOLS) -> None:
        self.bin.mkdir(exist_ok=True)
        for tool in tools:
            exe = self.bin / tool
            exe.write_text(_FAKE.replace("{python}", sys.executable))
            exe.chmod(0o755)
        self.scenario.write_text(json.dumps(self.answers, indent=1))

    def env(self) -> dict[str, str]:
        return {"PATH": str(self.bin), "FAKE_TOOLS_LOG": str(self.log),
                "FAKE_TOOLS_SCENARIO": str(self.scenario)}

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def clear_log(self) -> None:
        if self.log.exists():
            self.log.unlink()
