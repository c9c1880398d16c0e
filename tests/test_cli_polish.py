# amaranth: UnusedElaboratable=no
"""A tool a user can live with all day (issue 20 items 4 and 5), without a simulator run.

Help that explains every argument and ends with an example; a command's own usage for its
mistyped option; "did you mean" for presets, boards, keys, units and options; the ULX3S alias;
the demo's sample in the README; waves (FST where possible, a window cut from VCD, a depth);
progress per test; pruning and `tessera clean`; a short config-mismatch line from `tessera
run`; rounded report figures; unit messages in the unit's own options; Ctrl-C; and every config
the docs show is accepted.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from tessera.generators import cli
from tessera.generators.cli import main
from tessera.generators.config import load_config, suggest
from tessera.generators.units import UNITS


REPO = pathlib.Path(__file__).resolve().parent.parent
COMMANDS = ["presets", "generate", "unit", "regress", "report", "build", "program", "run",
            "clean"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def exits(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


# -- help ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", COMMANDS)
def test_help_explains_every_argument_and_ends_with_an_example(command, capsys):
    code, out, _ = exits(capsys, command, "--help")
    assert code == 0 and out.startswith(f"usage: tessera {command}")
    parser = cli._SUBPARSERS[command]
    for action in parser._actions:
        if action.help is None or action.help == "==SUPPRESS==":
            pytest.fail(f"{command}: argument {action.dest} has no help")
    tail = out.rstrip("\n").split("\n")
    i = max(n for n, line in enumerate(tail) if line == "example:")
    assert tail[i + 1:] and all(line.startswith(f"  tessera {command}") for line in tail[i + 1:])
    if command not in ("presets", "clean", "program"):
        assert "CONFIG" in out or command == "unit"


def test_top_level_help_ends_with_examples(capsys):
    code, out, _ = exits(capsys, "--help")
    assert code == 0 and "clean" in out
    assert out.rstrip().split("\n")[-1].startswith("  tessera ")


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_help_shows_the_units_own_options(unit, capsys):
    code, out, _ = exits(capsys, "unit", unit, "--help")
    assert code == 0 and out.startswith(f"usage: tessera unit {unit}")
    for o in UNITS[unit].options:
        assert f"--{o.name.replace('_', '-')} " in out
    assert UNITS[unit].summary[:40] in out.replace("\n", " ").replace("  ", " ") or \
        UNITS[unit].summary.split()[0] in out
    assert f"  tessera unit {unit}" in out.split("example:")[-1]


def test_unit_help_without_name_is_the_commands(capsys):
    code, out, _ = exits(capsys, "unit", "--help")
    assert code == 0 and out.startswith("usage: tessera unit [")


# -- mistyped names -----------------------------------------------------------------------------
def test_mistyped_option_prints_the_commands_usage(capsys):
    code, _, err = exits(capsys, "regress", "int8-4x4", "--jun", "x.xml")
    assert code == 2
    assert err.startswith("usage: tessera regress ")
    assert err.rstrip().split("\n")[-1] == \
        "tessera regress: error: unrecognized arguments: --jun x.xml (did you mean --junit?)"
    code, _, err = exits(capsys, "generate", "--outptu", "x")
    assert err.startswith("usage: tessera generate ") and "did you mean --output?" in err


@pytest.mark.parametrize("word, choices, expected", [
    ("icebraker", ["icebreaker", "ulx3s"], "icebreaker"),
    ("ICEBREAKER", ["icebreaker", "ulx3s"], "icebreaker"),
    ("depth", ["a_depth", "b_depth", "c_depth"], None),          # a tie: no guess
    ("xyz", ["icebreaker", "ulx3s"], None),
    ("tenary", ["ternary"], None),                               # one choice: listed anyway
])
def test_suggest(word, choices, expected):
    assert suggest(word, choices) == expected


def test_did_you_mean_everywhere(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "generate", "icebraker")
    assert code == 2 and "did you mean 'icebreaker'? allowed presets:" in err
    code, _, err = exits(capsys, "build", "icebreaker", "--board", "icebrekaer")
    assert code == 2 and "did you mean 'icebreaker'?" in err
    (tmp_path / "c.toml").write_text("[array]\nrosw = 4\n")
    code, _, err = run(capsys, "generate", "c.toml")
    assert "array.rosw: unknown key; did you mean 'rows'?" in err
    (tmp_path / "c.toml").write_text("[pe]\nkind = 'ternry'\n")
    code, _, err = run(capsys, "generate", "c.toml")
    assert "pe.kind: 'ternry' is unknown; did you mean 'ternary'?" in err
    code, _, err = run(capsys, "unit", "fpmull")
    assert "unit: 'fpmull' is unknown; did you mean 'fpmul'?" in err
    code, _, err = run(capsys, "unit", "fpmul", "--formt", "fp16")
    assert "unknown option '--formt'; did you mean --format?" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "c.toml"]


def test_ulx3s_means_the_85f(capsys, tmp_path):
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"\0")
    code, out, err = run(capsys, "program", bit, "--board", "ulx3s", "--dry-run")
    assert code == 0, err
    assert "-b ulx3s" in out and str(bit) in out
    from tessera.generators.config import config_from_dict
    cfg = config_from_dict({"core": {"boards": ["ulx3s"]}, "array": {"rows": 2, "cols": 2}})
    assert cfg.core.boards == ("ulx3s-85f",)


# -- unit messages ------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, pattern", [
    (["fpec_mac", "--acc-bits", "8"], r"unit fpec_mac: --acc-bits: 8 is out of range; .*"),
    (["biscaled_dot", "--a-bits", "1"], r"unit biscaled_dot: --a-bits: 1 is out of range; .*"),
    (["ternary_tree", "--acc-bits", "4"], r"unit ternary_tree: --acc-bits must be .*"),
    (["fusion_unit", "--stages", "5"], r"unit fusion_unit: --stages must be an integer 0\.\.2, .*"),
])
def test_unit_messages_name_the_option(argv, pattern, capsys, tmp_path):
    code, out, err = run(capsys, "unit", *argv, "-o", tmp_path / "o")
    assert code == 2 and out == ""
    assert re.fullmatch(r"tessera: error: " + pattern, err.strip()), err
    assert "pe." not in err and "acc_bits" not in err


@pytest.mark.parametrize("argv", [["unit", "", "-o", "x"], ["unit", "-o", "x"],
                                  ["unit", "--lint"], ["unit", "int_mac", "--list"]])
def test_unit_without_a_name_does_not_list(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


# -- Ctrl-C -------------------------------------------------------------------------------------
def test_interrupt_while_importing_is_one_line(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "_parser", interrupted)
    code, out, err = run(capsys, "presets")
    assert code == cli.EXIT_INTERRUPTED and out == "" and err == "tessera: interrupted\n"


def test_ctrl_c_during_startup_imports_prints_no_traceback(tmp_path):
    """SIGINT 50 ms into `main`, while the config, kinds and Amaranth are being imported."""
    # The child starts as from a shell: SIGINT raises KeyboardInterrupt and is not blocked,
    # whatever the pytest worker that starts it inherited (an ignored or blocked SIGINT is
    # passed on to children and made this test's SIGINT vanish).
    code = ("import os, signal, sys\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGALRM})\n"
            "from tessera.generators import cli\n"
            "signal.signal(signal.SIGALRM, lambda *a: os.kill(os.getpid(), signal.SIGINT))\n"
            "signal.setitimer(signal.ITIMER_REAL, 0.05)\n"
            "sys.exit(cli.main(['generate', 'int8-4x4', '-o', 'out']))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert "Traceback" not in r.stderr
    assert r.returncode == 130 and r.stderr == "tessera: interrupted\n"


# -- run: the config-mismatch line --------------------------------------------------------------
def test_run_mismatch_names_the_fields_in_one_short_line(capsys, tmp_path):
    """The board answers INFO as the `icebreaker` preset's core; the config asks for 2x2."""
    from tests.test_cli_run import BoardOnPty, error_line
    board = BoardOnPty(load_config("icebreaker"))
    (tmp_path / "c.toml").write_text(
        '[core]\nname = "other"\nboards = ["icebreaker"]\n[array]\nrows = 2\ncols = 2\n'
        '[memory]\na_depth = 512\nb_depth = 512\nc_depth = 256\n'
        '[host]\ninterface = "uart"\n')
    try:
        code, out, err = run(capsys, "run", tmp_path / "c.toml", "--board", "icebreaker",
                             "--port", board.path)
    finally:
        board.close()
    assert code == 2 and out == ""
    line = error_line(err, rf"the core on {re.escape(board.path)} is not the one the config "
                           rf"other describes \(differs in cols, format acc, store b, store c\); "
                           rf"program the bitstream built from this config, or run with the "
                           rf"config the bitstream was built from")
    assert len(line) < 300


