"""cocotb tests of a whole board top (`tessera.fpga.top.LinkTop`: UART, framed link, core) driven
on its UART pins by cocotbext-uart: framing, errors injected on the wire, recovery, and a layer
through the UART, bit-exact against the golden core.

Loaded by the simulator with ``TESSERA_BOARD_PLAN`` naming a JSON file (written by
``tests/test_board_cocotb.py``): ``config`` (the core's config as a dict), ``divisor``,
``period_ns`` and ``link`` (the framed link's sizes). Measurements go to
``TESSERA_BOARD_RESULTS`` (JSON lines) when set.
"""

import json
import logging
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, First, Timer
from cocotbext.uart import UartSink, UartSource

from tessera.generators.config import config_from_dict
from tessera.hdl.io import frame_format as ff
from tessera.hdl.io.frame_format import Reason
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.framing import Frame, FramedTransport, FrameParser, encode_frame
from tessera.sim.layout import pack_words


def _plan():
    path = os.environ.get("TESSERA_BOARD_PLAN")
    if not path:
        raise RuntimeError("tessera.tb.board_cocotb needs TESSERA_BOARD_PLAN (written by "
                           "tests/test_board_cocotb.py)")
    with open(path) as f:
        return json.load(f)


PLAN = _plan()
CFG = config_from_dict(PLAN["config"])
DIVISOR = PLAN["divisor"]
PERIOD_NS = PLAN["period_ns"]
BIT_NS = DIVISOR * PERIOD_NS
BAUD = 1e9 / BIT_NS


