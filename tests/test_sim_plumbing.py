"""Tests of the simulation plumbing: Verilator environment, lint waivers, cocotb runner, drivers.

Verilator compiles dominate the cost (~25 s each), so the suite compiles exactly three designs
into one build root shared by all pytest-xdist workers of a session (the runner's per-key lock
makes concurrent workers reuse one build instead of compiling twice).
"""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tessera.sim import runner as sim_runner
from tessera.sim.runner import BuildError, merge_junit, parse_junit, run_cocotb
from tessera.sim.verilator import (
    DEFAULT_WAIVERS, lint, use_verilator_env, verilator_env, verilator_root, verilator_version,
)
from tessera.tb.selftest_design import EchoPlusOne, LintSampler, to_verilog

ROOT = Path(__file__).resolve().parents[1]


TOP = "tessera_selftest_echo"
MODULE = "tessera.tb.selftest_cocotb"
N_SELFTESTS = 16


def _quiet(_msg):
    pass


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory, worker_id):
    """A directory shared by all xdist workers of this session."""
    base = tmp_path_factory.getbasetemp()
    root = base if worker_id == "master" else base.parent
    path = root / "sim-plumbing"
    path.mkdir(exist_ok=True)
    return path


def _write_echo(directory, increment):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{TOP}.v"
    text = to_verilog(EchoPlusOne(increment=increment), TOP)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


@pytest.fixture(scope="session")
def echo_v(shared_root):
    return _write_echo(shared_root / "v-inc1", 1)


@pytest.fixture(scope="session")
def build_root(shared_root):
    return shared_root / "build"


@pytest.fixture(scope="session")
def first_run(echo_v, build_root):
    """Full self-test run on the increment-1 design (compiles it unless another worker did)."""
    return run_cocotb(verilog=[echo_v], top=TOP, test_module=MODULE, build_root=build_root,
                      progress=_quiet, timeout_s=120)


# --- Verilator environment -------------------------------------------------------------------