# -- report: figures rounded for people ---------------------------------------------------------
def test_report_text_is_rounded_json_is_not():
    cfg = load_config("int8-4x4")
    rep = {"rows": [{"workload": "GEMM 64x64x64", "mode": None, "mapping": [[64, 64, 64]],
                     "runs": 1, "cycles": 16414, "ideal_cycles": 16384.0,
                     "utilization": 0.998172292}],
           "board": "ulx3s-85f", "luts": 1234, "dsps": 16, "brams": 7.0,
           "fmax_mhz": 23.987654321}
    text = cli.format_report(cfg, rep)
    assert re.search(r"^  fmax_mhz\s+23\.99$", text, re.M)
    assert re.search(r"^  brams\s+7$", text, re.M)
    assert re.search(r" 16414\s+16384\s+99\.8%$", text, re.M)
    assert "0.998" not in text and "23.987" not in text
    assert cli.human(32768.0) == "32768" and cli.human(23.987654) == "24.0"


# -- regress: progress, windows, pruning --------------------------------------------------------
def test_each_test_is_reported_as_it_finishes(tmp_path):
    from tessera.generators.regress import _Progress
    from tessera.sim.runner import _LogWatcher
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"case": "ragged", "m": 5, "n": 11, "k": 5, "cycles": 60,
                                   "golden_cycles": 60, "mismatches": 0}) + "\n")
    seen = []
    cases = [{"name": "one"}, {"name": "ragged"}]
    prog = _Progress(seen.append, results, cases, [], 4)
    log = tmp_path / "sim.log"
    log.write_text("")
    w = _LogWatcher(log, prog)
    w.start()
    with open(log, "a") as f:
        f.write("   855.00ns INFO     cocotb.regression                  "
                "tessera.tb.core_cocotb.test_info passed\n")
        f.flush()
        time.sleep(0.6)
        assert len(seen) == 1 and "1/4 test_info passed" in seen[0]
        f.write(" 11565.00ns INFO     cocotb.regression                  "
                "tessera.tb.core_cocotb.test_gemm/case=ragged passed\n")
    w.finish()
    assert re.search(r"2/4 ragged +5x11x5 +60 cycles \(= golden\), bit-exact", seen[1]), seen
    assert prog.windows == {"test_info": (0.0, 855.0), "ragged": (855.0, 11565.0)}


