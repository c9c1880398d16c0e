# amaranth: UnusedElaboratable=no
"""The framed host link: CRC against references, frames, the golden twin, the HDL framer against
the twin in Amaranth's simulator, and the host transport (retries, errors, throughput)."""

import asyncio
import random

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from crc import Calculator, Crc16

from tessera.hdl.io import frame_format as ff
from tessera.hdl.io.frame_format import Reason
from tessera.hdl.io.framing import LINK_CRC, FramedLink
from tessera.sim.framing import (Frame, FramedLinkTwin, FramedTransport, FrameParser,
                                 GoldenBoard, GoldenPipe, LinkCorrupt, LinkTimeout, NoisyPipe,
                                 Refused, crc16, describe_command, encode_frame)
from tessera.tb.selftest_design import EchoPlusOne


# --- CRC and frames ----------------------------------------------------------------------------

def test_crc_matches_the_crc_package_and_amaranth():
    ref = Calculator(Crc16.IBM_3740.value)
    hdl = LINK_CRC(data_width=8)
    rng = random.Random(1)
    for n in [0, 1, 2, 7, 9, 64, 255, 1024]:
        data = bytes(rng.randrange(256) for _ in range(n))
        assert crc16(data) == ref.checksum(data) == hdl.compute(data)
    assert crc16(b"123456789") == 0x29B1                 # the catalogue's check value
    # A field followed by its CRC (most significant byte first) leaves 0: the residue check.
    data = b"tessera"
    assert crc16(data + crc16(data).to_bytes(2, "big")) == 0 == hdl.residue()


def test_frame_bytes():
    assert encode_frame(ff.ACK, 0x1234) == bytes([0xA5, 0x41, 0x34, 0x12, 0, 0]) + \
        crc16(bytes([0x41, 0x34, 0x12, 0, 0])).to_bytes(2, "big")
    f = encode_frame(ff.DATA, 70000, b"\x01\x02")
    assert f[2:4] == (70000 % 65536).to_bytes(2, "little") and f[4:6] == b"\x02\x00"
    assert f[8:10] == b"\x01\x02" and f[10:] == crc16(b"\x01\x02").to_bytes(2, "big")
    assert len(encode_frame(ff.DATA, 0, bytes(256))) == 256 + ff.HEADER_BYTES + ff.CRC_BYTES


def test_parser_resynchronises_after_garbage():
    p = FrameParser(max_payload=64, decide=lambda seq, n: "take", check_control=True)
    garbage = bytes([0xA5, 0x44, 0x00, 0x00, 0x40]) + bytes(range(30))   # a false SYNC too
    nak = encode_frame(ff.NAK, 5, bytes([Reason.CRC]))
    events = p.feed(garbage + encode_frame(ff.DATA, 0, b"hello") + b"\x13\x00" + nak)
    taken = [e for e in events if isinstance(e, Frame)]
    assert taken == [Frame(ff.DATA, 0, b"hello"), Frame(ff.NAK, 5, bytes([Reason.CRC]))]
    assert any(isinstance(e, Refused) and e.reason == Reason.HEADER for e in events)
    # A SYNC in the garbage right before a frame takes that frame's first bytes into a false
    # header (refused by its CRC): that frame is lost (the sender resends it), the next is not.
    events = p.feed(b"\xa5\x00" + nak + nak)
    assert [e for e in events if isinstance(e, Frame)] == [Frame(ff.NAK, 5, b"\x01")]


def test_describe_command():
    assert describe_command(bytes([4, 2, 0, 0, 16, 0])) == "READ spad=2 addr=0 count=16"
    assert describe_command(bytes([1])) == "INFO"
    assert describe_command(bytes([0x7E, 1])) == "2 bytes 7e 01"


# --- the twin ----------------------------------------------------------------------------------

def _kinds(data, max_payload=64):
    p = FrameParser(max_payload=max_payload, decide=lambda s, n: "take", check_control=True)
    return [(e.kind, e.seq, e.payload) for e in p.feed(data) if isinstance(e, Frame)]


