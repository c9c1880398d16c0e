"""The framed host link on the host side: frames, CRC, the golden twin of the board's framer
(`tessera.hdl.io.framing.FramedLink`), a virtual board, and the host transport with retries.

Layers, bottom up:

* :func:`crc16`, :func:`encode_frame`, :class:`FrameParser`: the wire format
  (`tessera.hdl.io.frame_format`, docs/link.md);
* :class:`FramedLinkTwin`: the board's framer as a byte-level model, decision for decision
  (what it takes, refuses, NAKs and acknowledges); tests check the HDL against it;
* :class:`GoldenBoard` + :class:`GoldenPipe`: the twin in front of the golden core
  (`tessera.sim.core.GoldenCore`) on a modelled line (bytes take ``10/baud`` s each), the
  ``sim:golden`` port;
* :class:`FramedTransport`: the host driver's transport (``send``/``recv``/``idle``) over any
  *pipe*, which go-back-N retransmits lost or refused frames a bounded number of times and then
  raises :class:`LinkError` naming the command and the reason.

A pipe is any object with ``name`` (for messages), ``byte_time`` (seconds per line byte),
``base_timeout`` (seconds of slack on top of the line time before a retransmission), ``now()``
(its clock in seconds) and the coroutines ``write(data)``, ``read(timeout) -> bytes`` (what has
arrived, ``b""`` after ``timeout`` seconds of nothing) and ``idle(cycles)``; ``close()``. The
serial port (`tessera.fpga.link.SerialPipe`), the cocotb UART (`tessera.tb.board_cocotb`) and
:class:`GoldenPipe` are pipes.
"""

import binascii
import dataclasses
import random

from tessera.hdl.io import frame_format as ff
from tessera.hdl.io.frame_format import Reason

__all__ = ["crc16", "encode_frame", "Frame", "Refused", "FrameParser", "FramedLinkTwin",
           "GoldenBoard", "GoldenPipe", "NoisyPipe", "FramedTransport", "LinkInfo", "LinkStats",
           "LinkError", "LinkTimeout", "LinkCorrupt", "describe_command", "REASON_TIMEOUT"]

#: NAK reason the host gives when it asks for a resend after a silence (never sent by a board).
REASON_TIMEOUT = 8
_REASONS = {**ff.REASON_TEXT, REASON_TIMEOUT: "no frame within the timeout"}
_KINDS = {ff.DATA: "DATA", ff.ACK: "ACK", ff.NAK: "NAK", ff.HELLO: "HELLO"}


class LinkError(RuntimeError):
    """The board link failed: a port that cannot be used, or a link that stays broken."""


class LinkTimeout(LinkError, TimeoutError):
    """The board did not answer in time."""


class LinkCorrupt(LinkError):
    """Frames kept being refused (CRC errors and the like) after every retry."""


def crc16(data, crc=0xFFFF):
    """CRC-16/IBM-3740 (polynomial 0x1021, init 0xFFFF, no reflection, no final XOR) of
    ``data``: the frame CRC. ``binascii.crc_hqx`` computes it; tests check it against the PyPI
    ``crc`` package (``Crc16.IBM_3740``) and ``amaranth.lib.crc``.

    Returns
    -------
    int
    """
    return binascii.crc_hqx(bytes(data), crc)


def encode_frame(kind, seq, payload=b""):
    """One frame's bytes (docs/link.md).

    Parameters
    ----------
    kind : int
        ``frame_format.DATA``, ``ACK``, ``NAK`` or ``HELLO``.
    seq : int
        Sequence field (taken modulo 2**16).
    payload : bytes
        At most 65535 bytes.

    Returns
    -------
    bytes
    """
    payload = bytes(payload)
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload must be at most 65535 bytes, not {len(payload)}")
    head = bytes([kind]) + (seq % ff.SEQ_MOD).to_bytes(2, "little") \
        + len(payload).to_bytes(2, "little")
    out = bytes([ff.SYNC]) + head + crc16(head).to_bytes(2, "big")
    if payload:
        out += payload + crc16(payload).to_bytes(2, "big")
    return out


@dataclasses.dataclass(frozen=True)
class Frame:
    """A frame whose header (and, when checked, payload) CRC matched."""
    kind: int
    seq: int
    payload: bytes = b""

    def __str__(self):
        return f"{_KINDS.get(self.kind, hex(self.kind))} seq={self.seq} len={len(self.payload)}"


@dataclasses.dataclass(frozen=True)
class Refused:
    """A frame the parser refused: ``reason`` (`frame_format.Reason`); ``kind``, ``seq`` and
    ``length`` as the header said (meaningless for a header CRC error)."""
    reason: int
    kind: int = 0
    seq: int = 0
    length: int = 0

    def __str__(self):
        return _REASONS.get(self.reason, f"reason {self.reason}")


#: What `FrameParser`'s ``decide`` hook answers for a data frame header.
TAKE = "take"
SKIP = "skip"