VCD = """$timescale 1ps $end
$scope module top $end
$var wire 1 ! clk $end
$var wire 4 " d [3:0] $end
$upscope $end
$enddefinitions $end
#0
$dumpvars
0!
b0000 "
$end
#10
1!
#20
0!
b0101 "
#30
1!
#40
0!
b1111 "
#50
1!
"""


def test_trim_vcd_keeps_the_state_at_the_start(tmp_path):
    from tessera.sim.runner import trim_vcd
    p = tmp_path / "dump.vcd"
    p.write_text(VCD)
    trim_vcd(p, 25, 40)
    text = p.read_text()
    head, body = text.split("$enddefinitions $end\n")
    assert head == VCD.split("$enddefinitions $end\n")[0]
    assert body == "#25\n$dumpvars\n0!\nb0101 \"\n$end\n#30\n1!\n#40\n0!\nb1111 \"\n"


def test_waves_choice(monkeypatch):
    from tessera.sim import runner

    class A:
        waves, waves_format, waves_depth, waves_window = False, None, None, None
    a = A()
    assert cli._waves_choice(a) is False
    a.waves = True
    monkeypatch.setattr(runner, "fst_support", lambda: "shim")
    assert cli._waves_choice(a) == "fst"
    monkeypatch.setattr(runner, "fst_support", lambda: None)
    assert cli._waves_choice(a) == "vcd"
    a.waves_format = "fst"
    with pytest.raises(cli.CliError, match="needs lz4"):
        cli._waves_choice(a)
    a.waves, a.waves_format, a.waves_window = False, None, "ragged"
    assert cli._waves_choice(a) == "vcd"          # a window implies waves, cut from VCD