def _record(entry):
    path = os.environ.get("TESSERA_BOARD_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


class CocotbUartPipe:
    """A pipe (`tessera.sim.framing`) over the board top's UART pins: cocotbext-uart's
    UartSource drives ``rx``, its UartSink decodes ``tx``; time is simulation time.

    ``damage``, when set, is a callable that may alter each chunk written before it goes on
    the wire (flipped bits, dropped bytes, garbage): errors injected on the line. ``damage_in``
    does the same to what the board sent, as it arrives.
    """

    def __init__(self, dut):
        self.dut = dut
        self.source = UartSource(dut.rx, baud=BAUD, bits=8, stop_bits=1)
        self.sink = UartSink(dut.tx, baud=BAUD, bits=8, stop_bits=1)
        for log in (self.source.log, self.sink.log):
            log.setLevel(logging.WARNING)      # one INFO line per byte otherwise
        self.name = "the board top's UART"
        self.byte_time = 10 * BIT_NS * 1e-9
        self.base_timeout = 400 * self.byte_time
        self.damage = None
        self.damage_in = None
        self.wire_out = 0

    def now(self):
        return get_sim_time("ns") * 1e-9

    async def write(self, data):
        data = bytes(data)
        if os.environ.get("TESSERA_DEBUG_PIPE"):
            self.dut._log.warning(f"write {data[:24].hex(' ')} ({len(data)})")
        if self.damage is not None:
            data = self.damage(data)
        self.wire_out += len(data)
        self.source.write_nowait(data)

    async def read(self, timeout):
        self.sink.sync.clear()               # set by every byte; cleared only by waiting
        if self.sink.empty():
            if timeout <= 0:
                return b""
            await First(self.sink.sync.wait(), Timer(max(1, round(timeout * 1e9)), "ns"))
            if self.sink.empty():
                return b""
        data = bytes(self.sink.read_nowait())
        if self.damage_in is not None:
            data = self.damage_in(data)
        if os.environ.get("TESSERA_DEBUG_PIPE"):
            self.dut._log.warning(f"read {data[:24].hex(' ')} ({len(data)})")
        return data

    async def idle(self, cycles):
        await ClockCycles(self.dut.clk, cycles)

    async def drain(self):
        """Wait until everything written has left the UART source."""
        await self.source.wait()

    def close(self):
        pass


async def _start(dut):
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    dut.rx.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    return CocotbUartPipe(dut)


async def _open(pipe, **kw):
    t = FramedTransport(pipe, **kw)
    info = await t.open()
    return t, info


async def _read_all(pipe, timeout, quiet=20):
    """Everything the board sends within ``timeout`` s, until ``quiet`` byte times of silence."""
    data = bytearray(await pipe.read(timeout))
    while data:
        more = await pipe.read(quiet * pipe.byte_time)
        if not more:
            break
        data += more
    return bytes(data)


def _frames(data, max_payload=4096):
    p = FrameParser(max_payload=max_payload, decide=lambda s, n: "take", check_control=True)
    return [e for e in p.feed(data) if isinstance(e, Frame)]


@cocotb.test()
async def test_hello_and_info(dut):
    """HELLO resets the link and reports the framer's sizes; INFO through the framed link is the
    config's."""
    pipe = await _start(dut)
    t, info = await _open(pipe)
    link = PLAN["link"]
    assert (info.version, info.max_payload, info.rx_buffer, info.tx_buffer) == \
        (ff.LINK_VERSION, link["max_payload"], link["rx_buffer"], link["tx_buffer"])
    drv = TesseraDriver(t, CFG)
    got = await drv.connect()
    assert got == CFG.core_info(), "; ".join(got.differences(CFG.core_info()))


@cocotb.test()
async def test_refused_frame_changes_nothing(dut):
    """A WRITE in a frame with one flipped payload bit is answered with a NAK (payload CRC
    error, expected offset unchanged) and writes nothing; the same frame intact then works."""
    pipe = await _start(dut)
    t, _ = await _open(pipe)
    drv = TesseraDriver(t, CFG)
    await drv.connect()
    store = drv.info.store("a")
    rng = np.random.default_rng(1)
    before = rng.integers(0, 1 << store.lane_bits, size=(4, store.lanes), dtype=np.uint64)
    await drv.write("a", 0, before)
    await t.flush()
    base = t._tx_base                                      # the next stream offset

    after = (before + 1) % (1 << store.lane_bits)
    command = bytes([3, store.id, 0, 0, 4, 0]) + pack_words(after, store.lane_bits)
    frame = bytearray(encode_frame(ff.DATA, base, command))
    frame[ff.HEADER_BYTES + 3] ^= 0x04                     # a payload bit, on the wire
    await pipe.write(frame)
    frames = _frames(await _read_all(pipe, 400 * pipe.byte_time))
    assert [(f.kind, f.seq, f.payload) for f in frames] == [(ff.NAK, base % 65536,
                                                             bytes([Reason.CRC]))]
    # Unexpected frames are refused too, and change nothing: a data frame from the future
    # (no NAK: one is already outstanding) and an unknown frame type.
    await pipe.write(encode_frame(ff.DATA, base + 100, command))
    await pipe.write(encode_frame(0x5A, 0, b""))
    assert await _read_all(pipe, 400 * pipe.byte_time) == b""
    np.testing.assert_array_equal(await drv.read("a", 0, 4), before)
    await drv.write("a", 0, after)
    np.testing.assert_array_equal(await drv.read("a", 0, 4), after)


def _byte_noise(flip_every, drop_every):
    """Line noise on received bytes: every ``flip_every``-th byte gets a flipped bit, every
    ``drop_every``-th is lost."""
    counts = {"flip": 0, "drop": 0, "seen": 0}

    def damage(data):
        out = bytearray()
        for b in data:
            counts["seen"] += 1
            if counts["seen"] % drop_every == 0:
                counts["drop"] += 1
                continue
            if counts["seen"] % flip_every == 0:
                b ^= 1 << (counts["seen"] % 8)
                counts["flip"] += 1
            out.append(b)
        return bytes(out)

    return damage, counts


def _wire_damage(seed, p):
    """Flip a bit, drop a byte or put garbage before a chunk, each with probability ``p``."""
    rng = random.Random(seed)
    counts = {"flip": 0, "drop": 0, "garbage": 0}

    def damage(data):
        data = bytearray(data)
        if rng.random() < p:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            counts["flip"] += 1
        if rng.random() < p and len(data) > 1:
            del data[rng.randrange(len(data))]
            counts["drop"] += 1
        if rng.random() < p:
            data[0:0] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
            counts["garbage"] += 1
        return bytes(data)

    return damage, counts


@cocotb.test()
async def test_errors_on_the_wire_and_recovery(dut):
    """Flipped bits, dropped bytes and garbage between frames on the host -> board wire, and
    line noise (flipped and lost bytes) on what the board sends: WRITE/READ round trips stay
    exact, every error is recovered by retransmission."""
    pipe = await _start(dut)
    t, _ = await _open(pipe, retries=12)
    pipe.damage, counts = _wire_damage(2, 0.2)
    pipe.damage_in, counts_in = _byte_noise(700, 1100)
    drv = TesseraDriver(t, CFG)
    await drv.connect()
    rng = np.random.default_rng(2)
    for store_name in ("a", "b"):
        s = drv.info.store(store_name)
        n = min(s.depth, 200)
        words = rng.integers(0, 1 << s.lane_bits, size=(n, s.lanes), dtype=np.uint64)
        await drv.write(store_name, 0, words)
        np.testing.assert_array_equal(await drv.read(store_name, 0, n), words)
    st = t.stats
    _record({"test": "errors", "damage_to_board": counts, "damage_to_host": counts_in,
             "naks_in": st.naks_in, "naks_out": st.naks_out, "timeouts": st.timeouts,
             "retransmitted": st.retransmitted, "refused_in": st.refused_in})
    assert sum(counts.values()) >= 3 and counts_in["flip"] + counts_in["drop"] >= 2
    assert st.refused_in >= 1                       # the host refused damaged frames
    assert st.naks_in >= 1 and st.retransmitted > 0  # the board refused some: resent


@cocotb.test()
async def test_line_break_inside_a_frame(dut):
    """The rx line held low for 30 bit times in the middle of a frame (a break: UART framing
    errors, lost bytes); the frame is refused, the link recovers."""
    pipe = await _start(dut)
    t, _ = await _open(pipe)
    drv = TesseraDriver(t, CFG)
    await drv.connect()
    s = drv.info.store("a")
    words = np.arange(8 * s.lanes, dtype=np.uint64).reshape(8, s.lanes) % (1 << s.lane_bits)
    await t.send(bytes([3, s.id, 0, 0, 8, 0]) + pack_words(words, s.lane_bits))
    await Timer(round(5 * pipe.byte_time * 1e9), "ns")       # a few bytes into the frame
    pipe.source._run_cr.kill()                                # take the line over
    dut.rx.value = 0
    await Timer(round(30 * BIT_NS), "ns")
    dut.rx.value = 1
    pipe.source.clear()
    pipe.source._restart()
    assert (await t.recv(1)) == b"\x00"                       # WRITE OK, after a resend
    assert t.stats.timeouts + t.stats.naks_in >= 1
    np.testing.assert_array_equal(await drv.read("a", 0, 8), words)


@cocotb.test()
async def test_layer_through_the_uart(dut):
    """A dense layer and a GEMM through the UART: results and RUN cycles bit-exact against the
    golden core driven by the same host code."""
    from tessera.sim.layers import Dense
    from tessera.sim.lowering import run_layer
    from tessera.sim.workloads import gemm_operands
    pipe = await _start(dut)
    t, _ = await _open(pipe)
    drv = TesseraDriver(t, CFG)
    gold = TesseraDriver(GoldenTransport(GoldenCore(CFG)), CFG)
    await drv.connect()
    await gold.connect()
    layer = Dense(in_features=24, out_features=2 * CFG.cols)
    x, w = CFG.engine.layer_operands(layer, (2 * CFG.rows + 1, 24), seed=5)
    got, st = await run_layer(drv, layer, x, w, raw=True)
    want, gst = await run_layer(gold, layer, x, w, raw=True)
    np.testing.assert_array_equal(np.asarray(got, np.uint64), np.asarray(want, np.uint64))
    assert st.cycles == gst.cycles
    a, b = gemm_operands(CFG, 2 * CFG.rows, CFG.cols, 16, seed=6)
    (g1, s1), (g2, s2) = await drv.gemm(a, b), await gold.gemm(a, b)
    np.testing.assert_array_equal(g1, g2)
    assert s1.run_cycles == s2.run_cycles
    _record({"test": "layer", "cycles": st.cycles, "wire_out": t.stats.wire_out,
             "wire_in": t.stats.wire_in, "payload_out": t.stats.payload_out,
             "payload_in": t.stats.payload_in})


@cocotb.test()
async def test_large_transfer_efficiency(dut):
    """Large transfers: payload bytes per second over the line's bytes per second. To the
    board: one WRITE of store b, from its first byte to the last acknowledgement; from the
    board: one READ of store c, from the command to the last byte (turnaround included)."""
    pipe = await _start(dut)
    t, _ = await _open(pipe)
    drv = TesseraDriver(t, CFG)
    await drv.connect()
    rng = np.random.default_rng(3)
    line_bytes_per_s = BAUD / 10
    b, c = drv.info.store("b"), drv.info.store("c")
    words = rng.integers(0, 1 << b.lane_bits, size=(b.depth, b.lanes), dtype=np.uint64)
    command = bytes([3, b.id, 0, 0]) + b.depth.to_bytes(2, "little") + \
        pack_words(words, b.lane_bits)
    t0 = pipe.now()
    await t.send(command)
    await t.flush()
    write_s = pipe.now() - t0
    assert await t.recv(1) == b"\x00"
    t0 = pipe.now()
    got = await drv.read("c", 0, c.depth)
    read_s = pipe.now() - t0
    assert got.shape == (c.depth, c.lanes)
    eff = {"write": len(command) / write_s / line_bytes_per_s,
           "read": c.depth * c.word_bytes / read_s / line_bytes_per_s}
    _record({"test": "efficiency", "write_bytes": len(command),
             "read_bytes": c.depth * c.word_bytes, **eff,
             "max_payload": PLAN["link"]["max_payload"]})
    assert eff["write"] >= 0.95 and eff["read"] >= 0.95, eff
