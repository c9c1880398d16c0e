"""Issue 12, reproducer by reproducer: tessera never destroys what it did not write, no command
ends in a traceback, a config is accepted only if it can work, cheap checks come first, options
and manifests say what the hardware does.

Each test names the reproducer it covers. Commands run in-process through `main` (the same code
as the console script); where a command must fail before any expensive step, that step is
replaced by a function that fails the test if it is reached.
"""

import asyncio
import json
import os
import pathlib
import re
import stat
import subprocess
import sys

import numpy as np
import pytest

from tessera.generators import cli
from tessera.generators.cli import main
from tessera.generators.config import ConfigError, config_from_dict, load_config


TESSERA = pathlib.Path(sys.executable).parent / "tessera"
REPO = pathlib.Path(__file__).resolve().parent.parent

#: The issue's ``s.toml``: a 2x2 core with 16-word scratchpads.
S_TOML = """\
[core]
name = "s"
[array]
rows = 2
cols = 2
[memory]
a_depth = 16
b_depth = 16
c_depth = 16
"""


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err, pattern=".+"):
    """``err`` is exactly one line ``tessera: error: <pattern>`` (no traceback)."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.fullmatch(r"tessera: error: " + pattern, lines[0]), lines[0]
    return lines[0]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's project folder holding ``s.toml`` and their own work, as the working dir."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "s.toml").write_text(S_TOML)
    (root / "notes.txt").write_text("my notes\n")
    monkeypatch.chdir(root)
    return root


def tree(folder):
    """{relative path: bytes or kind} of everything below ``folder`` (hidden entries too)."""
    out = {}
    for p in sorted(pathlib.Path(folder).rglob("*")):
        st = p.lstat()
        rel = str(p.relative_to(folder))
        out[rel] = p.read_bytes() if stat.S_ISREG(st.st_mode) else stat.S_IFMT(st.st_mode)
    return out


def never(name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} was reached; the command should have failed before it")
    return fail


# -- data loss: -o replaces whatever is there ----------------------------------------------------
def test_output_is_the_working_directory(project, capsys):
    """`tessera generate ../s.toml -o "$PWD"` inside a project folder deleted everything."""
    sub = project / "work"
    sub.mkdir()
    (sub / "mine.v").write_text("module mine; endmodule\n")
    os.chdir(sub)
    before = tree(project)
    for out in (str(sub), ".", "./", ".."):
        code, stdout, err = run(capsys, "generate", "../s.toml", "-o", out)
        assert code == 2 and stdout == ""
        error_line(err, r"output folder: '.*' is (the working directory|a parent of the "
                        r"working directory); tessera never replaces it.*")
    assert tree(project) == before


def test_output_folder_with_user_files(project, capsys):
    """`-o mywork` holding the user's files replaced them ("replaced whole")."""
    (project / "mywork").mkdir()
    (project / "mywork" / "thesis.tex").write_text("precious")
    before = tree(project)
    for argv in (["generate", "s.toml"], ["unit", "int_mac"]):
        code, _, err = run(capsys, *argv, "-o", "mywork")
        assert code == 2
        error_line(err, r"output folder: 'mywork' is not empty and holds no manifest\.json "
                        r"written by tessera \(it holds 'thesis\.tex'\); .*")
    assert tree(project) == before


def test_output_folder_written_by_tessera_is_replaced(project, capsys):
    """The one folder tessera may replace: its own, with only the files its manifest lists."""
    assert run(capsys, "generate", "s.toml", "-o", "out")[0] == 0
    first = tree(project / "out")
    assert run(capsys, "generate", "s.toml", "-o", "out")[0] == 0
    assert tree(project / "out") == first          # deterministic, replaced in place
    (project / "out" / "extra.txt").write_text("mine")
    code, _, err = run(capsys, "generate", "s.toml", "-o", "out")
    assert code == 2
    error_line(err, r"output folder: 'out' holds 'extra\.txt', which tessera did not write; .*")
    (project / "out" / "extra.txt").unlink()
    (project / "out" / "s.v").write_text("// edited by hand\n")
    code, _, err = run(capsys, "generate", "s.toml", "-o", "out")
    assert code == 2
    error_line(err, r"output folder: 'out' holds 's\.v', which was changed after tessera "
                    r"wrote it; .*")
    assert (project / "out" / "s.v").read_text() == "// edited by hand\n"
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", "out", "s.toml"]