def test_verilator_env_from_bare_path():
    env = verilator_env({"PATH": "/usr/bin:/bin"})
    root = verilator_root()
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["PATH"].split(os.pathsep) == [str(root / "bin"), "/usr/bin", "/bin"]
    assert "--std=c++20" in env["CXXFLAGS"].split()
    # Applying twice does not duplicate anything; the cocotb-breaking flag is dropped.
    again = verilator_env({**env, "CXXFLAGS": env["CXXFLAGS"] + " -DVL_TIME_CONTEXT -O1"})
    assert again["PATH"] == env["PATH"]
    assert again["CXXFLAGS"].split() == ["--std=c++20", "-O1"]
    target = {"PATH": "/bin", "CXXFLAGS": "-g"}
    assert use_verilator_env(target) is target
    assert target["VERILATOR_ROOT"] == str(root) and target["CXXFLAGS"] == "--std=c++20 -g"
    proc = subprocess.run(["verilator", "--version"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "rev" in proc.stdout, proc.stdout


def test_lint_and_version_in_child_with_bare_path(tmp_path, echo_v):
    """A process whose PATH holds only /usr/bin:/bin can still lint (no venv activation)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from sim.verilator import lint, verilator_version;"
            "r = lint([sys.argv[2]], sys.argv[3]); print(verilator_version()); r.check()")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT), str(echo_v), TOP],
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"\d+\.\d+\.\d+ \(", proc.stdout)


def test_verilator_version():
    assert verilator_version().startswith("5.48")


# --- Verilog generation and lint -------------------------------------------------------------

def test_verilog_is_deterministic():
    assert to_verilog(EchoPlusOne(), TOP) == to_verilog(EchoPlusOne(), TOP)
    assert to_verilog(LintSampler(), "tessera_ls") == to_verilog(LintSampler(), "tessera_ls")
    assert to_verilog(EchoPlusOne(increment=2), TOP) != to_verilog(EchoPlusOne(), TOP)


def _waived_rules():
    text = DEFAULT_WAIVERS.read_text()
    return set(re.findall(r"^lint_off -rule (\w+) -file \"\*\.v\"$", text, re.MULTILINE))


@pytest.fixture(scope="module")
def sample_designs(tmp_path_factory):
    d = tmp_path_factory.mktemp("lint")
    out = []
    for name, comp in (("tessera_echo", EchoPlusOne()), ("tessera_ls", LintSampler())):
        p = d / f"{name}.v"
        p.write_text(to_verilog(comp, name))
        out.append((p, name))
    return out


def test_generated_verilog_is_lint_clean(sample_designs):
    for path, top in sample_designs:
        result = lint([path], top)
        assert result.ok, result.summary()
        assert result.messages == []


def test_every_waiver_is_needed(sample_designs):
    """Without the waiver file, exactly the waived rules fire on representative designs."""
    fired = set()
    for path, top in sample_designs:
        result = lint([path], top, waivers=None)
        assert not result.ok
        assert all(m.severity == "Warning" and m.file == str(path) for m in result.messages)
        fired |= set(result.rules)
    assert fired == _waived_rules()


def test_waivers_do_not_cover_handwritten_sv(tmp_path, sample_designs):
    path, top = sample_designs[1]
    sv = tmp_path / f"{top}.sv"
    sv.write_text(path.read_text())
    result = lint([sv], top)
    assert not result.ok
    assert {"WIDTHEXPAND", "PROCASSINIT"} <= set(result.rules)


def test_lint_reports_real_errors(tmp_path):
    bad = tmp_path / "tessera_bad.v"
    bad.write_text("module tessera_bad(input clk, output reg [3:0] q);\n"
                   "  always @(posedge clk) q <= undeclared_signal;\nendmodule\n")
    result = lint([bad], "tessera_bad")
    assert not result.ok
    err = [m for m in result.messages if m.severity == "Error"]
    assert err and err[0].line == 2 and "undeclared_signal" in err[0].text
    with pytest.raises(Exception, match="undeclared_signal"):
        result.check()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        lint([tmp_path / "missing.v"], "x")


# --- cocotb runner ---------------------------------------------------------------------------

def test_selftests_pass_and_counts_are_parsed(first_run):
    assert first_run.ok, [t for t in first_run.tests if t.status != "passed"]
    assert (first_run.passed, first_run.failed, first_run.skipped) == (N_SELFTESTS, 0, 0)
    names = [name for name, _status, _seconds, _msg in first_run.tests]
    assert f"{MODULE}.echo_full_rate" in names
    assert sum("echo_with_pauses" in n for n in names) == 9
    assert first_run.results_xml.is_file() and first_run.waves is None
    assert first_run.build_dir == first_run.run_dir.parent.parent
    log = first_run.log.read_text()
    rate = re.search(r"THROUGHPUT \d+ bytes in [\d.]+ s = (\d+) bytes/s", log)
    assert rate and int(rate.group(1)) > 2000, "CocotbByteTransport is too slow"


def test_second_run_reuses_the_build(first_run, echo_v, build_root):
    again = run_cocotb(verilog=[echo_v], top=TOP, test_module=MODULE, build_root=build_root,
                       progress=_quiet, test_filter=r"echo_full_rate$")
    assert again.rebuilt is False
    assert again.build_dir == first_run.build_dir
    assert again.run_dir != first_run.run_dir
    assert (again.passed, again.failed) == (1, 0)
    marker = (again.build_dir / "tessera-build.json").read_text()
    compile_s = float(re.search(r'"seconds": ([\d.]+)', marker).group(1))
    assert again.seconds < compile_s / 3, (again.seconds, compile_s)
    # The binary is untouched: no compile step ran.
    exe = again.build_dir / TOP
    assert exe.stat().st_mtime < again.run_dir.stat().st_mtime


def test_changed_verilog_rebuilds(first_run, shared_root, build_root):
    v2 = _write_echo(shared_root / "v-inc2", 2)
    assert v2.name == f"{TOP}.v"
    run = run_cocotb(verilog=[v2], top=TOP, test_module=MODULE, build_root=build_root,
                     progress=_quiet, test_filter=r"echo_(full_rate|with_pauses.*)$",
                     extra_env={"TESSERA_SELFTEST_INCREMENT": "2"}, timeout_s=120)
    assert run.rebuilt is True
    assert run.build_dir != first_run.build_dir
    assert (run.passed, run.failed) == (10, 0)


def test_waves_produce_vcd(echo_v, shared_root):
    run = run_cocotb(verilog=[echo_v], top=TOP, test_module=MODULE, waves=True,
                     build_root=shared_root / "build-waves", progress=_quiet,
                     test_filter=r"echo_full_rate$", timeout_s=120)
    assert run.passed == 1
    assert run.waves is not None and run.waves.suffix in (".vcd", ".fst")
    if not sim_runner.fst_available():
        assert run.waves.name == "dump.vcd"
        head = run.waves.read_text(errors="replace")[:4000]
        assert "$enddefinitions" in head and "i__payload" in head


def test_deliberate_failure_is_reported(first_run, echo_v, build_root, tmp_path):
    out = tmp_path / "junit" / "fail.xml"
    run = run_cocotb(verilog=[echo_v], top=TOP, test_module=MODULE, build_root=build_root,
                     progress=_quiet, test_filter=r"deliberate_failure$", results_xml=out,
                     extra_env={"TESSERA_SELFTEST_FAIL": "1"})
    assert (run.passed, run.failed) == (0, 1)
    assert not run.ok
    name, status, _seconds, message = run.tests[0]
    assert name.endswith("deliberate_failure") and status == "failed"
    assert "deliberate failure" in message or "AssertionError" in message
    assert run.results_xml == out.resolve() and out.is_file()
    assert parse_junit(out) == run.tests

    merged = merge_junit([first_run.results_xml, out], tmp_path / "merged.xml")
    root = ET.parse(merged).getroot()
    assert root.tag == "testsuites"
    assert root.get("tests") == str(N_SELFTESTS + 1) and root.get("failures") == "1"
    statuses = [t.status for t in parse_junit(merged)]
    assert statuses.count("failed") == 1 and statuses.count("passed") == N_SELFTESTS


def test_simulation_timeout(first_run, echo_v, build_root):
    with pytest.raises(TimeoutError, match="timeout_s=1"):
        run_cocotb(verilog=[echo_v], top=TOP, test_module=MODULE, build_root=build_root,
                   progress=_quiet, test_filter=r"transport_throughput$", timeout_s=1,
                   extra_env={"TESSERA_SELFTEST_BYTES": "100000000"})


def test_bad_arguments_are_named(tmp_path, echo_v):
    with pytest.raises(FileNotFoundError, match="missing.v"):
        run_cocotb(verilog=[tmp_path / "missing.v"], top=TOP, test_module=MODULE,
                   build_root=tmp_path, progress=_quiet)
    with pytest.raises(ValueError, match="no_such_module"):
        run_cocotb(verilog=[echo_v], top=TOP, test_module="tessera.tb.no_such_module",
                   build_root=tmp_path, progress=_quiet)
    with pytest.raises(ValueError, match="waves"):
        run_cocotb(verilog=[echo_v], top=TOP, test_module=MODULE, waves="ghw",
                   build_root=tmp_path, progress=_quiet)


def test_build_failure_leaves_nothing(tmp_path):
    bad = tmp_path / "tessera_broken.v"
    bad.write_text("module tessera_broken(input clk);\n  wire x = nope;\nendmodule\n")
    root = tmp_path / "build"
    with pytest.raises(BuildError, match="nope"):
        run_cocotb(verilog=[bad], top="tessera_broken", test_module=MODULE, build_root=root,
                   progress=_quiet)
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []
