"""The `tessera` command line (generators/cli.py), in-process and once as the console script."""

import json
import pathlib
import re
import subprocess
import sys

import pytest

from tessera.generators.cli import main
from tessera.generators.kinds import PE_KINDS
from tessera.generators.units import UNITS


PRESET_DIR = pathlib.Path(__file__).resolve().parent.parent / "generators" / "presets"
PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
TESSERA = pathlib.Path(sys.executable).parent / "tessera"
SUBCOMMANDS = ["presets", "generate", "unit", "regress", "report", "build", "program", "run"]

TINY_TOML = """\
[core]
name = "cli_tiny"
[array]
rows = 2
cols = 1
[pe]
a_bits = 4
b_bits = 4
acc_bits = 8
[memory]
a_depth = 16
b_depth = 16
c_depth = 16
"""


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err, pattern):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(r"tessera: error: " + pattern, lines[0]), lines[0]


# -- presets ------------------------------------------------------------------------------------
def test_presets(capsys):
    code, out, err = run(capsys, "presets")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert [ln.split()[0] for ln in lines] == PRESETS
    for name, line in zip(PRESETS, lines):
        first_comment = (PRESET_DIR / f"{name}.toml").read_text().splitlines()[0]
        assert first_comment.lstrip("# ") in line
    marked = [ln.split()[0] for ln in lines if ln.endswith("(default)")]
    assert marked == ["int8-8x8"]


# -- generate -----------------------------------------------------------------------------------
def test_generate_default_into_build(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "generate")
    assert code == 0 and err == ""
    folder = tmp_path / "build" / "generate" / "tessera_int8_8x8"
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json", "tessera_int8_8x8.v", "tessera_int8_8x8_defs.h"]
    assert out.startswith("tessera_int8_8x8: 8x8 systolic array of int PEs (preset:int8-8x8) -> ")
    m = json.loads((folder / "manifest.json").read_text())
    assert re.search(rf"verilog sha256 {m['verilog_sha256'][:16]}\.\.\.$", out, re.M)
    assert [p.name for p in (tmp_path / "build" / "generate").iterdir()] == ["tessera_int8_8x8"]


def test_generate_preset_name(capsys, tmp_path):
    code, out, err = run(capsys, "generate", "icebreaker", "-o", tmp_path / "ice")
    assert code == 0 and err == ""
    m = json.loads((tmp_path / "ice" / "manifest.json").read_text())
    assert m["top"] == "tessera_icebreaker"
    assert (m["geometry"]["rows"], m["geometry"]["cols"]) == (2, 4)
    assert "tessera_icebreaker: 2x4 systolic array of int PEs (preset:icebreaker)" in out