def test_waves_window_must_name_a_case():
    from tessera.generators.regress import check_waves_window
    cases = [{"name": "one"}, {"name": "ragged"}]
    assert check_waves_window("ragged", cases, []) is None
    assert check_waves_window("100:2000", cases, []) == (100.0, 2000.0)
    with pytest.raises(ValueError, match=r"'raged' is not a case .*did you mean 'ragged'\?"):
        check_waves_window("raged", cases, [])


def _fake_build(root, key, top, age):
    d = root / key
    (d / "runs").mkdir(parents=True)
    (d / "tessera-build.json").write_text(json.dumps({"key": key, "top": top}))
    (d / "obj.o").write_bytes(b"x" * 1000)
    (root / f"{key}.lock").write_text("")
    t = time.time() - age
    os.utime(d / "tessera-build.json", (t, t))
    return d


def test_prune_keeps_the_newest_per_core(tmp_path):
    from tessera.generators.regress import prune_work_folders
    from tessera.sim.runner import prune_builds, prune_runs
    sim = tmp_path / "sim"
    builds = [_fake_build(sim, f"{i:016x}", "tessera_a", 100 - i) for i in range(5)]
    other = _fake_build(sim, "f" * 16, "tessera_b", 1000)
    gone = prune_builds(sim, "tessera_a", 3)
    assert sorted(gone) == builds[:2] and all(b.exists() for b in builds[2:]) and other.exists()
    runs = builds[4] / "runs"
    for i in range(5):
        (runs / f"r{i}").mkdir()
        (runs / f"r{i}" / "results.xml").write_text("")
        os.utime(runs / f"r{i}", (time.time() - 100 + i,) * 2)
    (runs / "going").mkdir()                     # no results.xml yet: a run in progress
    prune_runs(builds[4], 2)
    assert sorted(p.name for p in runs.iterdir()) == ["going", "r3", "r4"]
    reg = tmp_path / "regress"
    for i in range(4):
        d = reg / f"tessera_a-{i:016x}"
        d.mkdir(parents=True)
        (d / "summary.json").write_text("{}")
        os.utime(d / "summary.json", (time.time() - 100 + i,) * 2)
    (reg / "mine").mkdir()
    prune_work_folders(reg, 1)
    assert sorted(p.name for p in reg.iterdir()) == ["mine", f"tessera_a-{3:016x}"]


def test_clean_removes_only_what_tessera_wrote(capsys, tmp_path):
    root = tmp_path / "build"
    sim = root / "sim"
    _fake_build(sim, "1" * 16, "tessera_a", 10)
    (root / "generate" / "core").mkdir(parents=True)
    (root / "generate" / "core" / "manifest.json").write_text("{}")
    (root / "generate" / "core" / "core.v").write_text("module core; endmodule\n")
    (root / "notes").mkdir()
    (root / "notes" / "mine.txt").write_text("keep me")
    code, out, _ = run(capsys, "clean", "--dir", root, "--dry-run")
    assert code == 0 and "would remove" in out and (sim / ("1" * 16)).exists()
    code, out, _ = run(capsys, "clean", "--dir", root)
    assert code == 0
    assert (root / "notes" / "mine.txt").read_text() == "keep me"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["notes",
                                                                          "notes/mine.txt"]
    assert re.search(r"left .*mine\.txt \(not written by tessera\)", out)
    assert re.search(r"build/: [0-9.]+ MB -> 0\.0 MB \(removed 3 entries; left 1 not "
                     r"written by tessera\)", out), out


def test_keep_must_be_a_positive_integer(capsys, monkeypatch):
    monkeypatch.setenv("TESSERA_KEEP", "0")
    code, _, err = run(capsys, "regress", "nope")
    assert code == 2
    monkeypatch.setenv("TESSERA_KEEP", "two")
    with pytest.raises(cli.CliError, match=r"TESSERA_KEEP: 'two' is not a positive integer"):
        cli._keep()
    monkeypatch.delenv("TESSERA_KEEP")
    assert cli._keep() == cli.DEFAULT_KEEP


# -- the demo and its sample in the README ------------------------------------------------------
def _readme_sample():
    text = (REPO / "README.md").read_text()
    m = re.search(r"`make demo` prints.*?\n```\n(.*?)```", text, re.S)
    assert m, "README.md has no `make demo` sample"
    return m.group(1).rstrip("\n").split("\n")


def test_readme_demo_sample_is_what_make_demo_prints():
    """Line by line, the README's sample has the demo's shape for the default preset: its
    header, the workloads the demo runs, each progress line, the table and the `next:` line."""
    from tessera.generators import demo
    cfg = load_config(None)
    lines = _readme_sample()
    assert lines[:2] == demo.header_lines(cfg)
    assert lines[2] == ""
    assert re.fullmatch(rf"\[1/2\] generated build/demo/{cfg.core.name}/{cfg.core.name}\.v in "
                        rf"[0-9.]+s \(sha256 [0-9a-f]{{12}}\.\.\., manifest\.json, "
                        rf"{cfg.core.name}_defs\.h\)", lines[3])
    assert lines[4].startswith("[2/2] co-simulating on Verilator")
    cases, layers = demo.demo_cases(cfg)
    i = 5
    if lines[i].startswith("      verilator: "):
        i += 1
    n = 1 + len(cases) + len(layers) + 1           # test_info, GEMMs, layers, the network
    progress = lines[i:i + n]
    assert [demo.progress_line("[regress] " + ln.strip()) for ln in progress] == progress
    names = ["test_info"] + [c["name"] for c in cases] + [c["name"] for c in layers] + \
        ["digits_mlp"]
    for k, (ln, name) in enumerate(zip(progress, names)):
        assert re.match(rf"      {k + 1}/{n} {name} ", ln), ln
    i += n
    assert lines[i] == "" and lines[i + 1] == demo.TABLE_HEADER
    rows = lines[i + 2:i + 2 + len(cases) + len(layers)]
    from tessera.sim.layers import describe, layer_from_dict
    labels = [f"GEMM {c['m']}x{c['n']}x{c['k']}" for c in cases] + \
        [describe(layer_from_dict(c["layer"])) for c in layers]
    assert [r[:34].rstrip() for r in rows] == labels
    assert all(r.endswith("bit-exact, cycles = golden model") for r in rows)
    rest = lines[i + 2 + len(rows):]
    assert rest[0] == "" and re.fullmatch(rf"digits MLP quantized for {cfg.pe.name}, 8 test "
                                          r"images through the RTL: \d/8 classified right, "
                                          r"\d+ cycles; bit-exact, cycles = golden model",
                                          rest[1])
    assert rest[2] == "" and re.fullmatch(r"\d+ passed, 0 failed; Verilator build (cached|"
                                          r"compiled) \([0-9.]+s\); total [0-9.]+s", rest[3])
    assert rest[4] == demo.next_line(cfg, None) and len(rest) == 5


@pytest.mark.parametrize("spec", [None, "ternary", "icebreaker"])
def test_demo_next_line_follows_the_preset(spec):
    from tessera.generators import demo
    cfg = load_config(spec)
    line = demo.next_line(cfg, spec)
    arg = f" {spec}" if spec else ""
    assert f"`.venv/bin/tessera regress{arg}`" in line
    assert f"`.venv/bin/tessera report{arg}`" in line
    if cfg.core.boards and cfg.host.interface == "uart":
        assert f"`.venv/bin/tessera build{arg} --board {cfg.core.boards[0]}`" in line


# -- every config the docs show is accepted -----------------------------------------------------
def _doc_tomls():
    out = []
    for path in sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]:
        text = path.read_text()
        for m in re.finditer(r"^```toml\n(.*?)^```", text, re.S | re.M):
            line = text[:m.start()].count("\n") + 1
            out.append(pytest.param(m.group(1), id=f"{path.name}:{line}"))
    return out


@pytest.mark.parametrize("body", _doc_tomls())
def test_every_config_in_the_docs_is_accepted(body, tmp_path):
    from tessera.generators.config import config_from_dict, parse_toml
    data = parse_toml(body, "doc")
    if "sweep" in data:                        # a sweep grid (docs/sweep.md)
        from tessera.generators.sweep import expand, grid_from_dict
        points = expand(grid_from_dict(data, source="doc", folder=tmp_path))
        assert points and all(p.error is None for p in points)
        return
    if "layer" in data:                        # a layers file (`report --layers`)
        from tessera.generators.report import load_layers_file, report_layers
        (tmp_path / "l.toml").write_text(body)
        assert report_layers(load_config(None), load_layers_file(tmp_path / "l.toml"))
        return
    cfg = config_from_dict(data)
    assert cfg.digest()


def test_docs_show_configs():
    assert len(_doc_tomls()) >= 3


def test_cli_md_unit_table_is_the_registry():
    text = (REPO / "docs" / "cli.md").read_text()
    m = re.search(r"<!-- units-table -->\n(.*?)<!-- /units-table -->", text, re.S)
    assert m, "docs/cli.md has no units table"
    rows = re.findall(r"^\| `(\w+)` \| ([^|]*) \|", m.group(1), re.M)
    assert sorted(u for u, _ in rows) == sorted(UNITS)
    for unit, options in rows:
        flags = re.findall(r"`(--[a-z-]+)`", options)
        assert flags == [f"--{o.name.replace('_', '-')}" for o in UNITS[unit].options], unit


def test_console_script_ctrl_c_is_quiet(tmp_path):
    """The console script itself: SIGINT while `tessera generate` starts up."""
    tessera = pathlib.Path(sys.executable).parent / "tessera"
    p = subprocess.Popen([tessera, "generate", "int8-4x4", "-o", tmp_path / "o"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert "Traceback" not in err
    assert p.returncode in (130, 0, -signal.SIGINT), (p.returncode, err)


def test_clean_keep_prunes_and_drops_precompiled_headers(capsys, tmp_path):
    root = tmp_path / "build"
    builds = [_fake_build(root / "sim", f"{i:016x}", "tessera_a", 100 - i) for i in range(4)]
    (builds[3] / "Vtop__pch.h.fast.gch").write_bytes(b"h" * 5000)
    code, out, _ = run(capsys, "clean", "--dir", root, "--keep", "2")
    assert code == 0
    assert [b.exists() for b in builds] == [False, False, True, True]
    assert not (builds[3] / "Vtop__pch.h.fast.gch").exists() and (builds[3] / "obj.o").exists()
    assert "kept the newest 2 per core" in out


@pytest.mark.slow
def test_regress_waves_window_and_fst_on_the_rtl(capsys, tmp_path, monkeypatch):
    """The 4x4 quick regression's waves: one case's window is a small VCD (the whole run was
    172 MB of VCD), FST where this machine can build it (10 MB); every test is printed."""
    from tessera.sim.runner import fst_support
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "regress", "int8-4x4", "--quick", "--waves-window", "ragged")
    assert code == 0, err
    assert re.search(r"^\[regress\] +13/13 test_malformed_commands passed", out, re.M)
    s = re.search(r"waves: (\S+dump\.vcd) \(window ([0-9.]+)\.\.([0-9.]+) ns\)", out)
    assert s and pathlib.Path(s[1]).stat().st_size < 2_000_000
    if fst_support() is not None:
        code, out, err = run(capsys, "regress", "int8-4x4", "--quick", "--waves")
        assert code == 0, err
        fst = re.search(r"waves: (\S+dump\.fst)", out)
        assert fst and pathlib.Path(fst[1]).stat().st_size < 20_000_000
