"""Deploying over the framed link: the virtual boards (sim:golden, sim:verilator behind a pty),
GEMM and network runs with their figures, and every error a user can cause, each one line."""

import asyncio
import os
import pty
import threading
import tty

import numpy as np
import pytest

from tessera.fpga import deploy
from tessera.fpga.deploy import DeployError
from tessera.fpga.link import SerialPipe
from tessera.generators.config import load_config
from tessera.sim.framing import LinkCorrupt, LinkError, LinkTimeout, NoisyPipe


@pytest.fixture(scope="module")
def ice():
    return load_config("icebreaker")


@pytest.fixture(scope="module")
def mlp(ice):
    from tessera.generators.infer import compile_model, load_data
    calib, x, y = load_data("digits")
    q, _, _ = compile_model("digits-mlp", ice, calib)
    return q, x, y


def _one_line(e):
    text = str(e)
    assert "\n" not in text and len(text) < 400, text
    return text


# --- the virtual boards ------------------------------------------------------------------------

def test_gemm_on_the_golden_board(ice):
    r = deploy.run_gemm("sim:golden", ice, "icebreaker", 24, 8, 40, seed=3)
    assert r["mismatches"] == 0 and r["runs"] >= 1
    # The modelled time is the line's plus the RUNs': most of it is the link at 3 Mbaud.
    assert 0.7 < r["link_share"] < 1 and r["board_s"] == pytest.approx(
        r["link_s"] + r["compute_s"])
    assert 0.85 < r["link_efficiency"] < 0.96


def test_network_on_the_golden_board(ice, mlp):
    q, x, y = mlp
    r = deploy.run_network("sim:golden", ice, "icebreaker", q, x, y, images=60, batch=30)
    assert r["equal_to_reference"] == 60 and r["accuracy"] >= 0.9
    assert r["accuracy"] == r["reference_accuracy"]
    # 3 Mbaud moves ~300 kB/s; an image costs ~900 line bytes: a few hundred images/s.
    assert 150 < r["images_per_s"] < 800
    assert r["link_share"] > 0.9 and r["link_s_per_image"] > 0.001


def test_virtual_board_runs_the_board_top_at_its_clock_and_baud(ice):
    """sim:verilator: the board top's Verilog (UART, framed link, core) under Verilator at
    12 MHz and the preset's 3 Mbaud (4 cycles per bit, the receiver's least), behind a pty
    opened like a serial port; the GEMM is bit-exact and takes the board time the golden model
    predicts (within 5 %: under 2 % in earlier fresh-clone runs, 2.65 % in one run with the
    rest of the suite beside it on 2 cores; the golden model's host is instant)."""
    lines = []
    r = deploy.run_gemm("sim:verilator", ice, "icebreaker", 16, 16, 16, seed=1,
                        progress=lines.append)
    g = deploy.run_gemm("sim:golden", ice, "icebreaker", 16, 16, 16, seed=1)
    assert r["mismatches"] == 0 and r["cycles"] == g["cycles"]
    assert r["board_s"] == pytest.approx(g["board_s"], rel=0.05)
    assert r["retransmitted"] == 0 and r["naks_in"] == 0
    assert any("4 cycles per bit" in line for line in lines)


def test_counters_on_the_virtual_board_agree_with_the_host(ice, mlp):
    """Through the board top at 3 Mbaud, the core's own COUNTERS around each layer: their busy
    cycles are the RUNs' STATUS cycles, and the share of cycles the core waited on the host
    is the link share the host measured from board time (within a percentage point); the
    golden port does not read them (no clock)."""
    q, x, y = mlp
    r = deploy.run_network("sim:verilator", ice, "icebreaker", q, x, y, images=6, batch=3)
    assert r["equal_to_reference"] == 6
    counted = [x_["counters"] for x_ in r["layers"]]
    assert all(c is not None for c in counted)
    busy = sum(c["check"] + c["compute"] + c["other"] for c in counted)
    idle = sum(c["idle"] for c in counted)
    assert busy == round(r["cycles_per_image"] * 6)
    assert idle / (idle + busy) == pytest.approx(r["link_share"], abs=0.01)
    text = deploy.format_network(r)
    assert "cycles by cause (COUNTERS" in text and "waiting on the host" in text
    g = deploy.run_network("sim:golden", ice, "icebreaker", q, x, y, images=6, batch=3)
    assert all(x_["counters"] is None for x_ in g["layers"])
    assert "cycles by cause" not in deploy.format_network(g)


@pytest.mark.slow
def test_network_on_the_virtual_board(ice, mlp):
    q, x, y = mlp
    r = deploy.run_network("sim:verilator", ice, "icebreaker", q, x, y, images=50, batch=25)
    assert r["equal_to_reference"] == 50 and r["accuracy"] == r["reference_accuracy"]
    g = deploy.run_network("sim:golden", ice, "icebreaker", q, x, y, images=50, batch=25)
    assert r["images_per_s"] == pytest.approx(g["images_per_s"], rel=0.03)


# --- errors, one line each ---------------------------------------------------------------------

def test_missing_port(ice):
    with pytest.raises(LinkError, match=r"^no serial port /dev/ttyNOPE7: is the board plugged "
                                        r"in\? \(serial ports here: .*\)$") as e:
        deploy.run_gemm("/dev/ttyNOPE7", ice, "icebreaker", 4, 4, 4)
    _one_line(e.value)


def test_unknown_virtual_board(ice):
    with pytest.raises(DeployError, match=r"^port 'sim:icarus' is not a virtual board; "
                                          r"allowed: sim:golden, sim:verilator$"):
        deploy.run_gemm("sim:icarus", ice, "icebreaker", 4, 4, 4)