def test_twin_refused_frame_changes_nothing_and_naks_once():
    t = FramedLinkTwin(max_payload=64, rx_buffer=128, tx_buffer=128)
    t.feed(encode_frame(ff.DATA, 0, b"abc"))
    assert t.deliver() == b"abc" and _kinds(t.transmit()) == [(ff.ACK, 3, b"")]
    bad = bytearray(encode_frame(ff.DATA, 3, b"defg"))
    bad[9] ^= 0x10                                                    # a payload bit
    t.feed(bad)
    t.feed(encode_frame(ff.DATA, 7, b"hij"))                          # after the lost one
    assert t.deliver() == b""
    assert _kinds(t.transmit()) == [(ff.NAK, 3, bytes([Reason.CRC]))]
    assert t.events[-2:] == [("refused", Reason.CRC, True), ("refused", Reason.SEQUENCE, False)]
    t.feed(encode_frame(ff.DATA, 3, b"defg"))
    t.feed(encode_frame(ff.DATA, 0, b"abc"))                          # a duplicate
    assert t.deliver() == b"defg"
    assert t.events[-1] == ("duplicate", 0)
    assert _kinds(t.transmit()) == [(ff.ACK, 7, b"")]


def test_twin_full_buffer_and_hello():
    t = FramedLinkTwin(max_payload=64, rx_buffer=64, tx_buffer=64)
    t.feed(encode_frame(ff.DATA, 0, bytes(40)))
    t.feed(encode_frame(ff.DATA, 40, bytes(40)))                      # no room: not read yet
    assert t.events[-1] == ("refused", Reason.FULL, True)
    assert _kinds(t.transmit()) == [(ff.NAK, 40, bytes([Reason.FULL]))]
    t.core_output(b"x" * 100)                                         # 64 fit, 36 wait
    out = _kinds(t.transmit())
    assert [(k, s, len(p)) for k, s, p in out] == [(ff.DATA, 0, 64)]
    t.feed(encode_frame(ff.HELLO, 0xBEEF))
    assert _kinds(t.transmit()) == [(ff.HELLO, 0xBEEF, bytes([1, 64, 0, 64, 0, 64, 0]))]
    assert (t.x, t.e, t.resets) == (0, 0, 1) and t.deliver() == b""


# --- HDL against the twin ----------------------------------------------------------------------

SIZES = dict(max_payload=64, rx_buffer=128, tx_buffer=128)


def _scenario(seed, n=40):
    """Line bytes a host might send, with damage: [(bytes, pause_after)]."""
    rng = random.Random(seed)
    out, offset = [], 0
    for _ in range(n):
        r = rng.random()
        if r < 0.55:
            size = rng.randrange(1, 65)
            payload = bytes(rng.randrange(256) for _ in range(size))
            seq = offset if rng.random() < 0.8 else (offset + rng.choice([-size, 64, 3]))
            frame = bytearray(encode_frame(ff.DATA, seq, payload))
            damage = rng.random()
            if damage < 0.15:
                frame[rng.randrange(1, len(frame))] ^= 1 << rng.randrange(8)
            elif damage < 0.25:
                del frame[rng.randrange(1, len(frame))]
            elif damage < 0.3:
                frame = frame[:rng.randrange(2, len(frame))]
            elif seq == offset:
                offset += size
            out.append((bytes(frame), damage >= 0.25 and damage < 0.3))
        elif r < 0.65:
            out.append((bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20))), False))
        elif r < 0.75:
            out.append((encode_frame(rng.choice([ff.ACK, ff.NAK]), rng.randrange(4)), False))
        elif r < 0.8:
            out.append((encode_frame(0x5A, 0), False))
        elif r < 0.85:
            out.append((encode_frame(ff.DATA, offset, b""), False))        # LEN 0
        elif r < 0.9:
            out.append((encode_frame(ff.HELLO, rng.randrange(65536)), False))
            offset = 0
        else:
            out.append((encode_frame(ff.DATA, offset, bytes(70)), False))  # too long
    return out