def test_output_is_an_existing_file(project, capsys):
    """`-o results.txt` replaced the file by a folder (kept only as `.results.txt.old-NNNN`)."""
    (project / "results.txt").write_text("numbers\n")
    before = tree(project)
    for argv in (["generate", "s.toml"], ["unit", "scratchpad"]):
        code, _, err = run(capsys, *argv, "-o", "results.txt")
        assert code == 2
        error_line(err, r"output folder: 'results\.txt' is an existing file; .*")
    assert tree(project) == before


def test_output_is_a_fifo(project):
    """`mkfifo p; tessera generate s.toml -o p` replaced the FIFO, then hung in the clean-up."""
    os.mkfifo(project / "p")
    res = subprocess.run([TESSERA, "generate", "s.toml", "-o", "p"], cwd=project,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    error_line(res.stderr, r"output folder: 'p' is a FIFO \(named pipe\); .*")
    assert stat.S_ISFIFO((project / "p").lstat().st_mode)
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", "p", "s.toml"]


def test_output_is_a_device_node(project, capsys):
    """`-o /dev/null` as root renamed the device node away. Here: a private node made with
    mknod in the test's own folder (never the real /dev/null)."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    try:
        os.mknod(project / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError as e:
        pytest.skip(f"mknod is not permitted here: {e}")
    code, _, err = run(capsys, "generate", "s.toml", "-o", "null")
    assert code == 2
    error_line(err, r"output folder: 'null' is a device node; .*")
    st = (project / "null").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", "null", "s.toml"]


def test_output_below_a_file_and_bad_names(project, capsys):
    """`-o afile/sub` and a 300-character name ended in tracebacks."""
    (project / "afile").write_text("x")
    code, _, err = run(capsys, "generate", "s.toml", "-o", "afile/sub")
    assert code == 2
    error_line(err, r"output folder: 'afile/sub' lies below '.*afile', which is an existing "
                    r"file, not a folder")
    long = "n" * 300
    code, _, err = run(capsys, "generate", "s.toml", "-o", long)
    assert code == 2
    line = error_line(err, r"output folder: .* has 300 bytes; allowed: at most \d+ on this "
                           r"file system")
    assert len(line) < 400
    assert sorted(p.name for p in project.iterdir()) == ["afile", "notes.txt", "s.toml"]


def test_output_symlink_is_refused(project, capsys):
    (project / "real").mkdir()
    (project / "link").symlink_to(project / "real")
    code, _, err = run(capsys, "generate", "s.toml", "-o", "link")
    assert code == 2
    error_line(err, r"output folder: 'link' is a symbolic link; .*")
    assert list((project / "real").iterdir()) == []


def test_read_only_location(project, capsys, monkeypatch):
    """A read-only file system (simulated: the probe says so) and, for a non-root user, a
    folder without write permission: one line, before any work."""
    from tessera import outpaths
    monkeypatch.setattr(outpaths, "_read_only", lambda folder: True)
    monkeypatch.setattr("tessera.generators.generate.build_core", never("build_core"))
    code, _, err = run(capsys, "generate", "s.toml", "-o", "out")
    assert code == 2
    error_line(err, r"output folder: '.*project' is on a read-only file system; choose another "
                    r"location")
    monkeypatch.undo()
    if os.geteuid() != 0:
        locked = project / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            code, _, err = run(capsys, "generate", "s.toml", "-o", "locked/out")
            assert code == 2
            error_line(err, r"output folder: '.*locked' is not writable; .*")
        finally:
            locked.chmod(0o755)
    assert not (project / "out").exists()


def test_regress_in_read_only_working_directory(project, capsys, monkeypatch):
    from tessera import outpaths
    monkeypatch.setattr(outpaths, "_read_only", lambda folder: True)
    monkeypatch.setattr("tessera.generators.regress.run_regression", never("run_regression"))
    code, _, err = run(capsys, "regress", "s.toml")
    assert code == 2
    error_line(err, r"regression folder: .* is on a read-only file system; .*")


def test_build_refuses_foreign_folder_in_one_line(project, capsys, monkeypatch):
    """`tessera build` refused a non-empty folder, but with a traceback."""
    (project / "s.toml").write_text(S_TOML + '[host]\ninterface = "uart"\n')
    (project / "mine").mkdir()
    (project / "mine" / "thesis.tex").write_text("precious")
    monkeypatch.setattr("tessera.fpga.build.build_bitstream", never("build_bitstream"))
    code, _, err = run(capsys, "build", "s.toml", "--board", "icebreaker", "-o", "mine")
    assert code == 2
    error_line(err, r"build folder: 'mine' is not empty and holds no build_result\.json "
                    r"written by tessera .*")
    (project / "afile").write_text("x")
    code, _, err = run(capsys, "build", "s.toml", "--board", "icebreaker", "-o", "afile")
    assert code == 2
    error_line(err, r"build folder: 'afile' is an existing file; .*")
    assert (project / "mine" / "thesis.tex").read_text() == "precious"


# -- no traceback ---------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, pattern", [
    (b"[core]\nname = \"\xff\xfe\"\n",
     r"config: 'c\.toml' is not UTF-8 text \(byte 0xff at offset 15\); .*"),
    (b"[core]\nboards = " + b"[" * 2000 + b"]" * 2000 + b"\n",
     r"config: 'c\.toml' is not usable TOML: arrays or tables nested too deeply; .*"),
    (b"[core]\nclock_mhz = {a = " * 600 + b"1" + b"}" * 600 + b"\n",
     r"config: 'c\.toml' is not (usable|valid) TOML: .*"),
    (b"[core]\nclock_mhz = " + b"7" * 4301 + b"\n",
     r"config: 'c\.toml' is not usable TOML: Exceeds the limit .*"),
    (b'[core]\nname = "abc\\n"\n',
     r"core\.name: 'abc\\n' is not a valid module name; .*"),
    (b'[pe]\nkind = ["int"]\n', r"pe\.kind: \['int'\] is an array; allowed: one of .*"),
    (b'[pe]\nkind = "fpmac"\ninput_format = ["fp16"]\n',
     r"pe\.input_format: \['fp16'\] (is an array; allowed: a string|is unknown; allowed: .*)"),
    (b'[core]\nname = "' + b"x" * 100_000 + b'"\n',
     r"core\.name: 'xxx.*\(100002 characters\) is too long; allowed: at most 256 characters"),
    (b"[memory]\na_depth = " + b"9" * 4000 + b"\n",
     r"memory\.a_depth: 9{5,}.* is out of range; allowed: the key's range in docs/config\.md "
     r"\(under 10\*\*18 in any case\)"),
], ids=["not-utf8", "nested-arrays", "nested-tables", "huge-int", "name-newline", "kind-list",
        "format-list", "100kB-value", "long-int"])
def test_bad_config_files(raw, pattern, project, capsys):
    (project / "c.toml").write_bytes(raw)
    code, out, err = run(capsys, "generate", "c.toml", "-o", "out")
    assert code == 2 and out == ""
    line = error_line(err, pattern)
    assert len(line) <= cli.MESSAGE_LIMIT + len("tessera: error: ")
    assert not (project / "out").exists()


def test_config_name_with_newline_is_one_line(project, capsys):
    """An error for a config file whose name contains a newline was cut at the newline."""
    name = "bad\nname.toml"
    (project / name).write_text("[array]\nrows = 0\n")
    code, _, err = run(capsys, "generate", name, "-o", "out")
    assert code == 2
    error_line(err, r"array\.rows: 0 is out of range; allowed: 1\.\.64")
    (project / name).write_text("[array\n")
    code, _, err = run(capsys, "generate", name, "-o", "out")
    assert code == 2
    error_line(err, r"config: 'bad\\nname\.toml' is not valid TOML: .*")


def test_lint_failure_exits_2(project, capsys, monkeypatch):
    """`generate --lint` on a lint failure raised TypeError joining LintMessage objects."""
    from tessera.sim import verilator
    msgs = [verilator.LintMessage(severity="Warning", rule="VARHIDDEN", file="s.v", line=3,
                                  column=1, text="Declaration of signal hides declaration"),
            verilator.LintMessage(severity="Warning", rule="UNUSED", file="s.v", line=9,
                                  column=2, text="Signal is not used")]

    def failing(paths, top, **kw):
        return verilator.LintResult(ok=False, messages=msgs, command=[], returncode=1,
                                    output="")
    monkeypatch.setattr(verilator, "lint", failing)
    code, out, err = run(capsys, "generate", "s.toml", "-o", "out", "--lint")
    assert code == 2
    error_line(err, r"lint: '.*s\.v' is not lint-clean: %Warning-VARHIDDEN: s\.v:3:1: "
                    r"Declaration of signal hides declaration \(and 1 more\)")


def test_regress_junit_folder_refused_before_the_run(project, capsys, monkeypatch):
    """`regress --junit` naming an existing folder failed after the whole run."""
    (project / "reports").mkdir()
    monkeypatch.setattr("tessera.sim.runner.run_cocotb", never("run_cocotb"))
    monkeypatch.setattr("tessera.generators.regress.generate_core", never("generate_core"))
    code, _, err = run(capsys, "regress", "s.toml", "--junit", "reports")
    assert code == 2
    error_line(err, r"JUnit file: 'reports' is a folder; allowed: a new file or one tessera "
                    r"wrote")
    (project / "other.xml").write_text("<testsuites/>")
    code, _, err = run(capsys, "regress", "s.toml", "--junit", "other.xml")
    assert code == 2
    error_line(err, r"JUnit file: 'other\.xml' is an existing file tessera did not write; .*")


def test_build_bad_arguments_fail_first(project, capsys, monkeypatch):
    """`build` with `--seed -1`, `baud = 2500000` or AMARANTH_synth_opts set: one line, before
    any elaboration."""
    monkeypatch.setattr("tessera.fpga.build.build_bitstream", never("build_bitstream"))
    monkeypatch.setattr("tessera.generators.assemble.build_core", never("build_core"))
    uart = S_TOML + '[host]\ninterface = "uart"\n'
    (project / "u.toml").write_text(uart)
    with pytest.raises(SystemExit) as exc:
        main(["build", "u.toml", "--board", "icebreaker", "--seed", "-1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(r"^tessera build: error: argument --seed: -1 is out of range; allowed: "
                     r"0\.\.2147483647$", err, re.M), err
    # At the board's 12 MHz (the default clock_mhz, 25, has a PLL make 25 MHz on the
    # iCEBreaker, from which 2.5 Mbaud is exact).
    (project / "b.toml").write_text(uart.replace('name = "s"', 'name = "s"\nclock_mhz = 12.0')
                                    + "baud = 2500000\n")
    code, _, err = run(capsys, "build", "b.toml", "--board", "icebreaker")
    assert code == 2
    error_line(err, r"host\.baud: 2500000 cannot link the icebreaker: the board top makes "
                    r"2400000 baud \(5 cycles per bit\) and the FTDI FT2232H 2526316: .*")
    monkeypatch.setenv("AMARANTH_synth_opts", "-abc9")
    code, _, err = run(capsys, "build", "u.toml", "--board", "icebreaker")
    assert code == 2
    error_line(err, r"environment variable AMARANTH_synth_opts is set and would override "
                    r"tessera's options; .*")


def test_build_refuses_a_core_too_big_for_the_board(capsys, monkeypatch, tmp_path):
    """A preset too big for the named board is refused before any build."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tessera.fpga.build.build_bitstream", never("build_bitstream"))
    code, _, err = run(capsys, "build", "ulx3s", "--board", "icebreaker")
    assert code == 2
    error_line(err, r"build: tessera_ulx3s cannot fit the icebreaker: it needs at least 144 "
                    r"SB_MAC16 DSPs and the iCE40UP5K has 8 .*")
    assert list(tmp_path.iterdir()) == []


