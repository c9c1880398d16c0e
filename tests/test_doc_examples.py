"""The docs say what the code does: their examples run and their lists come from the code.

- Every fenced ```python block in docs/*.md and README.md runs as written, with this venv's
  Python, in a temporary folder outside the repository. A block preceded by
  ``<!-- no-test: reason -->`` is skipped (hardware, for example); one preceded by
  ``<!-- test: slow (reason) -->`` runs only with ``-m slow``.
- A fenced block without a language that looks like Python is an error (tag it ```python).
- docs/cli.md: every command it names has ``tessera <command> --help`` exiting 0, the preset list
  is what ``tessera presets`` prints, and each error example is what the CLI prints.
- docs/config.md: the kind lists are the registries', and the preset table is generated from
  the presets (``python tests/test_doc_examples.py presets-table`` prints it).
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
TESSERA = shutil.which("tessera", path=os.path.dirname(sys.executable)) or "tessera"

_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_LOOKS_PYTHON = re.compile(r"^\s*(>>> |import \w|from [\w.]+ import |asyncio\.run\()", re.M)


def _blocks(path):
    """(line number, language, body, marker) of each fenced block in ``path``; marker is the
    HTML comment on the nearest non-blank line before the fence, or None."""
    lines = path.read_text().split("\n")
    out = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith("```"):
            j += 1
        prev = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
        marker = prev if prev.startswith("<!--") else None
        indent = len(m.group(1))
        body = "\n".join(ln[indent:] for ln in lines[i + 1:j]) + "\n"
        out.append((i + 1, m.group(2), body, marker))
        i = j + 1
    return out


def _python_blocks():
    params = []
    for path in DOCS:
        for line, lang, body, marker in _blocks(path):
            if lang not in ("python", "py"):
                continue
            ident = f"{path.relative_to(ROOT)}:{line}"
            marks = []
            if marker and marker.startswith("<!-- no-test"):
                marks.append(pytest.mark.skip(reason=marker[4:-3].strip()))
            elif marker and marker.startswith("<!-- test: slow"):
                marks.append(pytest.mark.slow)
            params.append(pytest.param(body, marker, id=ident, marks=marks))
    return params


PYTHON_BLOCKS = _python_blocks()


def test_there_are_examples():
    assert len(PYTHON_BLOCKS) >= 4


@pytest.mark.parametrize("body, marker", PYTHON_BLOCKS)
def test_python_example_runs(body, marker, tmp_path):
    """The block runs as a script in a fresh folder outside the repository."""
    (tmp_path / "example.py").write_text(body)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("PYTHONPATH", None)
    timeout = 900 if marker and "slow" in marker else 60
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_untagged_blocks_are_not_python(path):
    """A Python example must say so (```python), or this test would never run it."""
    bad = [line for line, lang, body, _ in _blocks(path)
           if lang == "" and _LOOKS_PYTHON.search(body)]
    assert bad == [], f"{path.name}: untagged Python-looking blocks at lines {bad}"


# -- docs/cli.md ------------------------------------------------------------------------------

CLI_MD = ROOT / "docs" / "cli.md"


def _tessera(*args, cwd, columns=80):
    env = {**os.environ, "COLUMNS": str(columns)}
    env.pop("TESSERA_DEBUG", None)
    return subprocess.run([TESSERA, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def _cli_commands():
    """Command names docs/cli.md mentions: its command table (before the first section) and
    its `$ tessera <cmd>` lines."""
    text = CLI_MD.read_text()
    names = set(re.findall(r"^\| `([a-z]+)[ `]", text.split("\n## ")[0], re.M))
    names |= set(re.findall(r"^\$ tessera ([a-z]+)", text, re.M))
    return sorted(names)


def test_cli_md_names_commands():
    assert {"presets", "generate", "unit", "regress", "report", "build", "program",
            "run"} <= set(_cli_commands())


@pytest.mark.parametrize("command", [None, *_cli_commands()])
def test_cli_md_command_help(command, tmp_path):
    r = _tessera(*([command] if command else []), "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_cli_md_preset_list_is_tessera_presets(tmp_path):
    text = CLI_MD.read_text()
    m = re.search(r"^\$ tessera presets\n(.*?)^```", text, re.S | re.M)
    assert m, "docs/cli.md has no `$ tessera presets` example"
    r = _tessera("presets", cwd=tmp_path)
    assert r.returncode == 0
    assert m.group(1) == r.stdout


def _error_examples():
    """(command line, expected last stderr line) of each `$ tessera ...` line in docs/cli.md
    whose output ends in an error line."""
    out = []
    for _, lang, body, _ in _blocks(CLI_MD):
        lines = body.rstrip("\n").split("\n")
        for i, line in enumerate(lines):
            if not line.startswith("$ tessera "):
                continue
            j = i + 1
            while j < len(lines) and not lines[j].startswith("$ "):
                j += 1
            output = lines[i + 1:j]
            if output and re.match(r"tessera( \w+)?: error: ", output[-1]):
                out.append(pytest.param(line[2:], output, id=line[10:]))
    return out


ERROR_EXAMPLES = _error_examples()


def test_cli_md_has_error_examples():
    assert len(ERROR_EXAMPLES) >= 4


@pytest.mark.parametrize("command, output", ERROR_EXAMPLES)
def test_cli_md_error_example(command, output, tmp_path):
    """Run in a folder holding what the examples assume: a config `s.toml` and a file
    `results.txt`."""
    (tmp_path / "s.toml").write_text('[core]\nname = "s"\n')
    (tmp_path / "results.txt").write_text("not tessera's\n")
    r = _tessera(*command.split()[1:], cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.rstrip("\n").split("\n") == output


# -- docs/config.md -------------------------------------------------------------------------

CONFIG_MD = ROOT / "docs" / "config.md"


def _marked_list(tag):
    text = CONFIG_MD.read_text()
    m = re.search(rf"<!-- {tag} -->(.*?)<!-- /{tag} -->", text)
    assert m, f"docs/config.md has no <!-- {tag} --> list"
    return re.findall(r'`"([^"]+)"`', m.group(1))


def test_config_md_kind_lists_are_the_registries():
    from tessera.generators.kinds import ENGINES, ENGINES_LATER, PE_KINDS, PE_KINDS_LATER
    assert _marked_list("pe-kinds") == list(PE_KINDS)
    assert _marked_list("engines") == list(ENGINES)
    assert _marked_list("engines-later") == list(ENGINES_LATER)
    assert "<!-- pe-kinds-later -->" in CONFIG_MD.read_text() or not PE_KINDS_LATER


def presets_table():
    """The preset table of docs/config.md, from the presets themselves."""
    from tessera.generators.config import DEFAULT_PRESET, load_config, preset_names
    rows = ["| preset | module | engine | PE kind | stores (lanes x lane bits, depth) | host | "
            "clock | boards |",
            "|---|---|---|---|---|---|---|---|"]
    for name in preset_names():
        cfg = load_config(name)
        d = cfg.to_dict()
        stores = "; ".join(f"{s.name}: {s.lanes} x {s.lane_bits} b, {s.depth}"
                           for s in cfg.geometry.stores)
        host = d["host"]["interface"] + (f" {d['host']['baud']}"
                                         if d["host"]["interface"] == "uart" else "")
        label = f"`{name}`" + (" (default)" if name == DEFAULT_PRESET else "")
        rows.append(f"| {label} | `{d['core']['name']}` | {d['array']['kind']} | "
                    f"{d['pe']['kind']} | {stores} | {host} | {d['core']['clock_mhz']:g} MHz | "
                    f"{', '.join(d['core']['boards']) or '-'} |")
    return "\n".join(rows) + "\n"


def test_config_md_preset_table_is_generated():
    text = CONFIG_MD.read_text()
    m = re.search(r"<!-- presets-table -->\n(.*?)<!-- /presets-table -->", text, re.S)
    assert m, "docs/config.md has no <!-- presets-table --> block"
    assert m.group(1) == presets_table(), (
        "docs/config.md's preset table is stale; replace it with the output of "
        "`.venv/bin/python tests/test_doc_examples.py presets-table`")


if __name__ == "__main__":
    if sys.argv[1:] == ["presets-table"]:
        print(presets_table(), end="")
    else:
        sys.exit("usage: python tests/test_doc_examples.py presets-table")
