"""The tessera core: command decoder, sequencer, scratchpads and a PE array."""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.array.systolic import SystolicArray
from tessera.hdl.ctrl.decoder import CommandDecoder
from tessera.hdl.ctrl.protocol import INFO_BYTES, VERSION
from tessera.hdl.ctrl.sequencer import Sequencer
from tessera.hdl.mem.scratchpad import Scratchpad


__all__ = ["TesseraCore"]


class TesseraCore(wiring.Component):
    """A complete accelerator core behind a byte-stream host interface.

    ``host bytes -> CommandDecoder -> Sequencer -> SystolicArray of PEs``, with three
    scratchpads: A (activations, ``rows`` per word), B (weights, ``cols`` per word) and C
    (results, ``cols`` per word). The command set is docs/commands.md; a RUN's cycle count is
    `tessera.hdl.ctrl.sequencer.run_cycles`.

    Parameters
    ----------
    rows, cols : int
        Array shape.
    pe : callable
        Returns a new `tessera.hdl.array.pe.PE` (all of one signature).
    a_width, b_width, acc_width : int
        Operand and result widths of the PE (bits).
    depths : tuple of 3 int
        Depths of scratchpads A, B, C in words (each at most 32768).
    pe_code : int
        PE kind code reported by INFO.
    accumulate : bool
        Whether RUN supports ``FLAG_ACCUMULATE`` (integer lanes only).

    Members
    -------
    i : In(stream.Signature(8))
    o : Out(stream.Signature(8))
    busy : Out(1)
        A RUN is executing.
    error : Out(1)
        An error was reported and not yet read by STATUS.
    """

    def __init__(self, *, rows, cols, pe, a_width, b_width, acc_width, depths, pe_code,
                 accumulate=True):
        self._array = SystolicArray(rows=rows, cols=cols, pe=pe)
        self._rows, self._cols = rows, cols
        self._widths = (a_width, b_width, acc_width)
        self._depths = tuple(depths)
        for d in self._depths:
            if not 16 <= d <= 32768:
                raise ValueError(f"scratchpad depth must be 16..32768, not {d}")
        self._pe_code = pe_code
        self._accumulate = accumulate
        super().__init__({
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "busy": Out(1),
            "error": Out(1),
        })

    @property
    def pe_latency(self):
        return self._array.pe_latency

    @property
    def word_bits(self):
        a_w, b_w, acc_w = self._widths
        return (self._rows * a_w, self._cols * b_w, self._cols * acc_w)

    def info_bytes(self):
        """The INFO payload (16 bytes, docs/commands.md)."""
        a_w, b_w, acc_w = self._widths
        d = self._depths
        return bytes([VERSION, self._rows, self._cols, a_w, b_w, acc_w, self._pe_code,
                      self.pe_latency]) + b"".join(x.to_bytes(2, "little") for x in d) \
            + bytes([int(self._accumulate), 0])

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        wa, wb, wc = self.word_bits
        da, db, dc = self._depths
        m.submodules.array = array = self._array
        m.submodules.spad_a = spad_a = Scratchpad(width=wa, depth=da)
        m.submodules.spad_b = spad_b = Scratchpad(width=wb, depth=db)
        m.submodules.spad_c = spad_c = Scratchpad(width=wc, depth=dc)
        m.submodules.seq = seq = Sequencer(
            rows=R, cols=C, a_depth=da, b_depth=db, c_depth=dc, c_word_bits=wc,
            acc_width=self._widths[2], pe_latency=self.pe_latency, accumulate=self._accumulate)
        info = self.info_bytes()
        assert len(info) == INFO_BYTES - 1
        m.submodules.dec = dec = CommandDecoder(word_bits=(wa, wb, wc), depths=(da, db, dc),
                                                info=info)

        wiring.connect(m, wiring.flipped(self.i), dec.i)
        wiring.connect(m, dec.o, wiring.flipped(self.o))
        m.d.comb += [self.busy.eq(seq.busy), self.error.eq(dec.error)]

        # Decoder <-> sequencer.
        for name in ("start", "m_tiles", "n_tiles", "k", "a_base", "b_base", "c_base", "flags"):
            m.d.comb += getattr(seq, name).eq(getattr(dec, f"seq_{name}"))
        for name in ("busy", "check_done", "check_err", "cycles"):
            m.d.comb += getattr(dec, f"seq_{name}").eq(getattr(seq, name))

        # Writes to A and B come only from the host; the sequencer only reads them, so the host
        # may load the next layer's operands while a RUN executes (software double buffering).
        for spad, s in ((spad_a, 0), (spad_b, 1)):
            m.d.comb += [spad.w_addr.eq(dec.w_addr), spad.w_data.eq(dec.w_data),
                         spad.w_en.eq(getattr(dec, f"w_en{s}"))]
        m.d.comb += [dec.r_data0.eq(spad_a.r_data), dec.r_data1.eq(spad_b.r_data),
                     dec.r_data2.eq(spad_c.r_data)]
        with m.If(seq.busy):
            m.d.comb += [
                spad_a.r_addr.eq(seq.a_addr), spad_a.r_en.eq(seq.a_en),
                spad_b.r_addr.eq(seq.b_addr), spad_b.r_en.eq(seq.b_en),
                spad_c.r_addr.eq(seq.c_raddr), spad_c.r_en.eq(seq.c_ren),
                spad_c.w_addr.eq(seq.c_waddr), spad_c.w_data.eq(seq.c_wdata),
                spad_c.w_en.eq(seq.c_wen),
            ]
        with m.Else():
            m.d.comb += [
                spad_a.r_addr.eq(dec.r_addr), spad_a.r_en.eq(dec.r_en0),
                spad_b.r_addr.eq(dec.r_addr), spad_b.r_en.eq(dec.r_en1),
                spad_c.r_addr.eq(dec.r_addr), spad_c.r_en.eq(dec.r_en2),
                spad_c.w_addr.eq(dec.w_addr), spad_c.w_data.eq(dec.w_data),
                spad_c.w_en.eq(dec.w_en2),
            ]

        # Sequencer <-> array: operand words straight from the scratchpads' read ports.
        m.d.comb += [
            array.a.as_value().eq(spad_a.r_data), array.b.as_value().eq(spad_b.r_data),
            array.valid.eq(seq.pe_valid), array.first.eq(seq.pe_first),
            array.last.eq(seq.pe_last),
            seq.arr_valid.eq(array.out_valid), seq.arr_data.eq(array.out_data.as_value()),
            seq.c_rdata.eq(spad_c.r_data),
        ]
        return m
