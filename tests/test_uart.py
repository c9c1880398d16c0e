# amaranth: UnusedElaboratable=no
"""UART receiver, transmitter and bridge against the golden twin in ``sim/uart.py``."""

import random
import subprocess
import sys

import numpy as np
import pytest
from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from tessera.hdl.io.uart import UARTBridge, UARTRx, UARTTx, uart_divisor
from tessera.sim import uart as sim_uart
from tessera.sim.uart import Frame, uart_decode, uart_encode
from tessera.tb.selftest_design import EchoPlusOne  # shared with test_fpga


def _run(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def run_rx(levels, *, divisor, fifo_depth=16, ready=None):
    """Drive ``levels`` into a fresh UARTRx; return (bytes, error pulses, overrun pulses).

    ``ready(cycle) -> bool`` gives ``o.ready`` per cycle (always 1 if None); the simulation runs
    on after the levels until the FIFO has drained.
    """
    dut = UARTRx(divisor=divisor, fifo_depth=fifo_depth)
    got, errors, overruns = [], [], []
    levels = [int(v) for v in levels] + [1] * 8

    async def testbench(ctx):
        cycle = 0
        while cycle < len(levels) or ctx.get(dut.o.valid):
            ctx.set(dut.rx, levels[cycle] if cycle < len(levels) else 1)
            rdy = 1 if ready is None else int(ready(cycle))
            ctx.set(dut.o.ready, rdy)
            if ctx.get(dut.o.valid) and rdy:
                got.append(ctx.get(dut.o.payload))
            if ctx.get(dut.error):
                errors.append(cycle)
            if ctx.get(dut.overrun):
                overruns.append(cycle)
            await ctx.tick()
            cycle += 1
            assert cycle < len(levels) + 100_000, "receive FIFO never drained"

    _run(dut, testbench)
    return bytes(got), errors, overruns


def good_bytes(frames):
    return bytes(f.value for f in frames if not f.framing_error)


# --- golden twin -------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", [4, 5, 7, 16, 104, 217])
@pytest.mark.parametrize("gap", [0, 1, 13])
def test_twin_roundtrip(divisor, gap):
    data = bytes(random.Random(divisor * 100 + gap).randrange(256) for _ in range(40))
    levels = uart_encode(data, divisor, lead=3, gap=gap, tail=2)
    assert len(levels) == 3 + 2 + 40 * 10 * divisor + 39 * gap
    frames = uart_decode(levels, divisor)
    assert good_bytes(frames) == data
    assert not any(f.framing_error for f in frames)
    assert frames[0].start == 3


def test_twin_encode_bit_order():
    # 0x01: start 0, d0 = 1, d1..d7 = 0, stop 1; LSB first
    levels = uart_encode([0x01], 4)
    np.testing.assert_array_equal(levels, np.repeat([0, 1, 0, 0, 0, 0, 0, 0, 0, 1], 4))


def test_twin_framing_error_and_break():
    divisor = 8
    bad = uart_encode([0x5A], divisor)
    bad[-divisor:] = 0                                     # stop bit low
    brk = np.zeros(30 * divisor, dtype=np.uint8)           # break: line low for 3 frames
    levels = np.concatenate([bad, np.ones(5, np.uint8), brk, np.ones(5, np.uint8),
                             uart_encode([0x33], divisor)])
    frames = uart_decode(levels, divisor)
    assert [(f.value, f.framing_error) for f in frames] == [(0x5A, True), (0x00, True),
                                                            (0x33, False)]


def test_twin_glitch_ignored():
    levels = np.concatenate([np.ones(5, np.uint8), np.zeros(3, np.uint8),
                             uart_encode([0xC3], 8, lead=10)])
    frames = uart_decode(levels, 8)
    assert frames == [Frame(0xC3, False, 18)]


@pytest.mark.parametrize("clk_hz, baud, divisor", [(12e6, 115200, 104), (25e6, 115200, 217),
                                                   (12_000_000, 9600, 1250)])
def test_uart_divisor(clk_hz, baud, divisor):
    assert uart_divisor(clk_hz, baud) == divisor


def test_uart_divisor_errors():
    with pytest.raises(ValueError, match=r"^baud must be at most clk_hz/4 = 3000000, not "):
        uart_divisor(12e6, 6_000_000)
    with pytest.raises(ValueError, match=r"^baud 1400000 is 4\.8% off at clk_hz"):
        uart_divisor(12e6, 1_400_000)
    with pytest.raises(ValueError, match=r"^baud must be a positive integer, not 0$"):
        uart_divisor(12e6, 0)


def test_uart_divisor_lives_in_hdl():
    # The HDL must not depend on the golden package; sim.uart re-exports the one function.
    assert sim_uart.uart_divisor is uart_divisor
    code = ("import sys, tessera.hdl.io.uart; "
            "print(sorted(m for m in sys.modules if m.startswith('tessera.sim')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --- receiver ----------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", [4, 5, 7, 16])
def test_rx_matches_twin(divisor):
    rng = random.Random(divisor)
    data = bytes([0x00, 0xFF, 0x55, 0xAA] + [rng.randrange(256) for _ in range(20)])
    # Back-to-back frames, then frames with random idle gaps between them.
    levels = np.concatenate([uart_encode(data[:12], divisor, lead=2)]
                            + [uart_encode([b], divisor, lead=rng.randrange(0, 3 * divisor))
                               for b in data[12:]])
    got, errors, overruns = run_rx(levels, divisor=divisor)
    frames = uart_decode(levels, divisor)
    assert good_bytes(frames) == data                       # the twin agrees with the source
    assert got == data
    assert errors == [] and overruns == []


@pytest.mark.parametrize("fifo_depth", [1, 2, 16])
def test_rx_latency(fifo_depth):
    divisor = 5
    levels = [int(v) for v in uart_encode([0x42], divisor, lead=3, tail=10)]
    frame, = uart_decode(levels, divisor)
    stop_sample = frame.start + divisor // 2 + 9 * divisor
    dut = UARTRx(divisor=divisor, fifo_depth=fifo_depth)
    valid_at = []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle, level in enumerate(levels):
            ctx.set(dut.rx, level)
            if ctx.get(dut.o.valid):
                valid_at.append(cycle)
                assert ctx.get(dut.o.payload) == 0x42
            await ctx.tick()

    _run(dut, testbench)
    assert valid_at == [stop_sample + dut.latency]


def test_rx_real_divisor():
    # 115200 baud on the iCEBreaker's 12 MHz clock, with a bit-time mismatch of the sender
    # (divisor 101 against 104: -2.9 %), which mid-bit sampling must tolerate.
    divisor = uart_divisor(12e6, 115200)
    levels = uart_encode(b"\x00\xa5\xff", 101, lead=7)
    got, errors, _ = run_rx(levels, divisor=divisor)
    assert got == good_bytes(uart_decode(levels, divisor)) == b"\x00\xa5\xff"
    assert errors == []


def test_rx_framing_error_matches_twin():
    divisor = 6
    rng = random.Random(7)
    pieces = []
    for n in range(12):
        frame = uart_encode([rng.randrange(256)], divisor, lead=rng.randrange(0, 9))
        if n % 3 == 1:
            frame[-divisor:] = 0                           # corrupt the stop bit,
            frame = np.concatenate([frame, np.ones(divisor, np.uint8)])   # then idle
        pieces.append(frame)
        if n == 7:
            pieces.append(np.zeros(25 * divisor, dtype=np.uint8))   # a break
            pieces.append(np.ones(3, dtype=np.uint8))
    levels = np.concatenate(pieces)
    frames = uart_decode(levels, divisor)
    n_bad = sum(f.framing_error for f in frames)
    assert n_bad == 5                                      # 4 corrupted + 1 break
    got, errors, overruns = run_rx(levels, divisor=divisor)
    assert got == good_bytes(frames)
    assert len(errors) == n_bad
    assert overruns == []


def test_rx_glitch_ignored():
    divisor = 16
    levels = np.concatenate([np.ones(4, np.uint8), np.zeros(divisor // 2 - 2, np.uint8),
                             uart_encode([0x81], divisor, lead=20)])
    got, errors, _ = run_rx(levels, divisor=divisor)
    assert got == good_bytes(uart_decode(levels, divisor)) == b"\x81"
    assert errors == []


@pytest.mark.parametrize("fifo_depth", [1, 3])
def test_rx_overrun(fifo_depth):
    # The consumer stalls while 6 bytes arrive: the FIFO keeps the first `fifo_depth`, the
    # rest are dropped with one overrun pulse each; order is preserved.
    divisor = 5
    data = bytes([10, 20, 30, 40, 50, 60])
    levels = uart_encode(data, divisor, lead=2, tail=4)
    stall = len(levels)
    got, errors, overruns = run_rx(levels, divisor=divisor, fifo_depth=fifo_depth,
                                   ready=lambda cycle: cycle >= stall)
    assert got == data[:fifo_depth]
    assert len(overruns) == len(data) - fifo_depth
    assert errors == []


def test_rx_slow_consumer_no_loss():
    # A consumer that takes one byte every 3 cycles keeps up with the line: nothing is lost.
    divisor = 4
    data = bytes(range(0, 256, 7))
    got, _, overruns = run_rx(uart_encode(data, divisor), divisor=divisor, fifo_depth=2,
                              ready=lambda cycle: cycle % 3 == 0)
    assert got == data and overruns == []


# --- transmitter -------------------------------------------------------------------------------

def run_tx(data, *, divisor, fifo_depth=0, pause=None, extra=0):
    """Offer ``data`` to a fresh UARTTx; return the ``tx`` level of every cycle.

    ``pause(index) -> int`` idle cycles before offering byte ``index`` (0 if None).
    """
    dut = UARTTx(divisor=divisor, fifo_depth=fifo_depth)
    levels = []

    async def testbench(ctx):
        async def tick():
            levels.append(ctx.get(dut.tx))
            await ctx.tick()

        for index, value in enumerate(data):
            for _ in range(pause(index) if pause else 0):
                await tick()
            ctx.set(dut.i.payload, value)
            ctx.set(dut.i.valid, 1)
            while not ctx.get(dut.i.ready):
                await tick()
            await tick()
            ctx.set(dut.i.valid, 0)
        while ctx.get(dut.busy) or (fifo_depth and ctx.get(dut.i.ready) == 0):
            await tick()
        for _ in range(extra + 4 * divisor):
            await tick()

    _run(dut, testbench)
    return np.array(levels, dtype=np.uint8)


@pytest.mark.parametrize("divisor, fifo_depth", [(4, 0), (7, 0), (16, 0), (4, 1), (7, 4)])
def test_tx_back_to_back_matches_encode(divisor, fifo_depth):
    data = bytes(random.Random(divisor).randrange(256) for _ in range(10)) + b"\x00\xff"
    levels = run_tx(data, divisor=divisor, fifo_depth=fifo_depth)
    first = int(np.flatnonzero(levels == 0)[0])
    assert np.all(levels[:first] == 1)
    assert first == UARTTx(divisor=divisor, fifo_depth=fifo_depth).latency
    expected = uart_encode(data, divisor)
    np.testing.assert_array_equal(levels[first:first + len(expected)], expected)
    assert np.all(levels[first + len(expected):] == 1)


@pytest.mark.parametrize("fifo_depth", [0, 2])
def test_tx_with_pauses_decodes(fifo_depth):
    divisor = 5
    rng = random.Random(3)
    data = bytes(rng.randrange(256) for _ in range(15))
    levels = run_tx(data, divisor=divisor, fifo_depth=fifo_depth,
                    pause=lambda _: rng.choice([0, 0, 1, 17, 60]))
    frames = uart_decode(levels, divisor)
    assert good_bytes(frames) == data and len(frames) == len(data)


# --- bridge ------------------------------------------------------------------------------------

class _BridgedEcho(Elaboratable):
    def __init__(self, divisor, rx_fifo_depth):
        self.bridge = UARTBridge(divisor=divisor, rx_fifo_depth=rx_fifo_depth)
        self.core = EchoPlusOne()

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge, m.submodules.core = self.bridge, self.core
        wiring.connect(m, self.bridge.o, self.core.i)
        wiring.connect(m, self.core.o, self.bridge.i)
        return m


@pytest.mark.parametrize("divisor", [4, 9])
def test_bridge_echo_end_to_end(divisor):
    data = bytes([0x00, 0x41, 0x7F, 0xFE] + list(range(100, 120)))
    host = uart_encode(data, divisor, lead=5, tail=20 * divisor)
    top = _BridgedEcho(divisor, rx_fifo_depth=4)
    line = []
    flags = {}

    async def testbench(ctx):
        for level in host:
            ctx.set(top.bridge.rx, int(level))
            line.append(ctx.get(top.bridge.tx))
            await ctx.tick()
        flags.update(framing=ctx.get(top.bridge.framing_error),
                     overrun=ctx.get(top.bridge.overrun), error=ctx.get(top.core.error))

    _run(top, testbench)
    assert good_bytes(uart_decode(line, divisor)) == bytes((b + 1) % 256 for b in data)
    assert flags == {"framing": 0, "overrun": 0, "error": 0}


def test_bridge_sticky_flags():
    divisor = 4
    bad = uart_encode([0x12], divisor, lead=3)
    bad[-divisor:] = 0
    host = np.concatenate([bad, uart_encode([0xFF], divisor, lead=4, tail=40)])
    top = _BridgedEcho(divisor, rx_fifo_depth=2)
    seen = []

    async def testbench(ctx):
        for level in host:
            ctx.set(top.bridge.rx, int(level))
            await ctx.tick()
        seen.extend([ctx.get(top.bridge.framing_error), ctx.get(top.bridge.overrun),
                     ctx.get(top.core.error)])

    _run(top, testbench)
    assert seen == [1, 0, 1]


# --- parameter validation ----------------------------------------------------------------------

@pytest.mark.parametrize("cls, kwargs, message", [
    (UARTRx, {"divisor": 3}, r"^divisor must be an integer >= 4, not 3$"),
    (UARTRx, {"divisor": 8.0}, r"^divisor must be an integer >= 4, not 8\.0$"),
    (UARTRx, {"divisor": 8, "fifo_depth": 0}, r"^fifo_depth must be an integer >= 1, not 0$"),
    (UARTTx, {"divisor": True}, r"^divisor must be an integer >= 4, not True$"),
    (UARTTx, {"divisor": 8, "fifo_depth": -1}, r"^fifo_depth must be an integer >= 0, not -1$"),
    (UARTBridge, {"divisor": 8, "rx_fifo_depth": 0},
     r"^rx_fifo_depth must be an integer >= 1, not 0$"),
])
def test_parameter_errors(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_twin_parameter_errors():
    with pytest.raises(ValueError, match=r"^divisor must be an integer >= 4, not 2$"):
        uart_encode(b"a", 2)
    with pytest.raises(ValueError, match=r"^data must hold bytes 0\.\.255, not 0\.\.256$"):
        uart_encode([0, 256], 4)
    with pytest.raises(ValueError, match=r"^gap must be a non-negative integer, not -1$"):
        uart_encode(b"a", 4, gap=-1)
