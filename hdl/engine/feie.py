"""FEIE / ZASCA convolution engine: one pixel broadcast per cycle to ``pes`` PEs of each of
``tiles`` groups, zero pixels skipped (docs/feie.md; twin `tessera.sim.engines.feie`)."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.engine.base import EngineControlSignature, ResultSignature, StorePortSignature
from tessera.hdl.engine.check import SerialProducts, argument_check
from tessera.hdl.engine.params import FLAG_ACCUMULATE


__all__ = ["FeieHdl", "FeieArrayUnit", "FLAG_DENSE"]

FLAG_DENSE = 0x04


def _mod_const(m, x, n, name):
    """``x mod n`` for a small constant ``n`` without a divider (yosys would build a
    ``len(x)``-stage divider, too deep for synthesis): the sum of the bits' residues
    ``2**i mod n``, then a table of that sum mod ``n``."""
    if n & (n - 1) == 0:
        return x[:max(1, (n - 1).bit_length())]
    total = len(x) * (n - 1)
    s = Signal(range(total + 1), name=f"{name}_rsum")
    m.d.comb += s.eq(sum(Mux(x[i], (1 << i) % n, 0) for i in range(len(x))))
    r = Signal(range(n), name=f"{name}_mod")
    with m.Switch(s):
        for v in range(total + 1):
            with m.Case(v):
                m.d.comb += r.eq(v % n)
    return r


class FeieHdl(wiring.Component):
    """Executes FEIE RUNs (the schedule of `tessera.sim.engines.feie.simulate`, cycle for
    cycle).

    The entry at the head of the stream (value, column, sub-position ``q``, row) is broadcast
    to every PE; PE ``p`` of each tile owns output ``g = row*ow + j`` with ``g mod pes = p``
    and adds ``x * W[w_base + q][tile, k]`` for ``k = col - stride*j`` in ``0..k-1``
    (int8 x int8 products into ``acc_bits`` wrapping partial sums: the ``int`` kind's
    multiply and accumulate, built here). A PE moving to a new output pushes the finished one
    into its 2-deep done queue (the broadcast stalls while a needed queue is full). The flush
    walker emits outputs ``0 .. rows*ow-1`` in order on ``result`` (address ``c_base + g``,
    ``tiles`` lanes), each once the broadcast has passed its last column. With ``FLAG_DENSE``
    every position ``(row, col, q)`` takes a cycle (zeros do not change any PE).

    Members
    -------
    ctl : In(EngineControlSignature)
    a_port, w_port : Out(StorePortSignature(..., write=False))
    result : Out(ResultSignature(depths["c"], tiles * acc_bits))
    """

    NEED = ("rows", "ow", "wp", "q", "k", "stride", "entries", "a_base", "w_base", "c_base")

    def __init__(self, *, tiles, pes, kmax, layout, b_bits, acc_bits, args, depths):
        names = {f.name for f in args.fields}
        if not set(self.NEED) | {"flags"} <= names:
            raise ValueError(f"args must have the fields {list(self.NEED)}, not {sorted(names)}")
        self.tiles, self.pes, self.kmax = tiles, pes, kmax
        self.layout, self.b_bits, self.acc_bits = layout, b_bits, acc_bits
        self._args = args
        self._depths = dict(depths)
        d = self._depths
        super().__init__({
            "ctl": In(EngineControlSignature(8 * args.nbytes)),
            "a_port": Out(StorePortSignature(depth=d["a"], width=layout.bits, write=False)),
            "w_port": Out(StorePortSignature(depth=d["w"], width=tiles * kmax * b_bits,
                                             write=False)),
            "result": Out(ResultSignature(depth=d["c"], width=tiles * acc_bits)),
        })

    def _field(self, name):
        lo, hi = self._args.bit_slice(name)
        return self.ctl.args[lo:hi]

    def elaborate(self, platform):
        m = Module()
        P, T, KM, lay, d = self.pes, self.tiles, self.kmax, self.layout, self._depths
        AB = self.acc_bits
        f = {n: Signal(16, name=f"arg_{n}") for n in self.NEED}
        flags = Signal(8)
        prods = SerialProducts(1)
        G = prods.products[0]
        running = Signal()
        s2 = Signal()                      # stride 2
        m.d.comb += s2.eq(f["stride"] == 2)

        def unpack(word):
            s1 = lay.act_bits
            s2_ = s1 + lay.col_bits
            s3 = s2_ + lay.q_bits
            return (word[:s1], word[s1:s2_], word[s2_:s3], word[s3:s3 + lay.row_bits])

        # -- entry pipeline: A read, then the W read of the entry's q ---------------------------
        p2 = Signal(17)
        rd_v = Signal()
        e3_v = Signal()
        e3_val, e3_col = Signal(lay.act_bits), Signal(lay.col_bits)
        e3_q, e3_row = Signal(lay.q_bits), Signal(lay.row_bits)
        n_val, n_col, n_q, n_row = unpack(self.a_port.r_data)

        # -- dense position counter --------------------------------------------------------------
        prow, pcol, pq = Signal(16), Signal(16), Signal(16)
        pend = Signal()
        dense = Signal()
        m.d.comb += dense.eq(flags[2])

        end = Signal()
        cur_valid = Signal()
        cur_row, cur_col = Signal(16), Signal(16)
        m.d.comb += [
            end.eq(Mux(dense, pend, (p2 >= f["entries"]) & ~e3_v)),
            cur_valid.eq(Mux(dense, ~pend, e3_v)),
            cur_row.eq(Mux(dense, prow, e3_row)),
            cur_col.eq(Mux(dense, pcol, e3_col)),
        ]

        # -- PEs ---------------------------------------------------------------------------------
        live_v = [Signal(name=f"live_v{p}") for p in range(P)]
        live_g = [Signal(24, name=f"live_g{p}") for p in range(P)]
        live_val = [[Signal(AB, name=f"live{p}_{t}") for t in range(T)] for p in range(P)]
        cnt = [Signal(range(3), name=f"cnt{p}") for p in range(P)]
        q_g = [[Signal(24, name=f"dq{p}_{i}_g") for i in range(2)] for p in range(P)]
        q_val = [[[Signal(AB, name=f"dq{p}_{i}_{t}") for t in range(T)] for i in range(2)]
                 for p in range(P)]

        # -- flush walker ------------------------------------------------------------------------
        gf = Signal(32)
        pf = Signal(range(P))
        rf, jf = Signal(16), Signal(16)
        walking = Signal()
        m.d.comb += walking.eq(running & (gf < G))
        last_col = Signal(18)
        m.d.comb += last_col.eq(Mux(s2, jf << 1, jf) + f["k"] - 1)
        passed = Signal()
        m.d.comb += passed.eq(end | (cur_valid & ((cur_row > rf) | ((cur_row == rf)
                                                                   & (cur_col > last_col)))))
        head_hit = [Signal(name=f"head_hit{p}") for p in range(P)]
        live_hit = [Signal(name=f"live_hit{p}") for p in range(P)]
        takes_live = [Signal(name=f"takes_live{p}") for p in range(P)]
        pop = [Signal(name=f"pop{p}") for p in range(P)]
        emit = Signal()
        emit_data = Signal(T * AB)
        for p in range(P):
            sel = walking & (pf == p)
            m.d.comb += [head_hit[p].eq(sel & (cnt[p] != 0) & (q_g[p][0] == gf)),
                         live_hit[p].eq(sel & live_v[p] & (live_g[p] == gf))]
            m.d.comb += [pop[p].eq(head_hit[p]),
                         takes_live[p].eq(~head_hit[p] & live_hit[p] & passed)]
            with m.If(head_hit[p]):
                m.d.comb += [emit.eq(1), emit_data.eq(Cat(*q_val[p][0]))]
            with m.Elif(sel & passed):
                m.d.comb += emit.eq(1)
                with m.If(live_hit[p]):
                    m.d.comb += emit_data.eq(Cat(*live_val[p]))
        m.d.comb += [self.result.valid.eq(emit),
                     self.result.payload.addr.eq(f["c_base"] + gf),
                     self.result.payload.data.eq(emit_data),
                     self.result.payload.accumulate.eq(flags[0])]
        with m.If(emit):
            m.d.sync += [gf.eq(gf + 1), pf.eq(Mux(pf == P - 1, 0, pf + 1))]
            with m.If(jf == f["ow"] - 1):
                m.d.sync += [jf.eq(0), rf.eq(rf + 1)]
            with m.Else():
                m.d.sync += jf.eq(jf + 1)

        # -- broadcast ---------------------------------------------------------------------------
        ready = Signal()
        match = Signal()
        apply_entry = Signal()
        zero_pos = Signal()
        m.d.comb += [
            ready.eq(running & ~pend & (e3_v | (p2 >= f["entries"]))),
            match.eq(e3_v & (e3_row == prow) & (e3_col == pcol) & (e3_q == pq)),
            apply_entry.eq(Mux(dense, ready & match, running & e3_v)),
            zero_pos.eq(dense & ready & ~match),
        ]
        jhi_raw = Signal(16)
        jhi = Signal(16)
        m.d.comb += [jhi_raw.eq(Mux(s2, e3_col >> 1, e3_col)),
                     jhi.eq(Mux(jhi_raw > f["ow"] - 1, f["ow"] - 1, jhi_raw))]
        ghi = Signal(24)
        m.d.comb += ghi.eq(e3_row * f["ow"] + jhi)
        ghi_mod = Signal(range(P))
        m.d.comb += ghi_mod.eq(_mod_const(m, ghi, P, "ghi"))
        touched = [Signal(name=f"touched{p}") for p in range(P)]
        same = [Signal(name=f"same{p}") for p in range(P)]
        need_push = [Signal(name=f"need_push{p}") for p in range(P)]
        g_p = [Signal(24, name=f"g{p}") for p in range(P)]
        k_p = [Signal(range(max(2, KM)), name=f"k{p}") for p in range(P)]
        stall = Signal()
        full_needed = []
        for p in range(P):
            t = Signal(range(P + 1), name=f"t{p}")
            dd = Signal(range(-P, P), name=f"dd{p}")
            m.d.comb += [dd.eq(ghi_mod - p), t.eq(Mux(dd < 0, dd + P, dd))]
            j = Signal(range(-P, 1 << 16), name=f"j{p}")
            kk = Signal(range(-(1 << 17), 1 << 17), name=f"kk{p}")
            m.d.comb += [j.eq(jhi - t), kk.eq(e3_col - Mux(s2, j << 1, j))]
            m.d.comb += [touched[p].eq((j >= 0) & (kk < f["k"])), g_p[p].eq(ghi - t),
                         k_p[p].eq(kk)]
            lv = live_v[p] & ~takes_live[p]
            m.d.comb += [same[p].eq(lv & (live_g[p] == g_p[p])),
                         need_push[p].eq(touched[p] & lv & (live_g[p] != g_p[p]))]
            full_needed.append(need_push[p] & (cnt[p] == 2))
        m.d.comb += stall.eq(apply_entry & Cat(*full_needed).any())
        do_apply = Signal()
        m.d.comb += do_apply.eq(apply_entry & ~stall)

        x = e3_val.as_signed()
        wl = self.b_bits
        for p in range(P):
            prods_p = []
            for t in range(T):
                w = Signal(wl, name=f"w{p}_{t}")
                with m.Switch(k_p[p]):
                    for kk in range(KM):
                        with m.Case(kk):
                            base = (t * KM + kk) * wl
                            m.d.comb += w.eq(self.w_port.r_data[base:base + wl])
                prod = Signal(AB, name=f"prod{p}_{t}")
                m.d.comb += prod.eq(x * w.as_signed())
                prods_p.append(prod)
            push = do_apply & need_push[p]
            # done queue: pop (walker) and push (broadcast)
            with m.If(pop[p]):
                m.d.sync += [q_g[p][0].eq(q_g[p][1])] + \
                    [a.eq(b) for a, b in zip(q_val[p][0], q_val[p][1])]
            with m.If(push):
                slot = cnt[p] - pop[p]
                for i in range(2):
                    with m.If(slot == i):
                        m.d.sync += [q_g[p][i].eq(live_g[p])] + \
                            [a.eq(b) for a, b in zip(q_val[p][i], live_val[p])]
            m.d.sync += cnt[p].eq(cnt[p] + push - pop[p])
            with m.If(do_apply & touched[p]):
                with m.If(same[p]):
                    m.d.sync += [a.eq(a + b) for a, b in zip(live_val[p], prods_p)]
                with m.Else():
                    m.d.sync += [live_v[p].eq(1), live_g[p].eq(g_p[p])] + \
                        [a.eq(b) for a, b in zip(live_val[p], prods_p)]
            with m.Elif(takes_live[p]):
                m.d.sync += live_v[p].eq(0)

        # dense position advance
        with m.If(zero_pos | (dense & do_apply)):
            with m.If(pq == f["q"] - 1):
                m.d.sync += pq.eq(0)
                with m.If(pcol == f["wp"] - 1):
                    m.d.sync += pcol.eq(0)
                    m.d.sync += prow.eq(prow + 1)
                    with m.If(prow == f["rows"] - 1):
                        m.d.sync += pend.eq(1)
                with m.Else():
                    m.d.sync += pcol.eq(pcol + 1)
            with m.Else():
                m.d.sync += pq.eq(pq + 1)

        # entry pipeline
        move = Signal()
        m.d.comb += move.eq(running & (~e3_v | do_apply) & rd_v & (p2 < f["entries"]))
        m.d.comb += [self.a_port.r_en.eq(running), self.a_port.r_addr.eq(f["a_base"] + p2 + move),
                     self.w_port.r_en.eq(running),
                     self.w_port.r_addr.eq(f["w_base"] + Mux(move, n_q, e3_q))]
        with m.If(running):
            m.d.sync += rd_v.eq(1)
        with m.If(do_apply):
            m.d.sync += e3_v.eq(0)
        with m.If(move):
            m.d.sync += [e3_v.eq(1), e3_val.eq(n_val), e3_col.eq(n_col), e3_q.eq(n_q),
                         e3_row.eq(n_row), p2.eq(p2 + 1)]

        # -- argument check and FSM --------------------------------------------------------------
        allowed = FLAG_ACCUMULATE | FLAG_DENSE
        kf, sf = f["k"], f["stride"]
        bad_arg = ((f["rows"] == 0) | (f["ow"] == 0) | (f["wp"] == 0) | (f["q"] == 0)
                   | (kf == 0) | (sf == 0) | (kf > KM) | (sf > 2)
                   | Mux(sf == 2, ((kf + 1) >> 1) > P, kf > P)
                   | (flags & ~allowed & 0xFF).any())
        bad_tile = ((f["a_base"] + f["entries"] > d["a"]) | (f["w_base"] + f["q"] > d["w"])
                    | (f["c_base"] + G > d["c"]))
        with m.FSM():
            argument_check(
                m, self.ctl, products=prods, bad_arg=bad_arg, bad_tile=bad_tile,
                latch=[*(s.eq(self._field(n)) for n, s in f.items()),
                       flags.eq(self._field("flags"))],
                pairs=[(self._field("rows"), self._field("ow"))],
                start=[running.eq(1), p2.eq(0), rd_v.eq(0), e3_v.eq(0), prow.eq(0),
                       pcol.eq(0), pq.eq(0), pend.eq(0), gf.eq(0), pf.eq(0), rf.eq(0),
                       jf.eq(0), *(v.eq(0) for v in live_v), *(c.eq(0) for c in cnt)],
                run_state="RUN")
            with m.State("RUN"):
                with m.If(~walking):
                    m.d.sync += running.eq(0)
                    m.d.comb += self.ctl.done.eq(1)
                    m.next = "IDLE"
        return m


class FeieArrayUnit(wiring.Component):
    """`FeieHdl` as a stand-alone unit (``tessera unit feie_array``): the same ``ctl``,
    ``a_port`` and ``w_port``; the always-ready result stream as plain ports ``result_valid``,
    ``result_addr``, ``result_data`` (``tiles`` lanes of ``acc_bits``) and
    ``result_accumulate``, one word per cycle, to be written (or added) at ``result_addr``.

    Members
    -------
    ctl : In(EngineControlSignature)
    a_port, w_port : Out(StorePortSignature(..., write=False))
    result_valid, result_accumulate : Out(1)
    result_addr : Out(range(c_depth))
    result_data : Out(tiles * acc_bits)
    """

    def __init__(self, engine):
        self.engine = engine
        e = engine.signature.members
        super().__init__({
            "ctl": e["ctl"], "a_port": e["a_port"], "w_port": e["w_port"],
            "result_valid": Out(1), "result_accumulate": Out(1),
            "result_addr": Out(range(engine._depths["c"])),
            "result_data": Out(engine.tiles * engine.acc_bits),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = e = self.engine
        wiring.connect(m, wiring.flipped(self.ctl), e.ctl)
        wiring.connect(m, wiring.flipped(self.a_port), e.a_port)
        wiring.connect(m, wiring.flipped(self.w_port), e.w_port)
        m.d.comb += [self.result_valid.eq(e.result.valid),
                     self.result_addr.eq(e.result.payload.addr),
                     self.result_data.eq(e.result.payload.data),
                     self.result_accumulate.eq(e.result.payload.accumulate)]
        return m