class FrameParser:
    """The receive state machine of `FramedLink`, byte for byte: hunt for SYNC, read and check
    the header, then take, skip or refuse the payload.

    Parameters
    ----------
    max_payload : int
        Data frames longer than this (or empty) are refused with ``Reason.LENGTH``.
    decide : callable
        ``decide(seq, length) -> TAKE | SKIP | reason``, asked for each data frame with a good
        header: read the payload, pass over it, or refuse it (and pass over it).
    check_control : bool
        Read and check the payload of control frames (the host needs a NAK's reason and the
        HELLO reply). The board, like the HDL, passes over them unchecked.
    on_event : callable, optional
        Called with each event as it happens, so that ``decide`` for the next frame sees its
        effects (as in the HDL); without it ``feed`` returns them.

    ``feed(data)`` returns a list of events: :class:`Frame` (data frames taken with their
    payload; control frames), :class:`Refused`, and ``("skipped", Frame)`` for data frames the
    hook chose to pass over.
    """

    def __init__(self, *, max_payload, decide, check_control=False, on_event=None):
        self.max_payload = max_payload
        self.decide = decide
        self.check_control = check_control
        self.on_event = on_event
        self.state = "HUNT"
        self._buf = bytearray()
        self._need = 0
        self._kind = self._seq = self._len = 0
        self.garbage = 0          # bytes passed over while hunting for SYNC

    @property
    def in_frame(self):
        """True between a SYNC and the end of its frame."""
        return self.state != "HUNT"

    def line_quiet(self):
        """The line went quiet (``frame_timeout`` in the HDL): a frame being read is truncated.

        Returns
        -------
        list
            ``[Refused(TRUNCATED)]`` if a header or payload was being read, else ``[]``.
        """
        state, self.state = self.state, "HUNT"
        self._buf.clear()
        events = _Events(self.on_event)
        if state in ("HEADER", "PAYLOAD"):
            events.append(Refused(Reason.TRUNCATED, self._kind, self._seq, self._len))
        return events

    def feed(self, data):
        events = _Events(self.on_event)
        for b in bytes(data):
            self._byte(b, events)
        return events

    def _byte(self, b, events):
        if self.state == "HUNT":
            if b == ff.SYNC:
                self.state, self._need = "HEADER", ff.HEADER_BYTES - 1
                self._buf.clear()
            else:
                self.garbage += 1
            return
        if self.state == "SKIP":
            self._need -= 1
            if self._need == 0:
                self.state = "HUNT"
            return
        self._buf.append(b)
        self._need -= 1
        if self._need:
            return
        if self.state == "HEADER":
            self._header(events)
        else:                                   # PAYLOAD
            self.state = "HUNT"
            body = bytes(self._buf)
            if crc16(body) != 0:
                events.append(Refused(Reason.CRC, self._kind, self._seq, self._len))
            else:
                events.append(Frame(self._kind, self._seq, body[:-ff.CRC_BYTES]))

    def _skip(self):
        if self._len == 0 or self._len > self.max_payload:
            self.state = "HUNT"
        else:
            self.state, self._need = "SKIP", self._len + ff.CRC_BYTES

    def _payload(self):
        self.state, self._need = "PAYLOAD", self._len + ff.CRC_BYTES
        self._buf.clear()

    def _header(self, events):
        head = bytes(self._buf)
        self._kind = head[0]
        self._seq = int.from_bytes(head[1:3], "little")
        self._len = int.from_bytes(head[3:5], "little")
        if crc16(head) != 0:
            self.state = "HUNT"
            events.append(Refused(Reason.HEADER))
            return
        if self._kind == ff.DATA:
            if self._len == 0 or self._len > self.max_payload:
                self.state = "HUNT"
                events.append(Refused(Reason.LENGTH, self._kind, self._seq, self._len))
                return
            verdict = self.decide(self._seq, self._len)
            if verdict == TAKE:
                self._payload()
                return
            self._skip()
            if verdict == SKIP:
                events.append(("skipped", Frame(self._kind, self._seq)))
            else:
                events.append(Refused(verdict, self._kind, self._seq, self._len))
            return
        if self._kind in (ff.ACK, ff.NAK, ff.HELLO):
            if self.check_control and 0 < self._len <= self.max_payload:
                self._payload()
                return
            self._skip()
            events.append(Frame(self._kind, self._seq))
            return
        self.state = "HUNT"
        events.append(Refused(Reason.TYPE, self._kind, self._seq, self._len))


class _Events(list):
    """A list of events, or (with a callback) no list: each event goes to the callback."""

    def __init__(self, callback):
        super().__init__()
        self._callback = callback

    def append(self, event):
        if self._callback is None:
            super().append(event)
        else:
            self._callback(event)


def _behind(expected, seq):
    """``expected - seq`` modulo 2**16."""
    return (expected - seq) % ff.SEQ_MOD