def test_generate_toml_path_with_lint(capsys, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    code, out, err = run(capsys, "generate", cfg, "--output", tmp_path / "o", "--lint")
    assert code == 0 and err == ""
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["top"] == "cli_tiny" and m["config_source"] == str(cfg)
    assert m["geometry"]["acc_width"] == 8
    assert re.search(r"^  lint: clean", out, re.M)


# -- help ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tessera {cmd}")


def test_top_level_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in SUBCOMMANDS:
        assert re.search(rf"^\s+{cmd}\s+\S", out, re.M), cmd


def test_no_command_prints_help_and_fails(capsys):
    code, out, _ = run(capsys)
    assert code == 2
    assert out.startswith("usage: tessera")


# -- errors -------------------------------------------------------------------------------------
PRESET_LIST = ", ".join(f"'{n}'" for n in PRESETS)


@pytest.mark.parametrize("argv, toml, pattern", [
    (["generate", "int8-16x16"], None,
     rf"config: 'int8-16x16' is neither a file nor a preset; allowed presets: {PRESET_LIST}"),
    (["generate", "CFG"], "[array]\nrowz = 4\n",
     r"array\.rowz: unknown key; did you mean 'rows'\? allowed: 'kind', 'rows', 'cols', "
     r"'dataflow', 'chain'"),
    (["generate", "CFG"], "[array]\nrows = 0\n",
     r"array\.rows: 0 is out of range; allowed: 1\.\.64"),
    (["generate", "CFG"], "[array]\nkind = 'mesh'\n",
     r"array\.kind: 'mesh' is unknown; allowed: 'systolic', 'tree', 'feie'"),
    (["generate", "CFG"], "[array\nrows = 2\n", r"config: '.*cfg\.toml' is not valid TOML: .+"),
    (["generate", "missing.toml"], None,
     r"config: 'missing\.toml' is not a readable file; allowed: a TOML path or a preset "
     rf"name \({PRESET_LIST}\)"),
    (["unit", "fpmac9"], None,
     r"unit: 'fpmac9' is unknown; did you mean 'fpmac'\? allowed: "
     + re.escape(", ".join(repr(n) for n in sorted(UNITS)))),
    (["unit", "int_mac", "--acc", "24"], None,
     r"unit int_mac: unknown option '--acc'; did you mean --acc-bits\? allowed: --a-bits, "
     r"--acc-bits, --b-bits \(`tessera unit int_mac --help`\)"),
    (["unit", "int_mac", "--acc-bits", "8"], None,
     r"unit int_mac: --acc-bits must be an integer 16\.\.64 \(at least --a-bits \+ "
     r"--b-bits\), not 8"),
    (["unit", "int_mac", "--acc-bits", "wide"], None,
     r"unit int_mac: option --acc-bits = 'wide' is not an integer"),
    (["unit", "int_mac", "--acc-bits=3.5"], None,
     r"unit int_mac: option --acc-bits = '3\.5' is not an integer"),
    (["unit", "int_mac", "--acc-bits"], None, r"unit int_mac: option --acc-bits needs a value"),
    (["unit", "scratchpad", "--depth", "1"], None,
     r"unit scratchpad: --depth must be an integer 2\.\.65536, not 1"),
    (["program", "nothere.bin", "--board", "icebreaker"], None,
     r"program: bitstream 'nothere\.bin' does not exist; build one with "
     r"`tessera build --board icebreaker`"),
], ids=["unknown-preset", "bad-key", "bad-value", "not-yet", "bad-toml", "missing-file",
        "unknown-unit", "unknown-option", "bad-option", "not-int", "not-int-eq", "no-value",
        "bad-depth", "no-bitstream"])
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_user_errors(argv, toml, pattern, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if toml is not None:
        (tmp_path / "cfg.toml").write_text(toml)
        argv = [str(tmp_path / "cfg.toml") if a == "CFG" else a for a in argv]
    if argv[0] in ("generate", "unit"):
        argv += ["-o", str(tmp_path / "out")]
    code, out, err = run(capsys, *argv)
    assert code == 2
    one_error_line(err, pattern)
    assert out == ""
    # Nothing half-written: only the config we put there remains.
    assert sorted(p.name for p in tmp_path.iterdir()) == (["cfg.toml"] if toml else [])


@pytest.mark.parametrize("argv, pattern", [
    (["build", "--board", "de10"],
     r"tessera build: error: argument --board: 'de10' is unknown; allowed: 'icebreaker', "
     r"'ulx3s-85f' \(or 'ulx3s' for 'ulx3s-85f'\)"),
    (["build"], r"tessera build: error: the following arguments are required: --board"),
    (["program", "x.bit", "--board", "arty"],
     r"tessera program: error: argument --board: 'arty' is unknown; .*"),
    (["generate", "--bogus"], r"tessera generate: error: unrecognized arguments: --bogus"),
    (["frobnicate"], r"tessera: error: argument COMMAND: invalid choice: 'frobnicate' .*"),
])
def test_argparse_errors(argv, pattern, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    _, err = capsys.readouterr()
    assert re.fullmatch(pattern, err.splitlines()[-1]), err
    assert list(tmp_path.iterdir()) == []


# -- unit ---------------------------------------------------------------------------------------
def test_unit_list(capsys):
    code, out, err = run(capsys, "unit", "--list")
    assert code == 0 and err == ""
    units = re.findall(r"^(\w+): \S", out, re.M)
    assert units == sorted(UNITS)     # every kind's units, in name order
    assert set(units) >= {"fpadd", "fpconv", "fpfma", "fpmac", "fpmul", "int_array", "int_mac",
                          "scratchpad"}
    options = {}
    unit = None
    for line in out.splitlines():
        if not line.startswith(" "):
            unit = line.split(":")[0]
            continue
        m = re.fullmatch(r"    (--[a-z-]+) (INT|NAME|BOOL)  .+ \(default ([^;)]*)(; one of .*)?\)",
                         line)
        assert m, line
        if m[2] == "INT":
            options.setdefault(unit, {})[m[1]] = int(m[3])
    assert options["fpmac"] == {"--chunk": 0, "--stages": 2, "--sr-bits": 0}
    options = {k: v for k, v in options.items() if k in ("int_array", "int_mac", "scratchpad")}
    assert options == {
        "int_array": {"--rows": 4, "--cols": 4, "--a-bits": 8, "--b-bits": 8, "--acc-bits": 32},
        "int_mac": {"--a-bits": 8, "--b-bits": 8, "--acc-bits": 32},
        "scratchpad": {"--width": 32, "--depth": 1024},
    }


def test_unit_without_name_lists(capsys):
    assert run(capsys, "unit")[1] == run(capsys, "unit", "--list")[1]


@pytest.mark.parametrize("argv", [
    ["unit", "int_mac", "--acc-bits", "24", "-o", "DIR"],
    ["unit", "int_mac", "-o", "DIR", "--acc-bits=24"],
])
def test_unit_int_mac(argv, capsys, tmp_path):
    out_dir = tmp_path / "mac"
    code, out, err = run(capsys, *[str(out_dir) if a == "DIR" else a for a in argv])
    assert code == 0 and err == ""
    assert out == f"tessera_int_mac -> {out_dir}/ (latency 2)\n"
    m = json.loads((out_dir / "manifest.json").read_text())
    assert m["options"] == {"a_bits": 8, "b_bits": 8, "acc_bits": 24}
    result = [p for p in m["ports"] if p["name"] == "result"]
    assert result == [{"name": "result", "direction": "out", "width": 24, "signed": True,
                       "role": "data"}]
    assert sorted(p.name for p in out_dir.iterdir()) == ["manifest.json", "tessera_int_mac.v"]


def test_unit_default_output(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "unit", "scratchpad", "--width", "8", "--depth", "16")
    assert code == 0
    assert out == "tessera_scratchpad -> build/unit/scratchpad/ (latency 1)\n"
    m = json.loads((tmp_path / "build/unit/scratchpad/manifest.json").read_text())
    assert {p["name"]: p["width"] for p in m["ports"]}["w_addr"] == 4


# -- the console script -------------------------------------------------------------------------
def test_console_script(tmp_path):
    ok = subprocess.run([TESSERA, "generate", "icebreaker", "-o", tmp_path / "ice"],
                        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "ice" / "tessera_icebreaker.v").is_file()
    bad = subprocess.run([TESSERA, "generate", "nope", "-o", tmp_path / "bad"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert re.fullmatch(r"tessera: error: config: 'nope' is neither a file nor a preset; .*\n",
                        bad.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ice"]