def _run_link(dut, chunks, *, gap, core_bytes=b"", acks=None, quiet=400):
    """Drive ``chunks`` into ``dut.line_rx`` (one byte per ``gap`` cycles, a pause of
    ``quiet`` cycles where marked); collect ``o`` bytes, ``line_tx`` bytes and pulses."""
    got_o, got_tx = bytearray(), bytearray()
    pulses = {"accepted": 0, "rejected": 0, "core_reset": 0}

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.line_tx.ready, 1)
        pending = list(core_bytes)

        async def cycle():
            if pending and not ctx.get(dut.i.valid):
                ctx.set(dut.i.payload, pending[0])
                ctx.set(dut.i.valid, 1)
            _, _, o_v, o_p, t_v, t_p, i_v, i_r, acc, rej, rst = await ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.line_tx.valid, dut.line_tx.payload,
                dut.i.valid, dut.i.ready, dut.accepted, dut.rejected, dut.core_reset)
            if o_v:
                got_o.append(o_p)
            if t_v:
                got_tx.append(t_p)
            if i_v and i_r:
                pending.pop(0)
                ctx.set(dut.i.valid, 0)
            pulses["accepted"] += acc
            pulses["rejected"] += rej
            pulses["core_reset"] += rst

        for data, pause in chunks:
            for b in data:
                ctx.set(dut.line_rx.payload, b)
                ctx.set(dut.line_rx.valid, 1)
                while True:
                    ready = ctx.get(dut.line_rx.ready)
                    await cycle()
                    if ready:
                        break
                ctx.set(dut.line_rx.valid, 0)
                for _ in range(gap - 1):
                    await cycle()
            for _ in range(quiet if pause else 0):
                await cycle()
        for _ in range(quiet):
            await cycle()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return bytes(got_o), bytes(got_tx), pulses


def _twin_run(chunks, **sizes):
    twin = FramedLinkTwin(**sizes)
    delivered, sent = bytearray(), bytearray()
    for data, pause in chunks:
        twin.feed(data)
        if pause:
            twin.line_quiet()
        delivered += twin.deliver()
        sent += twin.transmit()
    twin.line_quiet()
    sent += twin.transmit()
    return twin, bytes(delivered), bytes(sent)


def test_hdl_receiver_matches_twin(seed=1):
    """Frames, damaged frames, garbage, duplicates, out-of-order frames, HELLOs and pauses:
    the HDL delivers the same bytes, sends the same control frames (ACKs, NAKs with their
    reasons, HELLO replies) and takes and refuses the same frames as the twin."""
    chunks = _scenario(seed, n=110)
    dut = FramedLink(**SIZES, gather=4, frame_timeout=200)
    got_o, got_tx, pulses = _run_link(dut, chunks, gap=24)
    twin, want_o, want_tx = _twin_run(chunks, **SIZES)
    assert got_o == want_o
    assert _kinds(got_tx) == _kinds(want_tx)
    assert pulses["accepted"] == sum(e[0] == "taken" for e in twin.events)
    assert pulses["rejected"] == sum(e[0] == "refused" for e in twin.events)
    assert pulses["core_reset"] == twin.resets
    reasons = {e[1] for e in twin.events if e[0] == "refused"}
    assert reasons == {Reason.CRC, Reason.HEADER, Reason.SEQUENCE, Reason.LENGTH, Reason.TYPE,
                       Reason.TRUNCATED}
    assert {e[0] for e in twin.events} == {"taken", "refused", "duplicate", "ack", "nak",
                                           "hello"}