def test_program_wrong_suffix(capsys, tmp_path):
    (tmp_path / "core.bit").write_bytes(b"\0")
    code, _, err = run(capsys, "program", tmp_path / "core.bit", "--board", "icebreaker",
                       "--dry-run")
    assert code == 2
    error_line(err, r"program: bitstream '.*core\.bit' is not a \.bin file; allowed for "
                    r"icebreaker: .*")


@pytest.mark.parametrize("gemm, bad", [(["0", "0", "0"], "0"), (["-1", "4", "4"], "-1"),
                                       (["4", "x", "4"], "'x'")])
def test_run_gemm_dimensions(gemm, bad, capsys):
    """`run --gemm 0 0 0` and `--gemm -1 4 4` ended in tracebacks."""
    with pytest.raises(SystemExit) as exc:
        main(["run", "icebreaker", "--board", "icebreaker", "--port", "/nonexistent",
              "--gemm", *gemm])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(rf"^tessera run: error: argument --gemm: {re.escape(bad)} ", err, re.M), err


def test_report_failure_says_why(project, capsys, monkeypatch):
    """`report` failed with `RuntimeError: reference GEMM failed on the RTL`; the reason was
    only in the JUnit XML."""
    from tessera.generators import report

    def failed(cfg, **kw):
        return {"ok": False, "junit": "build/x/results.xml", "gemms": [], "tests": [
            {"name": "tessera.tb.core_cocotb.test_gemm_reference_64", "status": "failed",
             "message": "ValueError: K=64 does not fit scratchpads of depth 16/16\nmore"}]}
    monkeypatch.setattr(report, "run_regression", failed)
    monkeypatch.setattr(cli, "_need_verilator", lambda: None)
    code, _, err = run(capsys, "report", "s.toml")
    assert code == 2
    error_line(err, r"report: tessera\.tb\.core_cocotb\.test_gemm_reference_64 failed on the "
                    r"RTL of s: ValueError: K=64 does not fit scratchpads of depth 16/16; JUnit: "
                    r"build/x/results\.xml")