@pytest.fixture
def pty_pair():
    master, slave = pty.openpty()
    tty.setraw(slave)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_busy_port(pty_pair):
    _, path = pty_pair
    first = SerialPipe(path, 115200)
    try:
        with pytest.raises(LinkError, match=rf"^serial port {path} is busy: another program "
                                            rf"has it open"):
            SerialPipe(path, 115200)
    finally:
        first.close()


def test_board_that_does_not_answer(ice, pty_pair):
    """Nothing answers on the port: the HELLO is retried, then one line says what was sent."""
    _, path = pty_pair

    async def go():
        pipe = SerialPipe(path, 115200, base_timeout=0.2)
        t = deploy.FramedTransport(pipe, retries=1, hint="baud 115200, board icebreaker")
        try:
            await t.open()
        finally:
            pipe.close()

    with pytest.raises(LinkTimeout, match=r"^HELLO: no answer to HELLO from /dev/\S+ within "
                                          r"0\.2 s each \(sent 8 bytes: a5 48 [0-9a-f ]+\); is "
                                          r"the board programmed with a tessera bitstream "
                                          r"\(baud 115200, board icebreaker\)\?$") as e:
        asyncio.run(go())
    _one_line(e.value)


def test_board_without_the_framed_link(pty_pair):
    """A bare byte-stream core (an old bitstream) answers HELLO with command-error bytes, not
    frames: the message says so."""
    master, path = pty_pair
    stop = threading.Event()

    def raw_core():                 # answers every byte with OPCODE error (1), like the core
        while not stop.is_set():
            import select
            r, _, _ = select.select([master], [], [], 0.05)
            if r:
                data = os.read(master, 4096)
                os.write(master, bytes([1] * len(data)))
    th = threading.Thread(target=raw_core, daemon=True)
    th.start()

    async def go():
        pipe = SerialPipe(path, 115200, base_timeout=0.2)
        try:
            await deploy.FramedTransport(pipe, retries=1).open()
        finally:
            pipe.close()
    try:
        with pytest.raises(LinkTimeout, match=r"received \d+ bytes that are not tessera frames "
                                              r"\(01 01 .*\): a bitstream without the framed "
                                              r"link, or the wrong baud rate\?$"):
            asyncio.run(go())
    finally:
        stop.set()
        th.join()


def test_core_other_than_the_config(ice):
    other = load_config("int8-4x4")

    async def go():
        port = await deploy.open_port("sim:golden", ice, "icebreaker")
        try:
            await deploy.connect(port, other)
        finally:
            port.close()

    with pytest.raises(DeployError, match=r"^the core on sim:golden is not the one the config "
                                          r"tessera_int8_4x4 describes \(differs in [^()]+\); "
                                          r"program the bitstream built from this config") as e:
        asyncio.run(go())
    _one_line(e.value)


def test_persistent_crc_error_names_the_command(ice):
    async def go():
        port = await deploy.open_port("sim:golden", ice, "icebreaker", retries=3)
        drv = await deploy.connect(port, ice)
        port.transport.pipe = NoisyPipe(port.pipe, flip=1.0, seed=2, directions="to_host")
        await drv.read("c", 0, 8)

    with pytest.raises(LinkCorrupt, match=r"^READ spad=2 addr=0 count=8: the link to "
                                          r"sim:golden kept failing: 3 retries in a row, frames "
                                          r"refused: .*CRC error.*; check the cable") as e:
        asyncio.run(go())
    _one_line(e.value)


def test_model_that_does_not_fit(ice, mlp):
    q, x, y = mlp
    ternary = load_config("ternary")
    with pytest.raises(DeployError, match=r"^model 'digits_mlp' does not fit the core "
                                          r"tessera_ternary: network 'digits_mlp' was quantized "
                                          r"for another PE: pe\.kind: network 'int', core "
                                          r"'ternary'") as e:
        deploy.run_network("sim:golden", ternary, "icebreaker", q, x, y, images=2)
    _one_line(e.value)


def test_baud_the_board_cannot_make(ice):
    with pytest.raises(DeployError, match=r"^host\.baud: 1400000 cannot link the "
                                          r"icebreaker: the board top makes 1333333 baud \(9 "
                                          r"cycles per bit\) and the FTDI FT2232H 1391304: "
                                          r"-4\.17% apart"):
        deploy.run_gemm("sim:golden", ice, "icebreaker", 4, 4, 4, baud=1_400_000)


def test_board_problem_ignores_the_host_interface():
    """Any config that fits a board goes on it, `stream` cores included (the default preset is
    one, listed for the ULX3S 85F); what does not fit, or runs at a clock or baud rate the board
    cannot make, is refused in one line."""
    from dataclasses import replace
    default = load_config("int8-8x8")
    assert default.host.interface == "stream"
    assert deploy.board_problem(default, "ulx3s-85f") is None
    assert deploy.board_problem(default, "icebreaker").startswith(
        "tessera_int8_8x8 cannot fit the icebreaker: it needs at least 64 SB_MAC16 DSPs")
    ice = load_config("icebreaker")
    fast = replace(ice, core=replace(ice.core, clock_mhz=14.0))
    assert deploy.board_problem(fast, "icebreaker").startswith(
        "core.clock_mhz: 14 MHz cannot be made by the icebreaker's PLL")
    assert deploy.board_problem(replace(ice, core=replace(ice.core, clock_mhz=24.0)),
                                "icebreaker") is None


def test_what_run_prints(ice):
    r = deploy.run_gemm("sim:golden", ice, "icebreaker", 8, 8, 8)
    text = deploy.format_gemm(r, port="sim:golden", board="icebreaker")
    assert text.splitlines()[0] == ("8x8x8 GEMM on icebreaker (sim:golden): "
                                    f"{r['cycles']} cycles in 1 runs, bit-exact")
    assert "(modelled line + RUN cycles)" in text
