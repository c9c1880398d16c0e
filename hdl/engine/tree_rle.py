"""Ternary reduce-and-scale engine, run-length weights: decodes the non-zeros, skips the zeros."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.arith.ternary_scale import SerialScaler
from tessera.hdl.engine.base import EngineControlSignature, ResultSignature, StorePortSignature
from tessera.hdl.engine.check import SerialProducts, argument_check
from tessera.hdl.engine.params import FLAG_EPILOGUE
from tessera.hdl.engine.tree_dense import FLAG_ACCUMULATE, sum_bits, tag_results


__all__ = ["TreeRleEngine", "FLAG_ACCUMULATE", "CODE_POS", "CODE_NEG", "CODE_PAD"]

CODE_POS, CODE_NEG, CODE_PAD = 0b01, 0b11, 0b10


class TreeRleEngine(wiring.Component):
    """Executes run-length ternary RUNs: one weight entry per cycle applied to ``lanes`` rows.

    The weights of ``n`` output channels over ``k`` inputs (W transposed, ``n`` x ``k``,
    flattened row-major) are a stream of ``entries`` words ``W[w_base + e]``; an entry is a
    2-bit code ``w2`` (bits 1:0) and a zero-run ``z`` (above). Decoding keeps a position
    (row, col), starting before (0, 0): an entry other than PAD (0b10) advances it by ``z + 1``
    (a column past ``k - 1`` wraps once into the next row; a stream whose ``z`` is at most
    ``k - 1`` never needs more); codes 0b01 and 0b11 then add the activations at that column to
    S_p or S_n, 0b00 is a filler. A PAD entry does nothing (the host uses it to give a short
    row at least ``lanes`` entries, so the scaler never waits).

    An A word holds one activation of each of ``lanes`` rows: ``A[a_base + mi*k + col]`` for
    m-tile ``mi``. For every m-tile the stream is replayed; when the position enters a new row
    (and after the stream's last entry) the finished row's sums are scaled by
    ``S[s_base + row]`` and written to ``C[c_base + mi*n + row]`` (rows at or past ``n`` are
    dropped, rows the stream never reaches are not written). Cycles follow the number of
    entries: one per cycle, plus one per m-tile, plus waits for the scaler when rows are
    shorter than ``lanes`` entries (`tessera.sim.engines.tree.RleTiming`).

    With an ``epilogue`` (and ``p_depth``, the parameter store's depth), ``args`` also has
    ``p_base``; a RUN with ``FLAG_EPILOGUE`` whose ``p_base + n`` passes ``p_depth`` is an
    `Err.TILE`, and each result word (row ``row``: one output channel) is tagged with tile
    ``row``, so the output stage applies parameter word ``p_base + row`` to all its lanes.

    Members
    -------
    ctl : In(EngineControlSignature)
    a_port, w_port, s_port : Out(StorePortSignature(..., write=False))
    result : Out(ResultSignature(depths["c"], lanes * acc_bits))
    """

    NEED = ("m_tiles", "k", "n", "entries", "a_base", "w_base", "s_base", "c_base", "flags")

    def __init__(self, *, lanes, act_bits, z_bits, scale_bits, acc_bits, args, depths,
                 accumulate=True, epilogue=None, p_depth=0):
        names = {f.name for f in args.fields}
        need = set(self.NEED) | ({"p_base"} if epilogue is not None else set())
        if epilogue is not None and p_depth < 1:
            raise ValueError(f"an epilogue needs p_depth >= 1, not {p_depth!r}")
        self._epilogue = epilogue
        self._p_depth = p_depth if epilogue is not None else 0
        if not need <= names:
            raise ValueError(f"args must have the fields {list(self.NEED)}, not {sorted(names)}")
        self.lanes, self.act_bits, self.z_bits = lanes, act_bits, z_bits
        self.scale_bits, self.acc_bits = scale_bits, acc_bits
        self._args = args
        self._depths = dict(depths)
        self._accumulate = bool(accumulate)
        # A row's sum has at most k <= depth(a) terms per lane.
        self.sum_bits = sum_bits(words=self._depths["a"], inputs=1, act_bits=act_bits)
        d = self._depths
        super().__init__({
            "ctl": In(EngineControlSignature(8 * args.nbytes)),
            "a_port": Out(StorePortSignature(depth=d["a"], width=lanes * act_bits, write=False)),
            "w_port": Out(StorePortSignature(depth=d["w"], width=2 + z_bits, write=False)),
            "s_port": Out(StorePortSignature(depth=d["s"], width=2 * scale_bits, write=False)),
            "result": Out(ResultSignature(depth=d["c"], width=lanes * acc_bits)),
        })

    @property
    def epilogue(self):
        """The epilogue descriptor the output stage must apply (None: no epilogue)."""
        return self._epilogue

    @property
    def p_depth(self):
        return self._p_depth

    @property
    def p_channels(self):
        """Output channels per parameter word: 1 (all lanes of a result word are one
        channel)."""
        return 1

    def _field(self, name):
        lo, hi = self._args.bit_slice(name)
        return self.ctl.args[lo:hi]

    def elaborate(self, platform):
        m = Module()
        P, d = self.lanes, self._depths
        f = {n: Signal(16, name=f"arg_{n}") for n in self.NEED if n != "flags"}
        flags = Signal(8)
        acc_mode = Signal()
        prods = SerialProducts(2)
        a_words, c_words = prods.products
        running = Signal()

        # -- entry reader: one read in flight at most, one entry held while decode waits --------
        rd_ptr = Signal(16)          # next entry index to read in the current pass
        rd_tile = Signal(16)         # m-tile of the next read
        rd_v = Signal()              # r_data holds an entry this cycle
        hold, hold_v = Signal(2 + self.z_bits), Signal()
        reading = Signal()
        ent = Signal(2 + self.z_bits)
        ent_v = Signal()
        m.d.comb += [ent.eq(Mux(hold_v, hold, self.w_port.r_data)), ent_v.eq(hold_v | rd_v)]

        # -- decode stage ------------------------------------------------------------------------
        d_idx = Signal(16)           # entries decoded in this pass
        d_tile = Signal(16)
        d_end = Signal()             # all entries of this pass decoded: the END step is next
        d_done = Signal()            # all passes decoded
        row = Signal(16)
        cnext = Signal(17)           # column after the current position (0 at the start)
        w2 = ent[:2]
        z = ent[2:]
        is_pad = w2 == CODE_PAD
        col_a = Signal(18)
        m.d.comb += col_a.eq(cnext + z)
        wrap = Signal()
        m.d.comb += wrap.eq(~is_pad & (col_a >= f["k"]))
        col = Signal(18)
        m.d.comb += col.eq(Mux(wrap, col_a - f["k"], col_a))
        # What the step does: consume an entry, or the END step of a pass.
        step_end = running & ~d_done & d_end
        step_ent = running & ~d_done & ~d_end & ent_v
        leave = Signal()             # the step leaves row `row` (its sums start again at 0)
        flush = Signal()             # ... and row `row` is written (rows past n are dropped)
        m.d.comb += [leave.eq(step_end | (step_ent & wrap)), flush.eq(leave & (row < f["n"]))]

        m.submodules.scaler = sc = SerialScaler(lanes=P, sum_bits=self.sum_bits,
                                                scale_bits=self.scale_bits,
                                                acc_bits=self.acc_bits,
                                                s_depth=d["s"], c_depth=d["c"])
        wiring.connect(m, sc.s_port, wiring.flipped(self.s_port))
        stall = flush & ~sc.ready_next
        take = step_ent & ~stall     # an entry is consumed this cycle
        m.d.comb += self.ctl.active.eq(take)      # COUNTERS compute: one entry decoded
        end = step_end & ~stall      # the END step happens this cycle

        # Reader bookkeeping: issue a read only if nothing will be left waiting after this cycle.
        left = Signal()
        m.d.comb += left.eq((hold_v & rd_v) | ((hold_v | rd_v) & ~take))
        m.d.comb += [reading.eq(running & (rd_tile < f["m_tiles"]) & ~left),
                     self.w_port.r_addr.eq(f["w_base"] + rd_ptr), self.w_port.r_en.eq(reading)]
        m.d.sync += rd_v.eq(reading)
        with m.If(reading):
            m.d.sync += rd_ptr.eq(rd_ptr + 1)
            with m.If(rd_ptr == f["entries"] - 1):
                m.d.sync += [rd_ptr.eq(0), rd_tile.eq(rd_tile + 1)]
        with m.If(hold_v):
            with m.If(take):
                m.d.sync += [hold.eq(self.w_port.r_data), hold_v.eq(rd_v)]
        with m.Elif(rd_v & ~take):
            m.d.sync += [hold.eq(self.w_port.r_data), hold_v.eq(1)]

        # Decode state.
        a_row = Signal(17)
        m.d.comb += [self.a_port.r_addr.eq(a_row + col), self.a_port.r_en.eq(take)]
        with m.If(take):
            m.d.sync += [d_idx.eq(d_idx + 1), cnext.eq(Mux(is_pad, cnext, col + 1))]
            with m.If(wrap):
                m.d.sync += row.eq(row + 1)
            with m.If(d_idx == f["entries"] - 1):
                m.d.sync += d_end.eq(1)
        with m.If(end):
            m.d.sync += [d_end.eq(0), d_idx.eq(0), row.eq(0), cnext.eq(0),
                         d_tile.eq(d_tile + 1), a_row.eq(a_row + f["k"])]
            with m.If(d_tile == f["m_tiles"] - 1):
                m.d.sync += d_done.eq(1)

        # -- execute stage: the activations arrive; accumulate, or hand a finished row over ------
        x_v, x_flush, x_clear = Signal(), Signal(), Signal()
        x_pos, x_neg = Signal(), Signal()
        x_row, x_tile_c = Signal(16), Signal(17)
        c_tile = Signal(17)          # c_base + d_tile * n
        m.d.sync += [x_v.eq(take), x_flush.eq(flush & ~stall), x_clear.eq(leave & ~stall),
                     x_pos.eq(take & (w2 == CODE_POS) & (col < f["k"])),
                     x_neg.eq(take & (w2 == CODE_NEG) & (col < f["k"])),
                     x_row.eq(row), x_tile_c.eq(c_tile)]
        with m.If(end):
            m.d.sync += c_tile.eq(c_tile + f["n"])
        lw = self.act_bits
        for lane in range(P):
            a = self.a_port.r_data[lane * lw:(lane + 1) * lw]
            acc_p = Signal(self.sum_bits, name=f"acc_p{lane}")
            acc_n = Signal(self.sum_bits, name=f"acc_n{lane}")
            add_p = Mux(x_pos, a, 0)
            add_n = Mux(x_neg, a, 0)
            m.d.comb += [sc.sp[lane].eq(acc_p), sc.sn[lane].eq(acc_n)]
            with m.If(x_clear):
                m.d.sync += [acc_p.eq(add_p), acc_n.eq(add_n)]
            with m.Else():
                m.d.sync += [acc_p.eq(acc_p + add_p), acc_n.eq(acc_n + add_n)]
            with m.If(self.ctl.start):
                m.d.sync += [acc_p.eq(0), acc_n.eq(0)]
        epi_mode = Signal()
        tag_results(m, self, sc, x_row[:max(1, (self._p_depth - 1).bit_length())], epi_mode)
        m.d.comb += [sc.load.eq(x_flush), sc.addr.eq(x_tile_c + x_row),
                     sc.s_base.eq(f["s_base"] + x_row), sc.s_step.eq(0),
                     sc.accumulate.eq(acc_mode)]
        loads, emitted = Signal(32), Signal(32)
        with m.If(sc.load):
            m.d.sync += loads.eq(loads + 1)
        with m.If(self.result.valid):
            m.d.sync += emitted.eq(emitted + 1)

        allowed = FLAG_ACCUMULATE | ((FLAG_EPILOGUE | self._epilogue.flag_mask())
                                     if self._epilogue is not None else 0)
        bad_arg = ((f["m_tiles"] == 0) | (f["k"] == 0) | (f["n"] == 0)
                   | (f["entries"] == 0) | (flags & ~allowed & 0xFF).any())
        if not self._accumulate:
            bad_arg = bad_arg | flags[0]
        bad_tile = ((f["a_base"] + a_words > d["a"]) | (f["w_base"] + f["entries"] > d["w"])
                    | (f["s_base"] + f["n"] > d["s"]) | (f["c_base"] + c_words > d["c"]))
        p_latch = []
        if self._epilogue is not None:
            p_base = Signal(16)
            p_latch = [p_base.eq(self._field("p_base"))]
            bad_tile = bad_tile | (flags[1] & (p_base + f["n"] > self._p_depth))
        with m.FSM():
            argument_check(
                m, self.ctl, products=prods, bad_arg=bad_arg, bad_tile=bad_tile,
                latch=[*(s.eq(self._field(n)) for n, s in f.items()),
                       flags.eq(self._field("flags")), *p_latch],
                pairs=[(self._field("k"), self._field("m_tiles")),
                       (self._field("n"), self._field("m_tiles"))],
                start=[acc_mode.eq(flags[0]), epi_mode.eq(flags[1]), running.eq(1),
                       rd_ptr.eq(0), rd_tile.eq(0), hold_v.eq(0),
                       d_idx.eq(0), d_tile.eq(0), d_end.eq(0), d_done.eq(0),
                       row.eq(0), cnext.eq(0), a_row.eq(f["a_base"]), c_tile.eq(f["c_base"]),
                       loads.eq(0), emitted.eq(0)],
                run_state="RUN")
            with m.State("RUN"):
                with m.If(d_done & ~x_v & ~x_flush & (emitted == loads) & sc.idle):
                    m.d.sync += running.eq(0)
                    m.d.comb += self.ctl.done.eq(1)
                    m.next = "IDLE"
        return m