def test_unmappable_gemm_is_refused_before_verilator(project, capsys, monkeypatch):
    """A layer that cannot be mapped onto the scratchpads is refused from the config alone."""
    from tessera.sim.engines import gemm_os

    real = gemm_os.GemmMapper.plan

    def no_fit(self, m, n, k):
        if k == 1:                      # the config's own check (one word of K fits)
            return real(self, m, n, k)
        raise ValueError(f"K={k} does not fit scratchpads of depth 16/16 and this core cannot "
                         f"accumulate across RUNs")
    monkeypatch.setattr(gemm_os.GemmMapper, "plan", no_fit)
    monkeypatch.setattr(cli, "_need_verilator", never("the Verilator check"))
    for command in ("report", "regress"):
        code, _, err = run(capsys, command, "s.toml")
        assert code == 2
        error_line(err, rf"{command}: a \d+x\d+x\d+ GEMM cannot run on s: K=\d+ does not fit "
                        r"scratchpads .*")


def test_internal_error_is_one_line_with_a_hint(capsys, monkeypatch):
    def bug(args):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(cli, "cmd_presets", bug)
    code, out, err = run(capsys, "presets")
    assert code == cli.EXIT_INTERNAL
    assert err == ("tessera: internal error (a bug in tessera): ZeroDivisionError: division by "
                   "zero; run again with --debug (or TESSERA_DEBUG=1) for the traceback\n")
    code, out, err = run(capsys, "--debug", "presets")
    assert code == cli.EXIT_INTERNAL
    assert err.startswith("Traceback (most recent call last):")
    assert err.splitlines()[-1] == ("tessera: internal error (a bug in tessera): "
                                    "ZeroDivisionError: division by zero")
    code, out, err = run(capsys, "presets", "--debug")
    assert code == cli.EXIT_INTERNAL and "Traceback" in err


