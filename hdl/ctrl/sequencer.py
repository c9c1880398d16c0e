"""GEMM sequencer: checks a RUN, walks the tiles, feeds the array and stores its results."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.ctrl.protocol import Err, FLAG_ACCUMULATE


__all__ = ["Sequencer", "CHECK_CYCLES"]

#: Cycles spent validating a RUN (16 shift-add steps for the three tile products, 1 compare).
CHECK_CYCLES = 17


class Sequencer(wiring.Component):
    """Executes RUN commands against the scratchpads and the array.

    A RUN computes, for every m-tile ``mi < m_tiles`` and n-tile ``ni < n_tiles`` (m outer),
    ``C[c_base + (mi*n_tiles + ni)*rows + r][c] (+)= sum_{kk<k} A[a_base + mi*k + kk][r] *
    B[b_base + ni*k + kk][c]``, where ``A`` words hold ``rows`` activations, ``B`` words ``cols``
    weights and ``C`` words ``cols`` results. With ``FLAG_ACCUMULATE`` the results are added to
    what scratchpad C holds (read-modify-write in the output stage), which is how a K larger
    than the scratchpads is split into several RUNs.

    On ``start`` the arguments are validated for ``CHECK_CYCLES`` cycles; ``check_done`` then
    pulses with ``check_err`` = 0 (the run proceeds) or an `Err` code (nothing is touched).
    ``busy`` is high from the cycle after ``start`` until the last result is written;
    ``cycles`` counts those cycles (the golden model's `tessera.sim.core.run_cycles` predicts them).

    Parameters
    ----------
    rows, cols : int
        Array shape.
    a_depth, b_depth, c_depth : int
        Scratchpad depths in words.
    c_word_bits, acc_width : int
        Output word width and the width of one lane in it.
    pe_latency : int
        Latency of the PEs (for documentation and `run_cycles`).
    accumulate : bool
        Whether ``FLAG_ACCUMULATE`` is supported (lane-wise two's complement add).
    """

    def __init__(self, *, rows, cols, a_depth, b_depth, c_depth, c_word_bits, acc_width,
                 pe_latency, accumulate=True):
        self._rows, self._cols = rows, cols
        self._depths = (a_depth, b_depth, c_depth)
        self._acc_width = acc_width
        self._pe_latency = pe_latency
        self._accumulate = accumulate
        super().__init__({
            "start": In(1),
            "m_tiles": In(16), "n_tiles": In(16), "k": In(16),
            "a_base": In(16), "b_base": In(16), "c_base": In(16), "flags": In(8),
            "busy": Out(1), "check_done": Out(1), "check_err": Out(3), "cycles": Out(32),
            "a_addr": Out(range(a_depth)), "a_en": Out(1),
            "b_addr": Out(range(b_depth)), "b_en": Out(1),
            "pe_valid": Out(1), "pe_first": Out(1), "pe_last": Out(1),
            "arr_valid": In(1), "arr_data": In(c_word_bits),
            "c_raddr": Out(range(c_depth)), "c_ren": Out(1), "c_rdata": In(c_word_bits),
            "c_waddr": Out(range(c_depth)), "c_wdata": Out(c_word_bits), "c_wen": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        a_depth, b_depth, c_depth = self._depths

        mt, nt, k = Signal(16), Signal(16), Signal(16)
        a_base, b_base, c_base = Signal(16), Signal(16), Signal(16)
        flags = Signal(8)
        acc_mode = Signal()
        # Serial shift-add multipliers: p1 = mt*k, p2 = nt*k, p3 = mt*nt.
        x1, x2, x3 = Signal(32), Signal(32), Signal(32)
        y1, y2, y3 = Signal(16), Signal(16), Signal(16)
        p1, p2, p3 = Signal(32), Signal(32), Signal(32)
        step = Signal(range(16))
        period = Signal(16)
        total_rows = Signal(range(c_depth + 1))

        kk = Signal(16)
        mi, ni = Signal(16), Signal(16)
        a_row, b_row = Signal(17), Signal(17)
        rows_written = Signal(range(c_depth + 1))
        rd_ptr = Signal(range(c_depth))
        wr_ptr = Signal(range(c_depth))

        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        issue = Signal()
        m.d.comb += [
            self.a_addr.eq(a_row + kk), self.b_addr.eq(b_row + kk),
            self.a_en.eq(issue), self.b_en.eq(issue),
        ]
        m.d.sync += [
            self.pe_valid.eq(issue),
            self.pe_first.eq(issue & (kk == 0)),
            self.pe_last.eq(issue & (kk == k - 1)),
        ]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [
                        mt.eq(self.m_tiles), nt.eq(self.n_tiles), k.eq(self.k),
                        a_base.eq(self.a_base), b_base.eq(self.b_base), c_base.eq(self.c_base),
                        flags.eq(self.flags),
                        x1.eq(self.k), y1.eq(self.m_tiles),
                        x2.eq(self.k), y2.eq(self.n_tiles),
                        x3.eq(self.n_tiles), y3.eq(self.m_tiles),
                        p1.eq(0), p2.eq(0), p3.eq(0), step.eq(0),
                        self.busy.eq(1), self.cycles.eq(0),
                    ]
                    m.next = "CHECK"
            with m.State("CHECK"):
                for x, y, p in ((x1, y1, p1), (x2, y2, p2), (x3, y3, p3)):
                    m.d.sync += [x.eq(x << 1), y.eq(y >> 1)]
                    with m.If(y[0]):
                        m.d.sync += p.eq(p + x)
                m.d.sync += step.eq(step + 1)
                with m.If(step == 15):
                    m.next = "VERIFY"
            with m.State("VERIFY"):
                bad_arg = (mt == 0) | (nt == 0) | (k == 0) | (flags & ~FLAG_ACCUMULATE).any()
                if not self._accumulate:
                    bad_arg = bad_arg | (flags & FLAG_ACCUMULATE).any()
                bad_tile = ((a_base + p1 > a_depth) | (b_base + p2 > b_depth)
                            | (c_base + p3 * R > c_depth))
                m.d.comb += self.check_done.eq(1)
                with m.If(bad_arg):
                    m.d.comb += self.check_err.eq(Err.ARG)
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
                with m.Elif(bad_tile):
                    m.d.comb += self.check_err.eq(Err.TILE)
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
                with m.Else():
                    maxrc = max(R, C)
                    m.d.sync += [
                        period.eq(Mux(k > maxrc, k, maxrc)),
                        total_rows.eq(p3 * R),
                        acc_mode.eq(flags[0]),
                        kk.eq(0), mi.eq(0), ni.eq(0),
                        a_row.eq(a_base), b_row.eq(b_base),
                        rd_ptr.eq(c_base), wr_ptr.eq(c_base), rows_written.eq(0),
                    ]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += issue.eq(kk < k)
                m.d.sync += kk.eq(kk + 1)
                with m.If(kk == period - 1):
                    m.d.sync += [kk.eq(0), ni.eq(ni + 1), b_row.eq(b_row + k)]
                    with m.If(ni == nt - 1):
                        m.d.sync += [ni.eq(0), b_row.eq(b_base), mi.eq(mi + 1),
                                     a_row.eq(a_row + k)]
                        with m.If(mi == mt - 1):
                            m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(rows_written == total_rows):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"

        # Output stage: read the old word (for accumulation) while a row arrives, write the
        # new word in the next cycle.
        hold = Signal(len(self.arr_data), reset_less=True)
        pend = Signal()
        m.d.sync += pend.eq(self.arr_valid)
        m.d.comb += [self.c_raddr.eq(rd_ptr), self.c_ren.eq(self.arr_valid)]
        with m.If(self.arr_valid):
            m.d.sync += [hold.eq(self.arr_data), rd_ptr.eq(rd_ptr + 1)]
        w = self._acc_width
        summed = Cat(*[(self.c_rdata[i * w:(i + 1) * w] + hold[i * w:(i + 1) * w])[:w]
                       for i in range(C)])
        m.d.comb += [
            self.c_waddr.eq(wr_ptr),
            self.c_wdata.eq(Mux(acc_mode, summed, hold)),
            self.c_wen.eq(pend),
        ]
        with m.If(pend):
            m.d.sync += [wr_ptr.eq(wr_ptr + 1), rows_written.eq(rows_written + 1)]
        return m