class FramedLinkTwin:
    """Golden twin of `tessera.hdl.io.framing.FramedLink`: the same decisions on the same line
    bytes, without the cycle timing.

    It takes, refuses, NAKs (armed once per loss, like the HDL) and acknowledges exactly as the
    HDL does; `events` records each decision. What it transmits (:meth:`transmit`) is what the
    HDL sends when its transmitter is idle whenever a control frame is asked for and the
    ``gather`` time has passed before each data frame: every pending control frame first (the
    latest ACK/NAK only, as in the HDL), then data frames of up to ``max_payload`` bytes.

    Parameters
    ----------
    max_payload, rx_buffer, tx_buffer : int
        As for `FramedLink`.
    on_data : callable, optional
        ``on_data(payload) -> bytes``: the core, fed each data frame's payload as it is taken
        (its answer goes to the transmit buffer). Without it payloads collect for
        :meth:`deliver`.
    on_hello : callable, optional
        Called when a HELLO resets the link (the HDL resets the core).

    Attributes
    ----------
    events : list of tuple
        ``("taken", seq, length)``, ``("duplicate", seq)``, ``("refused", reason, nak_sent)``,
        ``("ack", seq)``, ``("nak", seq)``, ``("hello", nonce)``.
    resets : int
        HELLOs taken (each resets the core).
    """

    def __init__(self, *, max_payload=256, rx_buffer=1024, tx_buffer=1024, on_data=None,
                 on_hello=None):
        ff.check_link_sizes(max_payload, rx_buffer, tx_buffer)
        self.max_payload, self.rx_buffer, self.tx_buffer = max_payload, rx_buffer, tx_buffer
        self.on_data, self.on_hello = on_data, on_hello
        self.parser = FrameParser(max_payload=max_payload, decide=self._decide,
                                  on_event=self._handle)
        self.events = []
        self.resets = 0
        self._reset()
        self._hello = None

    def _reset(self):
        self.x = 0                    # next expected offset (host -> core)
        self.rx = bytearray()         # taken, not yet read by the core
        self.e = self.a = self.n = 0  # core -> host: written, acknowledged, next to send
        self.tx = bytearray()         # bytes a .. e
        self.core_queue = bytearray()  # core output waiting for room in the buffer
        self.armed = True
        self._ctl = None              # pending control frame: (ACK|NAK, code)

    @property
    def hello_reply(self):
        """The HELLO reply payload.

        Returns
        -------
        bytes
        """
        return bytes([ff.LINK_VERSION, *self.max_payload.to_bytes(2, "little"),
                      *(self.rx_buffer % 65536).to_bytes(2, "little"),
                      *(self.tx_buffer % 65536).to_bytes(2, "little")])

    # -- receive --------------------------------------------------------------------------
    def _decide(self, seq, length):
        behind = _behind(self.x, seq)
        if behind == 0:
            self.armed = True               # the sender is (re)sending from here
            if length > self.rx_buffer - len(self.rx):
                return Reason.FULL
            return TAKE
        if behind < 0x8000:
            self.events.append(("duplicate", seq))
            self._ctl = (ff.ACK, 0)
            return SKIP
        return Reason.SEQUENCE

    def _refuse(self, reason):
        sent = self.armed
        if self.armed:
            self._ctl = (ff.NAK, reason)
            self.armed = False
        self.events.append(("refused", reason, sent))

    def _handle(self, ev):
        if True:
            if isinstance(ev, Refused):
                self._refuse(ev.reason)
            elif isinstance(ev, Frame) and ev.kind == ff.DATA:
                self.x = (self.x + len(ev.payload)) % ff.SEQ_MOD
                self.armed = True
                self._ctl = (ff.ACK, 0)
                self.events.append(("taken", ev.seq, len(ev.payload)))
                if self.on_data is None:
                    self.rx += ev.payload
                else:
                    self.core_output(self.on_data(ev.payload))
            elif isinstance(ev, Frame) and ev.kind in (ff.ACK, ff.NAK):
                self.events.append(("ack" if ev.kind == ff.ACK else "nak", ev.seq))
                span = (ev.seq - self.a) % ff.SEQ_MOD
                if span <= len(self.tx):
                    ahead = (self.n - self.a) % ff.SEQ_MOD
                    del self.tx[:span]
                    self.a = ev.seq
                    if ev.kind == ff.NAK or span > ahead:
                        self.n = ev.seq
                    self._fill()
            elif isinstance(ev, Frame) and ev.kind == ff.HELLO:
                self.events.append(("hello", ev.seq))
                self.resets += 1
                self._reset()
                self._hello = ev.seq
                if self.on_hello is not None:
                    self.on_hello()

    def feed(self, data):
        """Line bytes from the host."""
        self.parser.feed(data)

    def line_quiet(self):
        """The line stayed quiet for ``frame_timeout`` cycles."""
        self.parser.line_quiet()

    def deliver(self):
        """Bytes taken for the core (and removed from the receive buffer).

        Returns
        -------
        bytes
        """
        out = bytes(self.rx)
        self.rx.clear()
        return out

    # -- transmit -------------------------------------------------------------------------
    def core_output(self, data):
        """Bytes from the core: into the transmit buffer as far as it has room (the rest waits,
        as the HDL back-pressures the core)."""
        self.core_queue += data
        self._fill()

    def _fill(self):
        room = self.tx_buffer - len(self.tx)
        if room > 0 and self.core_queue:
            take = self.core_queue[:room]
            del self.core_queue[:room]
            self.tx += take
            self.e = (self.e + len(take)) % ff.SEQ_MOD

    def transmit(self):
        """Frames the board sends now: a HELLO reply, the pending ACK or NAK, then every
        byte not yet sent in data frames of at most ``max_payload``.

        Returns
        -------
        bytes
        """
        out = bytearray()
        if self._hello is not None:
            out += encode_frame(ff.HELLO, self._hello, self.hello_reply)
            self._hello = None
        if self._ctl is not None:
            kind, code = self._ctl
            out += encode_frame(kind, self.x, bytes([code]) if kind == ff.NAK else b"")
            self._ctl = None
        while True:
            sent = (self.n - self.a) % ff.SEQ_MOD
            size = min(len(self.tx) - sent, self.max_payload)
            if size <= 0:
                break
            out += encode_frame(ff.DATA, self.n, self.tx[sent:sent + size])
            self.n = (self.n + size) % ff.SEQ_MOD
        return bytes(out)