def test_hdl_transmitter_frames_acks_and_resends():
    """Core bytes leave in frames of at most max_payload; a NAK rewinds to its offset, an ACK
    frees the buffer; the transmit buffer back-pressures the core when full."""
    rng = random.Random(5)
    data = bytes(rng.randrange(256) for _ in range(300))
    chunks = [(b"", True), (encode_frame(ff.NAK, 64, bytes([1])), True),
              (encode_frame(ff.ACK, 128), True), (encode_frame(ff.ACK, 256), True),
              (encode_frame(ff.ACK, 300), True)]
    dut = FramedLink(**SIZES, gather=4, frame_timeout=200)
    _, got_tx, _ = _run_link(dut, chunks, gap=2, core_bytes=data, quiet=3000)
    frames = [(s, p) for k, s, p in _kinds(got_tx) if k == ff.DATA]
    assert all(len(p) <= 64 for _, p in frames)
    assert frames[0] == (0, data[:64]) and frames[1] == (64, data[64:128])
    stream = bytearray()
    for seq, payload in frames:                 # what a host takes: frames in order only
        if seq == len(stream):
            stream += payload
    assert bytes(stream) == data
    assert [s for s, _ in frames].count(64) == 2            # resent after the NAK


class _LinkEcho(wiring.Component):
    """FramedLink in front of EchoPlusOne (reset by the link), for end-to-end tests."""

    def __init__(self, **kw):
        self._kw = kw
        super().__init__({"line_rx": In(stream.Signature(8)),
                          "line_tx": Out(stream.Signature(8))})

    def elaborate(self, platform):
        from amaranth.hdl import ResetInserter
        m = Module()
        m.submodules.link = link = FramedLink(**self._kw)
        core = EchoPlusOne()
        m.submodules.core = ResetInserter(link.core_reset)(core)
        wiring.connect(m, wiring.flipped(self.line_rx), link.line_rx)
        wiring.connect(m, link.line_tx, wiring.flipped(self.line_tx))
        wiring.connect(m, link.o, core.i)
        wiring.connect(m, core.o, link.i)
        return m


class AmaranthLinePipe:
    """A pipe onto a design's ``line_rx``/``line_tx`` streams inside an Amaranth testbench:
    host bytes go in one per ``gap`` cycles; time is cycles x 1 us."""

    def __init__(self, ctx, dut, *, gap=10):
        self.ctx, self.dut, self.gap = ctx, dut, gap
        self.name = "amaranth-sim"
        self.byte_time = gap * 1e-6
        self.base_timeout = 400e-6
        self.cycles = 0
        self._out = bytearray()
        self._wait = 0
        ctx.set(dut.line_tx.ready, 1)

    def now(self):
        return self.cycles * 1e-6

    async def _cycle(self, got):
        ctx, dut = self.ctx, self.dut
        drive = bool(self._out) and self._wait == 0
        ctx.set(dut.line_rx.valid, drive)
        if drive:
            ctx.set(dut.line_rx.payload, self._out[0])
        _, _, ready, t_v, t_p = await ctx.tick().sample(dut.line_rx.ready, dut.line_tx.valid,
                                                        dut.line_tx.payload)
        self.cycles += 1
        if drive and ready:
            del self._out[0]
            self._wait = self.gap - 1
        elif self._wait:
            self._wait -= 1
        if t_v:
            got.append(t_p)

    async def write(self, data):
        self._out += data

    async def read(self, timeout):
        got = bytearray()
        end = self.cycles + max(1, round(timeout * 1e6))
        quiet = 0
        while self.cycles < end and not (got and quiet > 4):     # a burst, as a UART gives
            n = len(got)
            await self._cycle(got)
            quiet = 0 if len(got) != n else quiet + 1
        return bytes(got)

    async def idle(self, cycles):
        got = bytearray()
        for _ in range(cycles):
            await self._cycle(got)

    def close(self):
        pass


