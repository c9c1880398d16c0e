"""Command decoder: parses host command bytes, moves scratchpad data, answers every command."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.ctrl.protocol import (ARG_BYTES, Err, INFO_BYTES, Op, STATUS_BYTES, VERSION)


__all__ = ["CommandDecoder"]


class CommandDecoder(wiring.Component):
    """Byte-stream command decoder (protocol version `VERSION`, docs/commands.md).

    Every command gets exactly one response that starts with a status byte. A malformed
    command never stalls the decoder: an unknown opcode is answered at once, a WRITE to a bad
    region still consumes (and drops) its data bytes, and STATUS is answered in every state in
    which the decoder waits for a command, including while a RUN executes.

    Parameters
    ----------
    word_bits : tuple of 3 int
        Word widths of scratchpads A, B, C.
    depths : tuple of 3 int
        Depths of scratchpads A, B, C.
    info : bytes
        The 16 INFO payload bytes (geometry, formats, depths).

    Members
    -------
    i : In(stream.Signature(8))
        Command bytes from the host.
    o : Out(stream.Signature(8))
        Response bytes to the host.
    error : Out(1)
        An error was reported and not yet read by STATUS.
    w_addr, w_data, w_en{0,1,2} : scratchpad write requests; r_addr, r_en{0,1,2}, r_data{0,1,2}:
        read requests and data (the core routes them while the sequencer is idle).
    seq_* : RUN arguments and handshake with the `Sequencer`.
    """

    def __init__(self, *, word_bits, depths, info):
        if len(info) != INFO_BYTES - 1:
            raise ValueError(f"info must be {INFO_BYTES - 1} bytes, not {len(info)}")
        self._word_bits = tuple(word_bits)
        self._depths = tuple(depths)
        self._info = bytes(info)
        self._wb = tuple((w + 7) // 8 for w in self._word_bits)
        max_bits = 8 * max(self._wb)
        members = {
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "error": Out(1),
            "w_addr": Out(16), "w_data": Out(max_bits),
            "r_addr": Out(16),
            "seq_start": Out(1), "seq_m_tiles": Out(16), "seq_n_tiles": Out(16),
            "seq_k": Out(16), "seq_a_base": Out(16), "seq_b_base": Out(16),
            "seq_c_base": Out(16), "seq_flags": Out(8),
            "seq_busy": In(1), "seq_check_done": In(1), "seq_check_err": In(3),
            "seq_cycles": In(32),
        }
        for s in range(3):
            members[f"w_en{s}"] = Out(1)
            members[f"r_en{s}"] = Out(1)
            members[f"r_data{s}"] = In(self._word_bits[s])
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        args = Signal(8 * max(ARG_BYTES.values()))
        arg_idx = Signal(range(max(ARG_BYTES.values()) + 1))
        opcode = Signal(8)
        spad = Signal(8)
        addr = Signal(17)
        count = Signal(16)
        byte_idx = Signal(range(max(self._wb) + 1))
        word = Signal(8 * max(self._wb))
        wr_pending = Signal()
        discard = Signal()
        pend_err = Signal(8)
        resp = Signal(8 * INFO_BYTES)
        resp_len = Signal(range(INFO_BYTES + 1))
        then_read = Signal()
        last_error = Signal(8)

        f_spad = args[0:8]
        f_addr = args[8:24]
        f_count = args[24:40]
        m.d.comb += [
            self.seq_m_tiles.eq(args[0:16]), self.seq_n_tiles.eq(args[16:32]),
            self.seq_k.eq(args[32:48]), self.seq_a_base.eq(args[48:64]),
            self.seq_b_base.eq(args[64:80]), self.seq_c_base.eq(args[80:96]),
            self.seq_flags.eq(args[96:104]),
            self.error.eq(last_error != 0),
        ]

        def wb_of(sel):
            return Mux(sel == 0, self._wb[0], Mux(sel == 1, self._wb[1], self._wb[2]))

        def depth_of(sel):
            return Mux(sel == 0, self._depths[0], Mux(sel == 1, self._depths[1], self._depths[2]))

        def respond(code, *, payload=None, length=1, read_after=False):
            """Load the response buffer with status ``code`` (+ ``payload``) and send it."""
            value = Cat(Const(code, 8), payload) if payload is not None else code
            stmts = [resp.eq(value),
                     resp_len.eq(length), then_read.eq(read_after)]
            if isinstance(code, int):
                if code != Err.OK:
                    stmts.append(last_error.eq(code))
            else:
                with m.If(code != 0):
                    m.d.sync += last_error.eq(code)
            m.d.sync += stmts
            m.next = "RESP"

        # Scratchpad writes happen the cycle after a word's last byte arrives.
        m.d.sync += wr_pending.eq(0)
        m.d.comb += [self.w_addr.eq(addr), self.w_data.eq(word)]
        for s in range(3):
            m.d.comb += getattr(self, f"w_en{s}").eq(wr_pending & (spad == s))
        with m.If(wr_pending):
            m.d.sync += addr.eq(addr + 1)

        m.d.comb += self.r_addr.eq(addr)
        obuf = Signal(8 * max(self._wb))

        with m.FSM():
            with m.State("OP"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [opcode.eq(self.i.payload), arg_idx.eq(0)]
                    with m.Switch(self.i.payload):
                        with m.Case(Op.INFO):
                            respond(Err.OK, payload=Const(int.from_bytes(self._info, "little"),
                                                          8 * len(self._info)),
                                    length=INFO_BYTES)
                        with m.Case(Op.STATUS):
                            m.d.sync += [
                                resp.eq(Cat(Const(Err.OK, 8), self.seq_busy,
                                            last_error != 0, Const(0, 6), last_error,
                                            self.seq_cycles)),
                                resp_len.eq(STATUS_BYTES), then_read.eq(0),
                                last_error.eq(0),
                            ]
                            m.next = "RESP"
                        with m.Case(Op.WRITE, Op.READ, Op.RUN):
                            m.next = "ARGS"
                        with m.Default():
                            respond(Err.OPCODE)
            with m.State("ARGS"):
                m.d.comb += self.i.ready.eq(1)
                nargs = Mux(opcode == Op.RUN, ARG_BYTES[Op.RUN], ARG_BYTES[Op.WRITE])
                with m.If(self.i.valid):
                    m.d.sync += [args.word_select(arg_idx, 8).eq(self.i.payload),
                                 arg_idx.eq(arg_idx + 1)]
                    with m.If(arg_idx == nargs - 1):
                        m.next = "EXEC"
            with m.State("EXEC"):
                m.d.sync += [spad.eq(f_spad), addr.eq(f_addr), count.eq(f_count),
                             byte_idx.eq(0), discard.eq(0), pend_err.eq(Err.OK)]
                bad_spad = f_spad > 2
                bad_range = (f_addr + f_count) > depth_of(f_spad)
                with m.Switch(opcode):
                    with m.Case(Op.WRITE):
                        with m.If(bad_spad):
                            respond(Err.SPAD)
                        with m.Elif(f_count == 0):
                            respond(Err.ARG)
                        with m.Else():
                            with m.If(bad_range):
                                m.d.sync += [discard.eq(1), pend_err.eq(Err.RANGE)]
                            with m.Elif(self.seq_busy & (f_spad == 2)):
                                m.d.sync += [discard.eq(1), pend_err.eq(Err.BUSY)]
                            m.next = "WDATA"
                    with m.Case(Op.READ):
                        with m.If(bad_spad):
                            respond(Err.SPAD)
                        with m.Elif(f_count == 0):
                            respond(Err.ARG)
                        with m.Elif(bad_range):
                            respond(Err.RANGE)
                        with m.Elif(self.seq_busy):
                            respond(Err.BUSY)
                        with m.Else():
                            respond(Err.OK, read_after=True)
                    with m.Default():  # RUN
                        with m.If(self.seq_busy):
                            respond(Err.BUSY)
                        with m.Else():
                            m.d.comb += self.seq_start.eq(1)
                            m.next = "RUN_CHECK"
            with m.State("RUN_CHECK"):
                with m.If(self.seq_check_done):
                    respond(self.seq_check_err)
            with m.State("WDATA"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [word.word_select(byte_idx, 8).eq(self.i.payload),
                                 byte_idx.eq(byte_idx + 1)]
                    with m.If(byte_idx == wb_of(spad) - 1):
                        m.d.sync += [byte_idx.eq(0), count.eq(count - 1),
                                     wr_pending.eq(~discard)]
                        with m.If(count == 1):
                            respond(pend_err)
            with m.State("RD_ADDR"):
                for s in range(3):
                    m.d.comb += getattr(self, f"r_en{s}").eq(spad == s)
                m.next = "RD_LOAD"
            with m.State("RD_LOAD"):
                rdata = Mux(spad == 0, self.r_data0, Mux(spad == 1, self.r_data1, self.r_data2))
                m.d.sync += [obuf.eq(rdata), byte_idx.eq(0)]
                m.next = "RD_SEND"
            with m.State("RD_SEND"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(obuf[0:8])]
                with m.If(self.o.ready):
                    m.d.sync += [obuf.eq(obuf >> 8), byte_idx.eq(byte_idx + 1)]
                    with m.If(byte_idx == wb_of(spad) - 1):
                        m.d.sync += [addr.eq(addr + 1), count.eq(count - 1)]
                        with m.If(count == 1):
                            m.next = "OP"
                        with m.Else():
                            m.next = "RD_ADDR"
            with m.State("RESP"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(resp[0:8])]
                with m.If(self.o.ready):
                    m.d.sync += [resp.eq(resp >> 8), resp_len.eq(resp_len - 1)]
                    with m.If(resp_len == 1):
                        with m.If(then_read):
                            m.next = "RD_ADDR"
                        with m.Else():
                            m.next = "OP"
        return m