class GoldenBoard:
    """A virtual board: :class:`FramedLinkTwin` in front of a byte-stream core model.

    Parameters
    ----------
    core : object
        ``feed(bytes) -> bytes``, e.g. `tessera.sim.core.GoldenCore`.
    core_factory : callable, optional
        Makes a fresh core when a HELLO resets the link (the HDL resets the core; the fresh
        core keeps the old one's ``stores``, as memories have no reset). Without it the same
        core continues.
    max_payload, rx_buffer, tx_buffer : int
        As for `FramedLink` (a board top's values: `tessera.fpga.top.link_sizes`).
    """

    def __init__(self, core, *, core_factory=None, max_payload=256, rx_buffer=1024,
                 tx_buffer=1024, gather=64):
        self.core = core
        self.core_factory = core_factory
        self.compute_cycles = 0       # RUN cycles of the core so far (it answers at once)
        # The board top's own cycles: each data frame's payload reaches the core 3 cycles
        # after its last CRC byte, one byte per cycle; the core's answer waits ``gather``
        # quiet cycles before it goes out in a frame.
        self.gather = gather
        self.link_cycles = 0
        self._count_runs(core)
        self.link = FramedLinkTwin(max_payload=max_payload, rx_buffer=rx_buffer,
                                   tx_buffer=tx_buffer, on_data=self._to_core,
                                   on_hello=self._reset_core)

    def _count_runs(self, core):
        run = getattr(core, "_run", None)
        if run is None:
            return

        def counted(raw):
            err = run(raw)
            self.compute_cycles += core.cycles
            return err
        core._run = counted

    def _to_core(self, payload):
        out = self.core.feed(payload)
        self.link_cycles += 3 + len(payload) + (self.gather if out else 0)
        return out

    def _reset_core(self):
        if self.core_factory is not None:
            fresh = self.core_factory()
            if hasattr(self.core, "stores") and hasattr(fresh, "stores"):
                fresh.stores = self.core.stores
            self._count_runs(fresh)
            self.core = fresh

    def exchange(self, data):
        """Line bytes in, the line bytes the board answers with.

        Returns
        -------
        bytes
        """
        self.link.feed(data)
        return self.link.transmit()

    def line_quiet(self):
        """The line went quiet: a frame being received is truncated."""
        self.link.line_quiet()
        return self.link.transmit()