def test_os_errors_are_one_line(project, capsys, monkeypatch):
    """Disk full and the like while writing: one line naming the file and the reason."""
    real = pathlib.Path.write_text

    def full(self, *a, **k):
        if self.name.endswith(".v"):
            raise OSError(28, "No space left on device", str(self))
        return real(self, *a, **k)
    monkeypatch.setattr(pathlib.Path, "write_text", full)
    code, _, err = run(capsys, "generate", "s.toml", "-o", "out")
    assert code == 2
    error_line(err, r"'.*project/out/s\.v': No space left on device")
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", "s.toml"]


# -- configs mean what they say ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["clk", "rst", "busy", "error", "i__valid", "module", "wire"])
def test_core_names_that_cannot_work(name, capsys, tmp_path):
    """Core names clk, rst, busy, error passed validation and made Verilator fail."""
    d = {"core": {"name": name}, "array": {"rows": 1, "cols": 1},
         "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}}
    with pytest.raises(ConfigError, match=rf"^core\.name: '{name}' is (the name of one of the "
                                          r"core's ports|a Verilog keyword|a name with '__')"):
        config_from_dict(d)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_core_names_of_signals(tmp_path):
    """Names of signals inside the core (a, b, valid, first, last, w_en0, w_addr, r_data0,
    out_valid, out_data gave VARHIDDEN): each is rejected naming core.name, before anything is
    written, or the core it names is lint-clean."""
    from tessera.generators.generate import generate_core
    from tessera.sim.verilator import lint
    outcomes = {}
    for name in ("a", "b", "valid", "first", "last", "w_en0", "w_addr", "r_data0", "out_valid",
                 "out_data"):
        cfg = config_from_dict({"core": {"name": name}, "array": {"rows": 1, "cols": 2},
                                "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}})
        out = tmp_path / name
        try:
            m = generate_core(cfg, out)
        except ConfigError as e:
            assert re.fullmatch(rf"core\.name: '{name}' is also the name of a port or signal "
                                r"inside the generated Verilog, .*; allowed: another name, .*",
                                str(e)), str(e)
            assert not out.exists()
            outcomes[name] = "rejected"
            continue
        res = lint([out / m["verilog"]], m["top"])
        assert res.ok, res.summary()
        outcomes[name] = "lint-clean"
    assert outcomes["a"] == outcomes["valid"] == outcomes["w_addr"] == "rejected"


def _golden_gemm(cfg, a, b):
    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.driver import TesseraDriver
    return asyncio.run(TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg).gemm(a, b))


@pytest.mark.parametrize("a_bits, b_bits", [(32, 32), (8, 8), (2, 2)])
def test_64_bit_accumulators(a_bits, b_bits):
    """acc_bits = 64: the golden core and the GEMM reference raised OverflowError on the first
    RUN. Both now equal exact Python-integer arithmetic, wrapped to 64 bits."""
    from tessera.sim.workloads import gemm_operands, reference_gemm
    cfg = config_from_dict({"array": {"rows": 2, "cols": 2},
                            "pe": {"a_bits": a_bits, "b_bits": b_bits, "acc_bits": 64},
                            "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}})
    for kind in ("min", "extremes", "random"):
        a, b = gemm_operands(cfg, 3, 3, 37, kind=kind, seed=5)
        got, stats = _golden_gemm(cfg, a, b)
        ref = reference_gemm(cfg, a, b, k_split=stats.k_split)
        sa = [[int(v) - (1 << a_bits) * (int(v) >> (a_bits - 1)) for v in row] for row in a]
        sb = [[int(v) - (1 << b_bits) * (int(v) >> (b_bits - 1)) for v in row] for row in b]
        exact = np.array([[sum(sa[i][t] * sb[t][j] for t in range(37)) % (1 << 64)
                           for j in range(3)] for i in range(3)], dtype=np.uint64)
        np.testing.assert_array_equal(got, exact)
        np.testing.assert_array_equal(ref, exact)


def test_64_bit_accumulator_rtl_equals_golden():
    """... and the RTL (Amaranth simulation of a 1x1 core) gives the same bits."""
    from tessera.generators.assemble import build_core
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.pysim import run_with_driver
    from tessera.sim.workloads import gemm_operands
    cfg = config_from_dict({"array": {"rows": 1, "cols": 1},
                            "pe": {"a_bits": 32, "b_bits": 32, "acc_bits": 64},
                            "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}})
    a, b = gemm_operands(cfg, 2, 1, 20, kind="min", seed=1)

    async def body(t):
        return await TesseraDriver(t, cfg, poll_cycles=8).gemm(a, b)
    got, _ = run_with_driver(build_core(cfg), body)
    np.testing.assert_array_equal(got, _golden_gemm(cfg, a, b)[0])
    assert int(got[0, 0]) == (20 * (1 << 62)) % (1 << 64)


def test_c_depth_must_hold_a_tile():
    with pytest.raises(ConfigError, match=r"^memory\.c_depth: 16 cannot hold one tile of results "
                                          r"\(32 words, one per array row\); allowed: "
                                          r"32\.\.32768 \(at least array\.rows\)$"):
        config_from_dict({"array": {"rows": 32, "cols": 2}, "memory": {"c_depth": 16}})
    assert config_from_dict({"array": {"rows": 16, "cols": 2},
                             "memory": {"c_depth": 16}}).memory.c_depth == 16


def test_named_board_must_fit():
    """boards = ["icebreaker"] was accepted with more than twice the board's block RAM."""
    big = {"core": {"boards": ["icebreaker"]}, "array": {"rows": 2, "cols": 2},
           "memory": {"a_depth": 8192, "b_depth": 8192, "c_depth": 4096}}
    with pytest.raises(ConfigError, match=r"^core\.boards: 'icebreaker' cannot hold this core: it "
                                          r"needs at least \d+ EBR block RAMs and the iCE40UP5K "
                                          r"has 30 .*"):
        config_from_dict(big)
    with pytest.raises(ConfigError, match=r"^core\.boards: 'icebreaker' cannot hold this core: it "
                                          r"needs at least 64 SB_MAC16 DSPs"):
        config_from_dict({"core": {"boards": ["icebreaker"]}})
    # Every shipped preset fits the boards it names (the estimate is a lower bound).
    from tessera.fpga.boards import estimate
    ice = estimate(load_config("icebreaker"), "icebreaker")
    assert (ice.dsps, ice.brams) == (8, 16)        # built: 8 DSPs, 16 EBR (4 are the link's)
    ulx = estimate(load_config("ulx3s"), "ulx3s-85f")
    assert (ulx.dsps, ulx.brams) == (144, 38)      # built: 146 DSPs, 38 DP16KD (4: the link's)
    assert ice.luts <= 4341 and ulx.luts <= 18523  # the measured LUTs (README)
    # The framed link's share: the board top around an echo core (1201 LCs on the UP5K).
    assert 1000 <= estimate(load_config("icebreaker"), "icebreaker").luts - 8 * 32 <= 1201


def test_named_board_baud():
    with pytest.raises(ConfigError, match=r"^host\.baud: 2500000 cannot link board "
                                          r"'icebreaker': the board top makes 2400000 baud \(5 "
                                          r"cycles per bit\) and the FTDI FT2232H 2526316: "
                                          r"-5\.00% apart, outside the board top receiver's "
                                          r"-4\.00% \.\. \+4\.44% \(the core clock is 12 MHz\); "
                                          r"allowed: a rate the FTDI FT2232H and the board top "
                                          r"share, at most 3000000 here$"):
        config_from_dict({"core": {"boards": ["icebreaker"], "clock_mhz": 12.0},
                          "array": {"rows": 2, "cols": 2},
                          "host": {"interface": "uart", "baud": 2500000}})
    # The core clock runs the UART: at the default 25 MHz (a PLL on the iCEBreaker) 2.5 Mbaud
    # is 10 cycles per bit and the FT2232H's 12 MHz / 4.8, both exact.
    config_from_dict({"core": {"boards": ["icebreaker"]}, "array": {"rows": 2, "cols": 2},
                      "host": {"interface": "uart", "baud": 2500000}})


def test_folder_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    """docs/config.md said a folder named like a preset hides the preset; it does not."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "icebreaker").mkdir()
    assert load_config("icebreaker").source == "preset:icebreaker"
    (tmp_path / "int8-4x4").write_text("[array]\nrows = 3\n")      # a file does
    assert load_config("int8-4x4").rows == 3
    doc = (REPO / "docs" / "config.md").read_text()
    assert "hides that preset" not in doc


# -- options and manifests say what the hardware does --------------------------------------------
def test_no_abbreviations(tmp_path, capsys):
    """`tessera unit fpmul --format fp8_e4m3 --out fp16 -o DIR`: argparse took `--out` as
    `--output` and the result format stayed fp8_e4m3."""
    out = tmp_path / "mul"
    code, _, err = run(capsys, "unit", "fpmul", "--format", "fp8_e4m3", "--out", "fp16",
                       "-o", out)
    assert code == 0, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["options"]["out"] == "fp16"
    assert m["formats"]["result"]["name"] == "fp16"
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2
    assert "unrecognized arguments: --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["regress", "--jun", "x.xml"])
    assert "unrecognized arguments: --jun" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_fpconv_manifest_overflow(tmp_path):
    """`tessera unit fpconv ... --overflow saturate`: the manifest said "inf"."""
    from tessera.generators.units import generate_unit
    m = generate_unit("fpconv", {"src": "fp16", "dst": "fp8_e5m2", "overflow": "saturate"},
                      tmp_path / "c1")
    assert m["formats"]["result"]["overflow"] == "saturate"
    m = generate_unit("fpconv", {"src": "fp16", "dst": "fp8_e5m2"}, tmp_path / "c2")
    assert m["formats"]["result"]["overflow"] == "inf"
    m = generate_unit("fpadd", {"format": "bf16", "ftz": True, "sr_bits": 4}, tmp_path / "a")
    assert m["formats"]["result"]["ftz"] is True
    assert (m["formats"]["result"]["rounding"], m["formats"]["result"]["sr_bits"]) == \
        ("stochastic", 4)


def test_manifest_doc_covers_every_unit(capsys):
    """docs/manifest.md documented 3 of the 8 units: every unit `tessera unit --list` shows
    has a row in its units table and a paragraph on its formats."""
    code, out, _ = run(capsys, "unit", "--list")
    assert code == 0
    units = re.findall(r"^(\w+): ", out, re.M)
    assert len(units) >= 8
    doc = (REPO / "docs" / "manifest.md").read_text()
    table = doc[doc.index("The units (every unit"):]
    missing = [u for u in units if not re.search(rf"^\| `{u}` \|", table, re.M)]
    assert not missing, f"docs/manifest.md has no row for {missing}"


def test_run_uses_host_baud(capsys, tmp_path):
    """`tessera run` once ignored host.baud. On the golden virtual board the line is modelled
    at the config's baud: the same GEMM takes 12x as long at 9600 as at 115200."""
    from tests.test_cli_run import gemm_ms, preset_text
    for name, baud in (("slow", 9600), ("fast", 115200)):
        toml = (preset_text("icebreaker").replace('name = "tessera_icebreaker"',
                                                  f'name = "{name}_link"')
                .replace("baud = 3000000", f"baud = {baud}"))
        (tmp_path / f"{name}.toml").write_text(toml)
    code, fast, err = run(capsys, "run", tmp_path / "fast.toml", "--board", "icebreaker",
                          "--port", "sim:golden", "--gemm", "16", "16", "16")
    assert code == 0, err
    code, slow, err = run(capsys, "run", tmp_path / "slow.toml", "--board", "icebreaker",
                          "--port", "sim:golden", "--gemm", "16", "16", "16")
    assert code == 0, err
    assert gemm_ms(slow) / gemm_ms(fast) == pytest.approx(115200 / 9600, rel=0.03)


# Slow (a Verilator build): malformed commands stay in the default suite in every preset
# regression (test_malformed_commands) and tests/test_fuzz_protocol.py.
@pytest.mark.slow
def test_malformed_commands_do_not_race_small_scratchpads(tmp_path):
    """`regress --quick` failed correct cores with small scratchpads (a 3x2 int core with
    scratchpads 17/33/19): test_malformed_commands expected BUSY from a RUN that had already
    finished. Its BUSY checks now send each command in one burst with a RUN the cycle model
    says is still running; here on Verilator, the tier that raced."""
    from tessera.generators.regress import run_regression
    cfg = config_from_dict({"core": {"name": "race_core"}, "array": {"rows": 3, "cols": 2},
                            "memory": {"a_depth": 17, "b_depth": 33, "c_depth": 19}})
    s = run_regression(cfg, out_dir=tmp_path / "reg", progress=lambda m: None,
                       test_filter="test_malformed_commands",
                       cases=[{"name": "one", "m": 1, "n": 1, "k": 1, "kind": "random",
                               "seed": 1}])
    assert [(t["name"].rsplit(".", 1)[-1], t["status"]) for t in s["tests"]] == \
        [("test_malformed_commands", "passed")], s["tests"]


def test_run_port_must_be_a_path(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "icebreaker", "--board", "icebreaker", "--port", ""])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "argument --port: '' is not a serial device path" in err


def test_demo_errors_are_one_line(capsys, tmp_path, monkeypatch):
    """`make demo` with a bad config ends in one line too."""
    from tessera.generators import demo
    monkeypatch.chdir(tmp_path)
    assert demo.main(["nope"]) == 2
    error_line(capsys.readouterr().err, r"config: 'nope' is neither a file nor a preset; .*")
