"""Framed, CRC-checked, retransmitting host link between a UART byte pipe and a core."""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tessera.hdl.io import frame_format as ff
from tessera.hdl.io.params import _check_int

__all__ = ["FramedLink", "LINK_CRC", "check_link_args"]

#: The CRC of both header and payload: CRC-16/IBM-3740 (polynomial 0x1021, init 0xFFFF, no
#: reflection, no final XOR), sent most significant byte first so that the CRC register over a
#: field and its CRC is 0.
LINK_CRC = catalog.CRC16_IBM_3740


def check_link_args(*, max_payload=256, rx_buffer=1024, tx_buffer=1024, gather=32,
                    frame_timeout=0):
    """Check `FramedLink`'s parameters without building one; raise ValueError naming the
    first bad one."""
    ff.check_link_sizes(max_payload, rx_buffer, tx_buffer)
    _check_int("gather", gather, 1)
    _check_int("frame_timeout", frame_timeout, 0)


class FramedLink(wiring.Component):
    """Reliable byte pipe over a lossy line: frames with CRCs, acknowledgements, go-back-N.

    The host's byte stream reaches ``o`` exactly once and in order, whatever the line does to
    the frames carrying it (flipped bits, lost or extra bytes, garbage between frames), and the
    core's ``i`` bytes reach the host the same way. The wire format is
    :mod:`tessera.hdl.io.frame_format`; the protocol is ``docs/link.md``. In short:

    * a data frame carries the stream offset of its first byte (``SEQ``); the receiver takes
      it only at the offset it expects, with a good header CRC and a good payload CRC, into a
      receive buffer of ``rx_buffer`` bytes; only then does the payload become visible on ``o``
      (a refused frame changes nothing) and an ACK with the new expected offset is sent;
    * a refused frame (bad header or payload CRC, wrong length, no room, unknown type, out of
      sequence, or the line quiet for ``frame_timeout`` cycles inside it) is answered with a
      NAK giving the reason and the expected offset, once: after a NAK the receiver stays
      silent about further refused frames until a frame with the expected offset arrives
      (HDLC's REJ rule, so a burst of frames after a lost one draws one NAK, not one each). A
      duplicate (an offset already taken) is answered with an ACK;
    * bytes from ``i`` wait in a transmit buffer of ``tx_buffer`` bytes until the host
      acknowledges them; a data frame goes out when ``max_payload`` bytes are waiting or no
      new byte has come for ``gather`` cycles. A NAK from the host rewinds the sender to its
      offset, an ACK frees the buffer up to its offset;
    * HELLO (``SEQ`` = a nonce) resets both directions to offset 0, empties both buffers,
      pulses ``core_reset`` and is answered with a HELLO frame echoing the nonce, whose payload
      gives the link version, ``max_payload``, ``rx_buffer`` and ``tx_buffer``.

    Control frames (ACK, NAK, HELLO replies) go out between data frames, before them.

    Throughput: the receive side takes one line byte per cycle (``line_rx.ready`` drops for
    one cycle after each frame's header and payload, while the CRC is checked) and ``o``
    delivers one byte per cycle; the transmit side sends ``max_payload`` payload bytes in
    ``max_payload + 10`` line bytes. Latency: a data frame's payload appears on ``o`` 3 cycles
    after its last CRC byte.

    Parameters
    ----------
    max_payload : int
        Largest data-frame payload accepted and sent, 1..32768.
    rx_buffer, tx_buffer : int
        Buffer sizes in bytes, powers of two in 16..32768, at least ``max_payload``.
    gather : int
        Cycles without a new byte on ``i`` after which waiting bytes are sent in a frame shorter
        than ``max_payload``, at least 1.
    frame_timeout : int
        Cycles of silence on ``line_rx`` inside a frame after which the frame counts as
        truncated; 0 never.

    Members
    -------
    line_rx : In(stream.Signature(8))
        Bytes from the line (a UART receiver).
    line_tx : Out(stream.Signature(8))
        Bytes to the line (a UART transmitter).
    o : Out(stream.Signature(8))
        The host's byte stream, to the core's ``i``.
    i : In(stream.Signature(8))
        The core's ``o`` bytes, for the host.
    core_reset : Out(1)
        One-cycle pulse when a HELLO resets the link: reset the core with it.
    accepted : Out(1)
        One-cycle pulse per data frame taken.
    rejected : Out(1)
        One-cycle pulse per frame refused (NAKed or not).
    """

    def __init__(self, *, max_payload=256, rx_buffer=1024, tx_buffer=1024, gather=32,
                 frame_timeout=0):
        check_link_args(max_payload=max_payload, rx_buffer=rx_buffer, tx_buffer=tx_buffer,
                        gather=gather, frame_timeout=frame_timeout)
        self._max_payload = max_payload
        self._rx_buffer = rx_buffer
        self._tx_buffer = tx_buffer
        self._gather = gather
        self._frame_timeout = frame_timeout
        super().__init__({
            "line_rx": In(stream.Signature(8)),
            "line_tx": Out(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "i": In(stream.Signature(8)),
            "core_reset": Out(1),
            "accepted": Out(1),
            "rejected": Out(1),
        })

    @property
    def max_payload(self):
        """Largest data-frame payload in bytes.

        Returns
        -------
        int
        """
        return self._max_payload

    @property
    def rx_buffer(self):
        """Receive buffer size in bytes.

        Returns
        -------
        int
        """
        return self._rx_buffer

    @property
    def tx_buffer(self):
        """Transmit buffer size in bytes.

        Returns
        -------
        int
        """
        return self._tx_buffer

    @property
    def hello_reply(self):
        """The HELLO reply payload this link sends.

        Returns
        -------
        bytes
        """
        return bytes([ff.LINK_VERSION, *self._max_payload.to_bytes(2, "little"),
                      *(self._rx_buffer % 65536).to_bytes(2, "little"),
                      *(self._tx_buffer % 65536).to_bytes(2, "little")])

    def elaborate(self, platform):
        m = Module()
        P, RXB, TXB = self._max_payload, self._rx_buffer, self._tx_buffer
        rx_bits, tx_bits = RXB.bit_length() - 1, TXB.bit_length() - 1
        crc_params = LINK_CRC(data_width=8)

        m.submodules.rx_mem = rx_mem = Memory(shape=8, depth=RXB, init=[])
        rx_wp = rx_mem.write_port()
        rx_rp = rx_mem.read_port()
        m.submodules.tx_mem = tx_mem = Memory(shape=8, depth=TXB, init=[])
        tx_wp = tx_mem.write_port()
        tx_rp = tx_mem.read_port()
        m.submodules.rx_crc = rcrc = crc_params.create()
        m.submodules.tx_crc = tcrc = crc_params.create()

        # Stream offsets, modulo 2**16 (docs/link.md): host -> core (X expected, R read by the
        # core) and core -> host (E written by the core, A acknowledged, N next to send).
        x_exp = Signal(16)
        r_rd = Signal(rx_bits + 1)           # X - R <= rx_buffer: the low bits suffice
        e_wr = Signal(16)
        a_ack = Signal(16)
        n_next = Signal(16)

        # -- receive: frames from the line ----------------------------------------------------
        line = self.line_rx
        got = Signal()
        byte = line.payload
        hdr_type = Signal(8)
        hdr_seq = Signal(16)
        hdr_len = Signal(16)
        # Counters within a frame only need to reach max_payload + the CRC bytes.
        count_range = range(max(P, ff.HEADER_BYTES) + ff.CRC_BYTES + 1)
        idx = Signal(count_range)
        skip = Signal(count_range)
        short_len = hdr_len[:len(idx)]       # hdr_len where it is known to be <= max_payload
        armed = Signal(init=1)
        quiet = Signal(range(max(self._frame_timeout, 1) + 1))
        timed_out = Signal()

        reject = Signal()
        reject_code = Signal(8)
        rearm = Signal()
        ack_event = Signal()
        commit = Signal()
        peer_ack = Signal()
        peer_nak = Signal()
        hello = Signal()
        hello_r = Signal()

        used = Signal(rx_bits + 1)           # taken, not yet read: at most rx_buffer
        m.d.comb += [
            got.eq(line.valid & line.ready),
            rcrc.data.eq(byte),
            used.eq(x_exp - r_rd),
        ]
        if self._frame_timeout:
            with m.If(line.valid):
                m.d.sync += quiet.eq(0)
            with m.Elif(quiet != self._frame_timeout):
                m.d.sync += quiet.eq(quiet + 1)
            m.d.comb += timed_out.eq(quiet == self._frame_timeout)

        def refuse(code):
            m.d.comb += [reject.eq(1), reject_code.eq(code)]

        def skip_payload():
            # A header we trust: pass over its payload and CRC (or none) to the next frame.
            with m.If((hdr_len == 0) | (hdr_len > P)):
                m.next = "HUNT"
            with m.Else():
                m.d.sync += skip.eq(short_len + ff.CRC_BYTES)
                m.next = "SKIP"

        with m.FSM(name="rx_fsm") as rx_fsm:
            with m.State("HUNT"):
                with m.If(got & (byte == ff.SYNC)):
                    m.d.comb += rcrc.start.eq(1)
                    m.d.sync += [idx.eq(0), quiet.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                # TYPE, SEQ, LEN (5 bytes) and HCRC (2): all through the CRC.
                with m.If(got):
                    m.d.comb += rcrc.valid.eq(1)
                    with m.Switch(idx):
                        with m.Case(0):
                            m.d.sync += hdr_type.eq(byte)
                        with m.Case(1):
                            m.d.sync += hdr_seq[:8].eq(byte)
                        with m.Case(2):
                            m.d.sync += hdr_seq[8:].eq(byte)
                        with m.Case(3):
                            m.d.sync += hdr_len[:8].eq(byte)
                        with m.Case(4):
                            m.d.sync += hdr_len[8:].eq(byte)
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == ff.HEADER_BYTES - 2):
                        m.next = "CHECK"
                with m.Elif(timed_out):
                    refuse(ff.Reason.TRUNCATED)
                    m.next = "HUNT"
            with m.State("CHECK"):
                behind = Signal(16)
                m.d.comb += behind.eq(x_exp - hdr_seq)
                with m.If(~rcrc.match_detected):
                    refuse(ff.Reason.HEADER)
                    m.next = "HUNT"
                with m.Elif(hdr_type == ff.DATA):
                    with m.If((hdr_len == 0) | (hdr_len > P)):
                        refuse(ff.Reason.LENGTH)
                        m.next = "HUNT"
                    with m.Elif(behind == 0):
                        # The frame we expect: the sender is (re)sending from here, so a
                        # refusal of it is worth a NAK again.
                        m.d.comb += rearm.eq(1)
                        with m.If(short_len + used > RXB):
                            refuse(ff.Reason.FULL)
                            skip_payload()
                        with m.Else():
                            m.d.comb += rcrc.start.eq(1)
                            m.d.sync += idx.eq(0)
                            m.next = "PAYLOAD"
                    with m.Elif(~behind[15]):
                        m.d.comb += ack_event.eq(1)      # a duplicate: acknowledge again
                        skip_payload()
                    with m.Else():
                        refuse(ff.Reason.SEQUENCE)
                        skip_payload()
                with m.Elif(hdr_type == ff.ACK):
                    m.d.comb += peer_ack.eq(1)
                    skip_payload()
                with m.Elif(hdr_type == ff.NAK):
                    m.d.comb += peer_nak.eq(1)
                    skip_payload()
                with m.Elif(hdr_type == ff.HELLO):
                    m.d.comb += hello.eq(1)
                    skip_payload()
                with m.Else():
                    refuse(ff.Reason.TYPE)
                    m.next = "HUNT"
            with m.State("PAYLOAD"):
                with m.If(got):
                    m.d.comb += [
                        rcrc.valid.eq(1),
                        rx_wp.en.eq(idx < short_len),        # not the CRC bytes
                        rx_wp.addr.eq((x_exp[:rx_bits] + idx)[:rx_bits]),
                        rx_wp.data.eq(byte),
                    ]
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == short_len + ff.CRC_BYTES - 1):
                        m.next = "PCHECK"
                with m.Elif(timed_out):
                    refuse(ff.Reason.TRUNCATED)
                    m.next = "HUNT"
            with m.State("PCHECK"):
                with m.If(rcrc.match_detected):
                    m.d.comb += [commit.eq(1), ack_event.eq(1)]
                with m.Else():
                    refuse(ff.Reason.CRC)
                m.next = "HUNT"
            with m.State("SKIP"):
                with m.If(got):
                    m.d.sync += skip.eq(skip - 1)
                    with m.If(skip == 1):
                        m.next = "HUNT"
                with m.Elif(timed_out):
                    m.next = "HUNT"
        m.d.comb += [
            line.ready.eq(~rx_fsm.ongoing("CHECK") & ~rx_fsm.ongoing("PCHECK")),
            self.accepted.eq(commit),
            self.rejected.eq(reject),
        ]

        # -- the host's bytes to the core -----------------------------------------------------
        o_valid = Signal()
        load = ~o_valid | self.o.ready
        m.d.comb += [
            rx_rp.addr.eq(r_rd[:rx_bits]),
            rx_rp.en.eq(load),
            self.o.valid.eq(o_valid),
            self.o.payload.eq(rx_rp.data),
        ]
        with m.If(load):
            m.d.sync += o_valid.eq(r_rd != x_exp[:rx_bits + 1])
            with m.If(r_rd != x_exp[:rx_bits + 1]):
                m.d.sync += r_rd.eq(r_rd + 1)

        # -- the core's bytes into the transmit buffer ----------------------------------------
        gather = Signal(range(self._gather + 1))
        in_flight = Signal(tx_bits + 1)      # written, not acknowledged: at most tx_buffer
        pending = Signal(tx_bits + 1)        # written, not sent
        m.d.comb += [
            in_flight.eq(e_wr - a_ack),
            pending.eq(e_wr - n_next),
            self.i.ready.eq(in_flight != TXB),
            tx_wp.addr.eq(e_wr[:tx_bits]),
            tx_wp.data.eq(self.i.payload),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.comb += tx_wp.en.eq(1)
            m.d.sync += [e_wr.eq(e_wr + 1), gather.eq(0)]
        with m.Elif(gather != self._gather):
            m.d.sync += gather.eq(gather + 1)
        data_ready = (pending != 0) & ((pending >= P) | (gather == self._gather))

        # -- transmit: frames to the line -----------------------------------------------------
        ctl_pending = Signal()
        ctl_nak = Signal()
        ctl_code = Signal(8)
        hello_pending = Signal()
        hello_nonce = Signal(16)

        t_type = Signal(8)
        t_seq = Signal(16)
        t_len = Signal(range(P + 1))
        t_len16 = Signal(16)
        t_buf = Signal()             # payload from the transmit buffer (else the control bytes)
        t_code = Signal(8)
        tidx = Signal(count_range)
        fetched = Signal()
        reply = Array(Const(b, 8) for b in self.hello_reply + bytes(1))
        out = self.line_tx
        sent = Signal()
        m.d.comb += [
            sent.eq(out.valid & out.ready),
            tcrc.data.eq(out.payload),
            tx_rp.addr.eq((t_seq[:tx_bits] + tidx)[:tx_bits]),
            t_len16.eq(t_len),
            tx_rp.en.eq(1),
        ]
        m.d.sync += fetched.eq(1)

        with m.FSM(name="tx_fsm"):
            with m.State("IDLE"):
                with m.If(hello_pending):
                    m.d.sync += [t_type.eq(ff.HELLO), t_seq.eq(hello_nonce),
                                 t_len.eq(ff.HELLO_REPLY_BYTES), t_buf.eq(0),
                                 hello_pending.eq(0)]
                    m.next = "SYNC"
                with m.Elif(ctl_pending):
                    m.d.sync += [t_type.eq(Mux(ctl_nak, ff.NAK, ff.ACK)), t_seq.eq(x_exp),
                                 t_len.eq(ctl_nak), t_buf.eq(0), t_code.eq(ctl_code),
                                 ctl_pending.eq(0)]
                    m.next = "SYNC"
                with m.Elif(data_ready):
                    size = Mux(pending > P, P, pending)
                    m.d.sync += [t_type.eq(ff.DATA), t_seq.eq(n_next), t_len.eq(size),
                                 t_buf.eq(1), n_next.eq(n_next + size)]
                    m.next = "SYNC"
            with m.State("SYNC"):
                m.d.comb += [out.valid.eq(1), out.payload.eq(ff.SYNC)]
                with m.If(sent):
                    m.d.sync += tidx.eq(0)
                    m.next = "HEADER"
            with m.State("HEADER"):
                fields = Array([t_type, t_seq[:8], t_seq[8:], t_len16[:8], t_len16[8:],
                                tcrc.crc[8:], tcrc.crc[:8], tcrc.crc[:8]])
                m.d.comb += [out.valid.eq(1), out.payload.eq(fields[tidx[:3]])]
                with m.If(sent):
                    m.d.comb += [tcrc.valid.eq(tidx < 5), tcrc.start.eq(tidx == 0)]
                    m.d.sync += tidx.eq(tidx + 1)
                    with m.If(tidx == ff.HEADER_BYTES - 2):
                        m.d.sync += [tidx.eq(0), fetched.eq(0)]
                        with m.If(t_len == 0):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                ctl_byte = Mux(t_type == ff.NAK, t_code, reply[tidx[:3]])
                m.d.comb += [out.valid.eq(~t_buf | fetched),
                             out.payload.eq(Mux(t_buf, tx_rp.data, ctl_byte))]
                with m.If(sent):
                    m.d.comb += [tcrc.valid.eq(1), tcrc.start.eq(tidx == 0)]
                    m.d.sync += [tidx.eq(tidx + 1), fetched.eq(0)]
                    with m.If(tidx == t_len - 1):
                        m.d.sync += tidx.eq(0)
                        m.next = "PCRC"
            with m.State("PCRC"):
                m.d.comb += [out.valid.eq(1),
                             out.payload.eq(Mux(tidx[0], tcrc.crc[:8], tcrc.crc[8:]))]
                with m.If(sent):
                    m.d.sync += tidx.eq(tidx + 1)
                    with m.If(tidx[0]):
                        m.next = "IDLE"

        # -- events from the receiver (after the transmitter: they win) -----------------------
        with m.If(commit):
            m.d.sync += [x_exp.eq(x_exp + hdr_len), armed.eq(1)]
        with m.If(ack_event):
            m.d.sync += [ctl_pending.eq(1), ctl_nak.eq(0)]
        with m.If(rearm):
            m.d.sync += armed.eq(1)
        with m.If(reject & (armed | rearm)):
            m.d.sync += [ctl_pending.eq(1), ctl_nak.eq(1), ctl_code.eq(reject_code),
                         armed.eq(0)]
        ack_span = Signal(16)
        ack_ahead = Signal(tx_bits + 1)
        m.d.comb += [ack_span.eq(hdr_seq - a_ack), ack_ahead.eq(n_next - a_ack)]
        with m.If((peer_ack | peer_nak) & (ack_span <= in_flight)):
            m.d.sync += a_ack.eq(hdr_seq)
            with m.If(peer_nak | (ack_span > ack_ahead)):
                m.d.sync += n_next.eq(hdr_seq)
        m.d.sync += hello_r.eq(hello)
        with m.If(hello):
            m.d.sync += hello_nonce.eq(hdr_seq)
        with m.If(hello_r):
            m.d.sync += [x_exp.eq(0), r_rd.eq(0), o_valid.eq(0), e_wr.eq(0), a_ack.eq(0),
                         n_next.eq(0), gather.eq(0), ctl_pending.eq(0), armed.eq(1),
                         hello_pending.eq(1)]
        m.d.comb += self.core_reset.eq(hello_r)
        return m