class GoldenPipe:
    """A pipe to a :class:`GoldenBoard` over a modelled 8N1 line at ``baud``, in modelled time.

    Each direction is a line that carries one byte per ``10/baud`` s; a frame reaches the other
    side when its last byte has. The board answers a frame as soon as it has it, after the RUN
    cycles it started (at ``clk_hz``; the driver's STATUS polls never see the golden core
    busy). :meth:`read` and :meth:`idle` advance the modelled clock instead of waiting, so a run
    takes the time its line bytes and RUNs need, not wall time: `now` after a run is the time a
    board would take with an instant host and no USB latency.

    Parameters
    ----------
    board : GoldenBoard
    baud : int
    clk_hz : float
        Core clock, for :meth:`idle`.
    name : str
    """

    base_timeout = 0.05

    def __init__(self, board, *, baud=115200, clk_hz=12e6, name="sim:golden",
                 frame_timeout=0.01):
        self.board = board
        self.baud, self.clk_hz, self.name = baud, clk_hz, name
        self.byte_time = 10.0 / baud
        self.frame_timeout = frame_timeout
        self._now = 0.0
        self._host_free = 0.0
        self._board_free = 0.0
        self._inbox = []            # (arrival time, bytes), in order
        self.wire_to_board = 0
        self.wire_to_host = 0

    def now(self):
        return self._now

    def _board_sends(self, data, ready):
        if data:
            start = max(ready, self._board_free)
            self._board_free = start + len(data) * self.byte_time
            self._inbox.append((self._board_free, bytes(data)))
            self.wire_to_host += len(data)

    def _check_quiet(self, t):
        # The board's frame_timeout: a frame left incomplete for that long is truncated.
        quiet_at = self._host_free + self.frame_timeout
        if self.board.link.parser.in_frame and t >= quiet_at:
            self._board_sends(self.board.line_quiet(), quiet_at)

    async def write(self, data):
        data = bytes(data)
        self._check_quiet(self._now)
        start = max(self._now, self._host_free)
        self._host_free = start + len(data) * self.byte_time
        self.wire_to_board += len(data)
        cycles = self.board.compute_cycles + self.board.link_cycles
        out = self.board.exchange(data)
        self._board_sends(out, self._host_free + (self.board.compute_cycles
                                                  + self.board.link_cycles - cycles) / self.clk_hz)

    async def read(self, timeout):
        self._check_quiet(self._now + timeout)
        if not self._inbox:
            self._now += timeout
            return b""
        t, _ = self._inbox[0]
        if t > self._now + timeout:
            self._now += timeout
            return b""
        self._now = max(self._now, t)
        out = bytearray()
        while self._inbox and self._inbox[0][0] <= self._now:
            out += self._inbox.pop(0)[1]
        return bytes(out)

    async def idle(self, cycles):
        self._now += cycles / self.clk_hz

    def close(self):
        pass


class NoisyPipe:
    """A pipe that damages what passes through it: for error-injection tests and figures.

    Each chunk written (towards the board) or read (towards the host) is, with the given
    probabilities, hit by one flipped bit, one dropped byte, or garbage inserted before it; with
    ``per_byte`` the probabilities apply to each byte instead (line noise, whatever the chunk
    sizes: a pseudo-terminal or a UART hands over bytes in chunks of any size).

    Parameters
    ----------
    pipe
        The pipe to wrap.
    flip, drop, garbage : float
        Probability per chunk (or byte) of each damage.
    seed : int
    directions : str
        ``"both"``, ``"to_board"`` or ``"to_host"``.
    per_byte : bool

    Attributes
    ----------
    damaged : dict
        Counts of each damage done.
    """

    def __init__(self, pipe, *, flip=0.0, drop=0.0, garbage=0.0, seed=0, directions="both",
                 per_byte=False):
        self.pipe = pipe
        self.per_byte = per_byte
        self.flip, self.drop, self.garbage = flip, drop, garbage
        self.rng = random.Random(seed)
        self.directions = directions
        self.damaged = {"flip": 0, "drop": 0, "garbage": 0}
        self.enabled = True

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def _damage(self, data):
        data = bytearray(data)
        if not self.enabled or not data:
            return bytes(data)
        r = self.rng
        if self.per_byte:
            out = bytearray()
            for b in data:
                if r.random() < self.garbage:
                    out += bytes(r.randrange(256) for _ in range(r.randrange(1, 9)))
                    self.damaged["garbage"] += 1
                if r.random() < self.drop:
                    self.damaged["drop"] += 1
                    continue
                if r.random() < self.flip:
                    b ^= 1 << r.randrange(8)
                    self.damaged["flip"] += 1
                out.append(b)
            return bytes(out)
        if r.random() < self.flip:
            i = r.randrange(len(data))
            data[i] ^= 1 << r.randrange(8)
            self.damaged["flip"] += 1
        if r.random() < self.drop and len(data) > 1:
            del data[r.randrange(len(data))]
            self.damaged["drop"] += 1
        if r.random() < self.garbage:
            data[0:0] = bytes(r.randrange(256) for _ in range(r.randrange(1, 24)))
            self.damaged["garbage"] += 1
        return bytes(data)

    async def write(self, data):
        if self.directions in ("both", "to_board"):
            data = self._damage(data)
        await self.pipe.write(data)

    async def read(self, timeout):
        data = await self.pipe.read(timeout)
        if self.directions in ("both", "to_host"):
            data = self._damage(data)
        return data


def describe_command(data):
    """A short name of the command that ``data`` (one ``send``) starts, for error messages:
    ``"READ spad=2 addr=0 count=16"``, ``"INFO"``, or its first bytes in hex.

    Returns
    -------
    str
    """
    from tessera.hdl.ctrl.protocol import COMMANDS
    data = bytes(data)
    if not data:
        return "an empty send"
    for c in COMMANDS:
        if c.op == data[0]:
            n = c.args.nbytes
            if len(data) >= 1 + n and n:
                args = c.args.unpack(data[1:1 + n])
                return c.name + " " + " ".join(f"{k}={v}" for k, v in args.items())
            return c.name
    return f"{len(data)} bytes {data[:8].hex(' ')}{' ...' if len(data) > 8 else ''}"