def test_hdl_end_to_end_with_the_host_transport():
    """The host transport over the HDL framer and a core, with damage in both directions:
    every byte arrives once, in order."""
    dut = _LinkEcho(max_payload=32, rx_buffer=64, tx_buffer=64, gather=8, frame_timeout=300)
    rng = random.Random(7)
    data = bytes(rng.randrange(256) for _ in range(400))
    result = {}

    async def bench(ctx):
        pipe = NoisyPipe(AmaranthLinePipe(ctx, dut), flip=0.08, drop=0.05, garbage=0.05,
                         seed=3)
        t = FramedTransport(pipe, retries=12)
        info = await t.open()
        got = bytearray()
        for off in range(0, len(data), 100):
            await t.send(data[off:off + 100])
            got += await t.recv(100)
        result.update(info=info, got=bytes(got), stats=t.stats, damaged=pipe.damaged)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert result["info"].max_payload == 32 and result["info"].rx_buffer == 64
    assert result["got"] == bytes((b + 1) % 256 for b in data)
    assert sum(result["damaged"].values()) > 0 and result["stats"].naks_in + \
        result["stats"].timeouts > 0


# --- the host transport on the golden board ----------------------------------------------------

def _golden(cfg, noise=None, **kw):
    from tessera.sim.core import GoldenCore
    board = GoldenBoard(GoldenCore(cfg), core_factory=lambda: GoldenCore(cfg), **kw)
    pipe = GoldenPipe(board, baud=115200)
    return board, (NoisyPipe(pipe, **noise) if noise else pipe)


@pytest.mark.parametrize("noise", [None, dict(flip=0.1, drop=0.1, garbage=0.1, seed=4)])
def test_gemm_through_the_golden_board(noise):
    from tessera.generators.config import load_config
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.workloads import gemm_operands, reference_gemm
    cfg = load_config("icebreaker")
    board, pipe = _golden(cfg, noise)
    t = FramedTransport(pipe, retries=12)

    async def go():
        await t.open()
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        a, b = gemm_operands(cfg, 24, 16, 40, seed=1)
        got, st = await drv.gemm(a, b)
        return got, reference_gemm(cfg, a, b, k_split=st.k_split)

    got, want = asyncio.run(go())
    np.testing.assert_array_equal(got, want)
    if noise:
        assert t.stats.retransmitted > 0 and sum(pipe.damaged.values()) > 5


def test_large_transfer_efficiency_on_the_modelled_line():
    """Payload bytes per second / line bytes per second >= 95 % for a 64 KiB transfer."""
    from tessera.sim.core import GoldenCore  # noqa: F401  (the board only echoes here)

    class Sink:
        def feed(self, data):
            return b""

    pipe = GoldenPipe(GoldenBoard(Sink()), baud=115200)
    t = FramedTransport(pipe)

    async def go():
        await t.open()
        t0 = pipe.now()
        await t.send(bytes(65536))
        await t.flush()
        return pipe.now() - t0

    seconds = asyncio.run(go())
    assert 65536 / seconds / (115200 / 10) >= 0.95


def test_persistent_crc_errors_name_the_command():
    from tessera.generators.config import load_config
    from tessera.sim.driver import TesseraDriver
    cfg = load_config("icebreaker")
    board, pipe = _golden(cfg, dict(flip=1.0, seed=1, directions="to_board"))
    pipe.enabled = False
    t = FramedTransport(pipe, retries=4)

    async def go():
        await t.open()
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        pipe.enabled = True
        await drv.read("c", 0, 4)

    with pytest.raises(LinkCorrupt, match=r"^READ spad=2 addr=0 count=4: the link to "
                                          r"sim:golden kept failing: 4 retries in a row, "
                                          r"frames refused: (payload|header) CRC error"):
        asyncio.run(go())


def test_no_answer_says_what_was_sent():
    class Mute:
        def feed(self, data):
            return b""

    class Deaf(GoldenPipe):
        async def write(self, data):
            self.wire_to_board += len(data)

    t = FramedTransport(Deaf(GoldenBoard(Mute())), retries=2)
    with pytest.raises(LinkTimeout, match=r"^HELLO: no answer to HELLO from sim:golden within "
                                          r"0\.05 s each \(sent 8 bytes: a5 48 .*\); is the "
                                          r"board programmed with a tessera bitstream\?$"):
        asyncio.run(t.open())