@dataclasses.dataclass(frozen=True)
class LinkInfo:
    """What a board's HELLO reply says about its framer."""
    version: int
    max_payload: int
    rx_buffer: int
    tx_buffer: int

    @classmethod
    def unpack(cls, payload):
        if len(payload) < ff.HELLO_REPLY_BYTES:
            raise ValueError(f"HELLO reply of {len(payload)} bytes; expected "
                             f"{ff.HELLO_REPLY_BYTES}")
        u16 = [int.from_bytes(payload[i:i + 2], "little") or 65536 for i in (1, 3, 5)]
        return cls(payload[0], *u16)


@dataclasses.dataclass
class LinkStats:
    """Counters of a :class:`FramedTransport`.

    ``payload_out``/``payload_in``: stream bytes the driver sent / received (once each);
    ``wire_out``/``wire_in``: line bytes written / read (frames, retransmissions, ACKs and
    garbage included); ``retransmitted``: payload bytes sent again; ``naks_in``/``naks_out``:
    NAK frames received / sent; ``refused_in``: frames from the board the host refused;
    ``timeouts``: retransmission timer expiries.
    """
    payload_out: int = 0
    payload_in: int = 0
    wire_out: int = 0
    wire_in: int = 0
    frames_out: int = 0
    frames_in: int = 0
    retransmitted: int = 0
    naks_in: int = 0
    naks_out: int = 0
    refused_in: int = 0
    timeouts: int = 0
    hellos: int = 0


class FramedTransport:
    """The host driver's transport over the framed link (`tessera.sim.driver.TesseraDriver`
    runs on it unchanged): a reliable byte stream each way, made of frames that are
    acknowledged, and retransmitted go-back-N when refused or lost.

    Call :meth:`open` first (HELLO: resets the board's link and core, learns its sizes). Each
    ``send`` is remembered as the current command: when the link fails, :class:`LinkError`
    names it. A failure is ``retries`` retransmissions (timer expiries or NAKs) in a row
    without progress: :class:`LinkTimeout` when nothing came back, :class:`LinkCorrupt` when
    frames kept being refused.

    Parameters
    ----------
    pipe
        See the module docstring.
    retries : int
        Retransmissions in a row without progress before giving up, at least 1.
    window : int, optional
        Payload bytes in flight towards the board (default: the board's receive buffer).
    timeout : float, optional
        Seconds without progress before a retransmission (default: the pipe's
        ``base_timeout`` plus 3 times the line time of a full window).
    hint : str
        Appended to timeout messages (e.g. the baud rate to check).
    """

    def __init__(self, pipe, *, retries=8, window=None, timeout=None, hint=""):
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 1:
            raise ValueError(f"retries must be an integer >= 1, not {retries!r}")
        self.pipe = pipe
        self.retries = retries
        self._window = window
        self._timeout = timeout
        self.hint = hint
        self.info = None
        self.stats = LinkStats()
        self.label = "HELLO"
        self._reset_state()

    def _reset_state(self):
        self._tx = bytearray()        # unacknowledged stream bytes from offset _tx_base
        self._tx_base = 0
        self._tx_next = 0
        self._tx_high = 0             # highest offset sent so far (for retransmission counts)
        self._rx = bytearray()        # stream bytes received, not yet returned by recv
        self._rx_expected = 0
        self._armed = True
        self._ack_due = False
        self._strikes = 0
        self._reasons = {}
        self._last_sent = b""
        self._garbage = bytearray()
        self._pause_until = 0.0
        self._last_rx_at = 0.0
        self._outbox = bytearray()    # control frames to write at the end of the step
        self._hellos = []             # HELLO replies seen (while opening)
        max_payload = self.info.max_payload if self.info else 256
        self._parser = FrameParser(max_payload=max_payload, decide=self._decide,
                                   check_control=True, on_event=self._on_event)

    # -- sizes and timing -----------------------------------------------------------------
    @property
    def max_payload(self):
        return self.info.max_payload

    @property
    def window(self):
        return self._window or self.info.rx_buffer

    @property
    def _quiet_time(self):
        # Silence inside a frame that makes it a truncated one (the board uses 10 ms).
        return max(32 * self.pipe.byte_time, self.pipe.base_timeout / 4)

    @property
    def timeout(self):
        """Seconds without progress before a retransmission."""
        if self._timeout is not None:
            return self._timeout
        p = self.info.max_payload if self.info else 256
        w = self.window if self.info else 1024
        line = (w + 2 * p + 64) * self.pipe.byte_time
        return self.pipe.base_timeout + 3 * line

    # -- opening --------------------------------------------------------------------------
    async def open(self):
        """HELLO: reset the board's link (and core), learn its sizes.

        Returns
        -------
        LinkInfo

        Raises
        ------
        LinkTimeout
            No HELLO reply after ``retries`` + 1 tries (naming what was sent and anything
            that came back that is not a frame).
        """
        self.label = "HELLO"
        hello_timeout = self.pipe.base_timeout + 64 * self.pipe.byte_time
        while await self.pipe.read(0):      # stale bytes from an earlier session
            pass
        rng = random.Random()
        for _ in range(self.retries + 1):
            nonce = rng.randrange(ff.SEQ_MOD)
            frame = encode_frame(ff.HELLO, nonce)
            self._last_sent = frame
            await self._write(frame)
            self.stats.hellos += 1
            end = self.pipe.now() + hello_timeout
            while self.pipe.now() < end:
                data = await self.pipe.read(max(0.0, end - self.pipe.now()))
                if not data:
                    break
                self.stats.wire_in += len(data)
                self._hellos.clear()
                self._parser.feed(data)
                self._outbox.clear()
                for ev in self._hellos:
                    if ev.seq == nonce:
                        try:
                            info = LinkInfo.unpack(ev.payload)
                        except ValueError:
                            continue
                        if info.version != ff.LINK_VERSION:
                            raise LinkError(f"HELLO: the board on {self.pipe.name} speaks link "
                                            f"protocol v{info.version} and this host "
                                            f"v{ff.LINK_VERSION}; rebuild the bitstream with "
                                            f"this tessera")
                        self.info = info
                        self._reset_state()
                        return info
                self._note_garbage(data)
        raise self._timeout_error("no answer to HELLO", frame)

    def _note_garbage(self, data):
        if self._parser.garbage and len(self._garbage) < 16:
            self._garbage += data[:16 - len(self._garbage)]

    # -- the transport API ----------------------------------------------------------------
    async def send(self, data):
        """Queue ``data`` for the core and send what the window allows (the rest goes out as
        acknowledgements come in, while :meth:`recv` waits)."""
        if self.info is None:
            raise LinkError("send before open(): the link has not been set up with HELLO")
        data = bytes(data)
        self.label = describe_command(data)
        self._tx += data
        self.stats.payload_out += len(data)
        self._strikes = 0
        self._progress_at = self.pipe.now()
        await self._transmit()

    async def recv(self, n):
        """The next ``n`` bytes from the core.

        Raises
        ------
        LinkTimeout, LinkCorrupt
            After ``retries`` retransmissions in a row without progress.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be a non-negative integer, not {n!r}")
        if self.info is None:
            raise LinkError("recv before open(): the link has not been set up with HELLO")
        self._progress_at = self.pipe.now()
        while len(self._rx) < n:
            await self._step(waiting=True)
        out = bytes(self._rx[:n])
        del self._rx[:n]
        self.stats.payload_in += n
        return out

    async def idle(self, cycles):
        """Let the core run ``cycles`` cycles (the pipe's notion of time), acknowledging and
        retransmitting meanwhile."""
        await self.flush()
        await self.pipe.idle(cycles)

    async def flush(self):
        """Wait until the board has acknowledged everything sent."""
        if self.info is None:
            return
        self._progress_at = self.pipe.now()
        while self._tx:
            await self._step(waiting=False)

    def close(self):
        self.pipe.close()

    async def __aenter__(self):
        if self.info is None:
            await self.open()
        return self

    async def __aexit__(self, *exc):
        self.close()

    # -- the machinery --------------------------------------------------------------------
    async def _write(self, data):
        self.stats.wire_out += len(data)
        await self.pipe.write(data)

    async def _transmit(self):
        """Send data frames from ``_tx_next`` while the window has room (one write)."""
        now = self.pipe.now()
        if now < self._pause_until:
            return
        out = bytearray()
        end = self._tx_base + len(self._tx)
        limit = self._tx_base + self.window
        while self._tx_next < min(end, limit):
            size = min(end, limit, self._tx_next + self.max_payload) - self._tx_next
            off = self._tx_next - self._tx_base
            out += encode_frame(ff.DATA, self._tx_next, self._tx[off:off + size])
            if self._tx_next < self._tx_high:
                self.stats.retransmitted += min(size, self._tx_high - self._tx_next)
            self._tx_next += size
            self._tx_high = max(self._tx_high, self._tx_next)
            self.stats.frames_out += 1
        if out:
            self._last_sent = bytes(out[:64])
            await self._write(out)

    def _control(self, kind, code=None):
        payload = b"" if code is None else bytes([code])
        self.stats.frames_out += 1
        if kind == ff.NAK:
            self.stats.naks_out += 1
        self._outbox += encode_frame(kind, self._rx_expected, payload)

    def _decide(self, seq, length):
        behind = _behind(self._rx_expected, seq)
        if behind == 0:
            self._armed = True              # the board is (re)sending from here
            return TAKE
        if behind < 0x8000:
            self._ack_due = True            # a duplicate: our ACK was lost
            return SKIP
        return Reason.SEQUENCE

    def _progress(self):
        self._strikes = 0
        self._reasons.clear()
        self._progress_at = self.pipe.now()

    def _strike(self, why):
        self._strikes += 1
        if why is not None:
            self._reasons[why] = self._reasons.get(why, 0) + 1
        self._progress_at = self.pipe.now()
        if self._strikes > self.retries:
            raise self._failure()

    def _failure(self):
        refused = {k: v for k, v in self._reasons.items() if k != "timeout"}
        if refused:
            what = ", ".join(f"{k} ({v}x)" for k, v in refused.items())
            return LinkCorrupt(f"{self.label}: the link to {self.pipe.name} kept failing: "
                               f"{self.retries} retries in a row, frames refused: {what}; "
                               f"check the cable, the baud rate and the board's clock"
                               + (f" ({self.hint})" if self.hint else ""))
        return self._timeout_error(f"no answer after {self.retries} retries",
                                   self._last_sent)

    def _timeout_error(self, what, sent):
        shown = sent[:16].hex(" ") + (" ..." if len(sent) > 16 else "")
        extra = ""
        if self._garbage:
            extra = (f"; received {self._parser.garbage} bytes that are not tessera frames "
                     f"({bytes(self._garbage[:8]).hex(' ')} ...): a bitstream without the "
                     f"framed link, or the wrong baud rate?")
        elif not self.info:
            extra = "; is the board programmed with a tessera bitstream"
            extra += f" ({self.hint})?" if self.hint else "?"
        return LinkTimeout(f"{self.label}: {what} from {self.pipe.name} within "
                           f"{self.timeout if self.info else self.pipe.base_timeout:.3g} s each "
                           f"(sent {len(sent)} bytes: {shown}){extra}")

    async def _step(self, *, waiting):
        """One round: transmit, read what comes (up to the timer), handle it, run the timer."""
        await self._transmit()
        deadline = self._progress_at + self.timeout
        left = deadline - self.pipe.now()
        data = await self.pipe.read(min(left, self.timeout / 4)) if left > 1e-9 else b""
        try:
            if data:
                self.stats.wire_in += len(data)
                self._last_rx_at = self.pipe.now()
                self._parser.feed(data)
                self._note_garbage(data)
            elif self._parser.in_frame and \
                    self.pipe.now() - self._last_rx_at >= self._quiet_time:
                self._parser.line_quiet()
            if self._ack_due:
                self._ack_due = False
                self._control(ff.ACK)
            if self.pipe.now() >= deadline - 1e-9:
                self.stats.timeouts += 1
                if self._tx:
                    self._tx_next = self._tx_base           # go back N
                    self._strike("timeout")
                elif waiting:
                    self._strike("timeout")
                    self._control(ff.NAK, REASON_TIMEOUT)   # "resend from here"
                else:
                    self._progress_at = self.pipe.now()
        finally:
            if self._outbox:
                out, self._outbox = bytes(self._outbox), bytearray()
                await self._write(out)

    def _on_event(self, ev):
        if True:
            if isinstance(ev, Refused):
                # One loss makes the frames after it out of sequence too: like the board, the
                # host answers (and counts as a retry) only the first refusal after progress.
                self.stats.refused_in += 1
                self._reasons[str(ev)] = self._reasons.get(str(ev), 0) + 1
                if self._armed:
                    self._armed = False
                    self._control(ff.NAK, ev.reason)
                    self._strike(None)
            elif isinstance(ev, tuple):          # ("skipped", frame): a duplicate
                return
            elif ev.kind == ff.HELLO:
                self._hellos.append(ev)
            elif ev.kind == ff.DATA:
                self.stats.frames_in += 1
                self._rx += ev.payload
                self._rx_expected += len(ev.payload)
                self._armed = True
                self._ack_due = True
                self._progress()
            elif ev.kind in (ff.ACK, ff.NAK):
                self.stats.frames_in += 1
                span = (ev.seq - self._tx_base) % ff.SEQ_MOD
                if span > len(self._tx):
                    return                       # not about anything we sent
                if span:
                    del self._tx[:span]
                    self._tx_base += span
                    self._progress()
                self._tx_next = max(self._tx_next, self._tx_base)
                if ev.kind == ff.NAK:
                    self.stats.naks_in += 1
                    reason = ev.payload[0] if ev.payload else 0
                    self._tx_next = self._tx_base
                    if reason == Reason.FULL:
                        # The core has not read what it has: give it a line time to.
                        self._pause_until = self.pipe.now() + 8 * self.pipe.byte_time
                    self._strike(_REASONS.get(reason, f"NAK reason {reason}"))
