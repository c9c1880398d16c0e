"""FEIE / ZASCA convolution engine: one pixel broadcast per cycle to ``pes`` PEs of each of
``tiles`` groups, zero pixels skipped (docs/feie.md; twin `tessera.sim.engines.feie`)."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.engine.base import EngineControlSignature, ResultSignature, StorePortSignature
from tessera.hdl.ctrl.protocol import Err
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
    into its done queue (``drain + 2`` deep; the broadcast stalls while a needed queue is
    full). The drain writes result word ``c_base + w`` (outputs ``w*V .. w*V + V - 1``,
    ``V = pes * drain``, ``tiles`` lanes each) as soon as the broadcast has passed the last
    column of its last output, in parallel with the broadcast. With ``FLAG_DENSE`` every
    position ``(row, col, q)`` takes a cycle (zeros do not change any PE).

    The argument check takes one cycle (``rows * ow`` by a multiplier, registered with the
    arguments as the RUN starts, not serially) and issues the first entry's A read; the first
    RUN cycle reads its W word, the second broadcasts it.

    Members
    -------
    ctl : In(EngineControlSignature)
    a_port, w_port : Out(StorePortSignature(..., write=False))
    result : Out(ResultSignature(depths["c"], pes * drain * tiles * acc_bits))
    """

    NEED = ("rows", "ow", "wp", "q", "k", "stride", "entries", "a_base", "w_base", "c_base")

    def __init__(self, *, tiles, pes, kmax, layout, b_bits, acc_bits, args, depths, drain=1):
        names = {f.name for f in args.fields}
        if not set(self.NEED) | {"flags"} <= names:
            raise ValueError(f"args must have the fields {list(self.NEED)}, not {sorted(names)}")
        self.tiles, self.pes, self.kmax, self.drain = tiles, pes, kmax, drain
        self.layout, self.b_bits, self.acc_bits = layout, b_bits, acc_bits
        self._args = args
        self._depths = dict(depths)
        d = self._depths
        super().__init__({
            "ctl": In(EngineControlSignature(8 * args.nbytes)),
            "a_port": Out(StorePortSignature(depth=d["a"], width=layout.bits, write=False)),
            "w_port": Out(StorePortSignature(depth=d["w"], width=tiles * kmax * b_bits,
                                             write=False)),
            "result": Out(ResultSignature(depth=d["c"],
                                          width=pes * drain * tiles * acc_bits)),
        })

    def _field(self, name):
        lo, hi = self._args.bit_slice(name)
        return self.ctl.args[lo:hi]

    def elaborate(self, platform):
        m = Module()
        P, T, KM, lay, d = self.pes, self.tiles, self.kmax, self.layout, self._depths
        AB, M = self.acc_bits, self.drain
        V, D = P * M, M + 2
        # Output numbers g < c_depth * V (the check refuses a RUN with more outputs); word
        # positions run up to V past the last output.
        GB = max(1, (d["c"] * V).bit_length())
        f = {n: Signal(16, name=f"arg_{n}") for n in self.NEED}
        flags = Signal(8)
        running = Signal()
        s2 = Signal()                      # stride 2
        m.d.comb += s2.eq(f["stride"] == 2)
        # Per-RUN quantities with a multiplier or a table in them are registered from the
        # arguments as the RUN starts (beside the fields), so the one-cycle check compares
        # registers: rows * ow, ow mod pes, the drain's first-word constants.
        a_ow, a_k = self._field("ow"), self._field("k")
        a_s2 = self._field("stride") == 2
        G_now = Signal(32)

        def unpack(word):
            s1 = lay.act_bits
            s2_ = s1 + lay.col_bits
            s3 = s2_ + lay.q_bits
            return (word[:s1], word[s1:s2_], word[s2_:s3], word[s3:s3 + lay.row_bits])

        # -- entry pipeline: A read, then the W read of the entry's q ---------------------------
        p2 = Signal(17)
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

        # -- PEs and their done queues -----------------------------------------------------------
        live_v = [Signal(name=f"live_v{p}") for p in range(P)]
        live_g = [Signal(GB, name=f"live_g{p}") for p in range(P)]
        live_val = [[Signal(AB, name=f"live{p}_{t}") for t in range(T)] for p in range(P)]
        # Each done queue is D slots, found by output number (the drain compares every slot
        # with its lanes' outputs anyway): a push loads a free slot in place, a pop clears
        # the slot's valid bit, so nothing shifts. Only the count matters to the schedule
        # (a full needed queue stalls), as in the twin.
        q_v = [[Signal(name=f"dq{p}_{i}_v") for i in range(D)] for p in range(P)]
        q_g = [[Signal(GB, name=f"dq{p}_{i}_g") for i in range(D)] for p in range(P)]
        q_val = [[[Signal(AB, name=f"dq{p}_{i}_{t}") for t in range(T)] for i in range(D)]
                 for p in range(P)]

        # -- drain: result word w = outputs gw .. gw + V - 1 ------------------------------------
        # Every quantity the drain compares is a register, stepped when a word goes: the
        # outputs left (rem = G - gw), each lane's output g, and the row and last column of
        # the word's last output (clamped to the RUN's last output), computed incrementally
        # from per-RUN constants set by the check cycle.
        rem = Signal(GB + 1)
        wg = [Signal(GB + 1, name=f"wg{ln}") for ln in range(V)]
        # (a checked RUN has rows * ow <= c_depth * V outputs, so rows, ow < 2**GB)
        rl, jl = Signal(GB + 1), Signal(GB + 1)  # row and column of output gw + V - 1
        jcol = Signal(GB + 3)                    # its last column, stride * jl + k - 1
        dvr, dvj = Signal(GB + 1), Signal(GB + 1)    # V = dvr rows + dvj columns
        dmo = Signal(signed(GB + 2))             # dvj - ow
        sdvj, sdmo = Signal(signed(GB + 4)), Signal(signed(GB + 4))   # stride * dvj, * dmo
        lastc = Signal(GB + 3)                   # last column of the RUN's last output
        lc_row, lc_col = Signal(GB + 1), Signal(GB + 3)
        walking = Signal()
        m.d.comb += walking.eq(running & (rem != 0))
        passed = Signal()
        m.d.comb += passed.eq(end | (cur_valid & ((cur_row > lc_row) | ((cur_row == lc_row)
                                                                       & (cur_col > lc_col)))))
        emit = Signal()
        takes = [Signal(name=f"takes{p}") for p in range(P)]
        lanes = []
        for i in range(M):
            for p in range(P):
                ln = i * P + p
                g = wg[ln]
                ok = Signal(name=f"lane_ok{p}_{i}")
                m.d.comb += ok.eq(walking & (rem > ln))
                hits = [Signal(name=f"hit{p}_{i}_{s}") for s in range(D)]
                for s in range(D):
                    m.d.comb += hits[s].eq(ok & q_v[p][s] & (q_g[p][s] == g))
                lh = Signal(name=f"live_hit{p}_{i}")
                m.d.comb += lh.eq(ok & live_v[p] & (live_g[p] == g) & ~Cat(*hits).any())
                lane = [Signal(AB, name=f"out{p}_{i}_{t}") for t in range(T)]
                for t in range(T):
                    # the hits and lh are exclusive: an AND-OR, not a priority chain
                    v = live_val[p][t] & lh.replicate(AB)
                    for s in range(D):
                        v = v | (q_val[p][s][t] & hits[s].replicate(AB))
                    m.d.comb += lane[t].eq(v)
                lanes.append((p, i, hits, lh, lane))
        # The word goes once the broadcast has passed it, unless one of its outputs is a live
        # partial sum the broadcast moves into the done queue this cycle (it goes next cycle,
        # from the queue).
        block = [Signal(name=f"block{p}") for p in range(P)]
        m.d.comb += emit.eq(walking & passed
                            & ~Cat(*(lh & block[p] for p, _, _, lh, _ in lanes)).any())
        pop = [[Signal(name=f"pop{p}_{s}") for s in range(D)] for p in range(P)]
        for p in range(P):
            mine = [(qh, lh) for pp, _, qh, lh, _ in lanes if pp == p]
            m.d.comb += [pop[p][s].eq(emit & Cat(*(qh[s] for qh, _ in mine)).any())
                         for s in range(D)]
            m.d.comb += takes[p].eq(emit & Cat(*(lh for _, lh in mine)).any())
        lanes.sort(key=lambda x: x[1] * P + x[0])
        wcount = Signal(16)
        m.d.comb += [self.result.valid.eq(emit),
                     self.result.payload.addr.eq(f["c_base"] + wcount),
                     self.result.payload.data.eq(Cat(*(c for *_, lane in lanes for c in lane))),
                     self.result.payload.accumulate.eq(flags[0])]
        with m.If(emit):
            jn = Signal(GB + 2)
            jm = Signal(signed(GB + 3))
            m.d.comb += [jn.eq(jl + dvj), jm.eq(jl + dmo)]
            wrap = ~jm[-1]                        # jl + dvj >= ow
            rl_n = Signal(GB + 2)
            jc_a, jc_b = Signal(signed(GB + 5)), Signal(signed(GB + 5))
            m.d.comb += [rl_n.eq(rl + dvr + wrap), jc_a.eq(jcol + sdmo), jc_b.eq(jcol + sdvj)]
            over_n = rem < 2 * V                  # the next word holds the RUN's last output
            m.d.sync += [rem.eq(Mux(rem > V, rem - V, 0)), wcount.eq(wcount + 1),
                         *(x.eq(x + V) for x in wg),
                         rl.eq(rl_n), jl.eq(Mux(wrap, jm, jn)),
                         jcol.eq(Mux(wrap, jc_a, jc_b)),
                         lc_row.eq(Mux(over_n, f["rows"] - 1, rl_n)),
                         lc_col.eq(Mux(over_n, lastc, Mux(wrap, jc_a, jc_b)))]

        # -- broadcast ---------------------------------------------------------------------------
        move = Signal()                    # the next entry moves up (A data -> e3)
        ready = Signal()
        match = Signal()
        apply_entry = Signal()
        zero_pos = Signal()
        m.d.comb += [
            match.eq(e3_v & (e3_row == prow) & (e3_col == pcol) & (e3_q == pq)),
            ready.eq(running & ~pend & (e3_v | (p2 >= f["entries"]))),
            apply_entry.eq(Mux(dense, ready & match, running & e3_v)),
            zero_pos.eq(dense & ready & ~match),
        ]
        # Each PE's part of an entry (touched, output g, tap k) is computed from the A data
        # as the entry moves up and registered with it, off the broadcast's path.
        # Column quantities are bounded by the entry's column field (CB bits), whatever ow.
        CB = lay.col_bits
        jhi_raw = Signal(CB)
        jhi = Signal(CB)
        m.d.comb += [jhi_raw.eq(Mux(s2, n_col >> 1, n_col)),
                     jhi.eq(Mux(jhi_raw >= f["ow"], f["ow"] - 1, jhi_raw))]
        ghi = Signal(GB)
        m.d.comb += ghi.eq(n_row * f["ow"] + jhi)
        # ghi mod P from the residues (ow's registered per RUN), so the multiplier feeds only
        # the output numbers and not the path to each PE's tap and "touched"
        ow_mod = Signal(range(P), name="ow_mod")
        ow_mod_now = _mod_const(m, a_ow, P, "ow")
        row_mod = _mod_const(m, n_row, P, "row")
        jhi_mod = _mod_const(m, jhi, P, "jhi")
        mix = Signal(range((P - 1) * (P - 1) + P), name="ghi_mix")
        m.d.comb += mix.eq(row_mod * ow_mod + jhi_mod)
        ghi_mod = Signal(range(P))
        with m.Switch(mix):
            for v in range((P - 1) * (P - 1) + P):
                with m.Case(v):
                    m.d.comb += ghi_mod.eq(v % P)
        touched = [Signal(name=f"touched{p}") for p in range(P)]
        same = [Signal(name=f"same{p}") for p in range(P)]
        need_push = [Signal(name=f"need_push{p}") for p in range(P)]
        g_p = [Signal(GB, name=f"g{p}") for p in range(P)]
        k_p = [Signal(range(max(2, KM)), name=f"k{p}") for p in range(P)]
        for p in range(P):
            t = Signal(range(P + 1), name=f"t{p}")
            dd = Signal(range(-P, P), name=f"dd{p}")
            m.d.comb += [dd.eq(ghi_mod - p), t.eq(Mux(dd < 0, dd + P, dd))]
            j = Signal(range(-P, 1 << CB), name=f"j{p}")
            kk = Signal(range(-(1 << (CB + 1)), (1 << CB) + 2 * P + 1), name=f"kk{p}")
            m.d.comb += [j.eq(jhi - t), kk.eq(n_col - Mux(s2, j << 1, j))]
            with m.If(move):
                m.d.sync += [touched[p].eq((j >= 0) & (kk < f["k"])), g_p[p].eq(ghi - t),
                             k_p[p].eq(kk)]
        for p in range(P):
            m.d.comb += [same[p].eq(live_v[p] & (live_g[p] == g_p[p])),
                         need_push[p].eq(touched[p] & live_v[p] & (live_g[p] != g_p[p]))]
        stall = Signal()
        full_needed = []
        for p in range(P):
            full_needed.append(need_push[p] & Cat(*q_v[p]).all())
        m.d.comb += stall.eq(apply_entry & Cat(*full_needed).any())
        do_apply = Signal()
        m.d.comb += do_apply.eq(apply_entry & ~stall)
        m.d.comb += self.ctl.active.eq(do_apply)  # COUNTERS compute: one broadcast
        m.d.comb += [block[p].eq(do_apply & need_push[p]) for p in range(P)]

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
            push = Signal(name=f"push{p}")
            m.d.comb += push.eq(do_apply & need_push[p])
            # done queue: the drain clears the slots it pops; a push (never when every slot
            # is valid: that stalls) loads the lowest slot that was free
            for s in range(D):
                with m.If(pop[p][s]):
                    m.d.sync += q_v[p][s].eq(0)
            for s in range(D):
                first_free = ~q_v[p][s]
                for i in range(s):
                    first_free = first_free & q_v[p][i]
                with m.If(push & first_free):
                    m.d.sync += [q_v[p][s].eq(1), q_g[p][s].eq(live_g[p])] + \
                        [a.eq(b) for a, b in zip(q_val[p][s], live_val[p])]
            with m.If(do_apply & touched[p]):
                with m.If(same[p]):
                    m.d.sync += [a.eq(a + b) for a, b in zip(live_val[p], prods_p)]
                with m.Else():
                    m.d.sync += [live_v[p].eq(1), live_g[p].eq(g_p[p])] + \
                        [a.eq(b) for a, b in zip(live_val[p], prods_p)]
            with m.Elif(takes[p]):
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

        # entry pipeline: A is read one entry ahead (the first read issued in the check cycle,
        # when the store port turns to the engine)
        m.d.comb += move.eq(running & (~e3_v | do_apply) & (p2 < f["entries"]))
        m.d.comb += [self.a_port.r_en.eq(1), self.a_port.r_addr.eq(f["a_base"] + p2 + move),
                     self.w_port.r_en.eq(1),
                     self.w_port.r_addr.eq(f["w_base"] + Mux(move, n_q, e3_q))]
        with m.If(do_apply):
            m.d.sync += e3_v.eq(0)
        with m.If(move):
            m.d.sync += [e3_v.eq(1), e3_val.eq(n_val), e3_col.eq(n_col), e3_q.eq(n_q),
                         e3_row.eq(n_row), p2.eq(p2 + 1)]

        # -- argument check (one cycle) and FSM --------------------------------------------------
        allowed = FLAG_ACCUMULATE | FLAG_DENSE
        kf, sf = f["k"], f["stride"]
        bad_arg = ((f["rows"] == 0) | (f["ow"] == 0) | (f["wp"] == 0) | (f["q"] == 0)
                   | (kf == 0) | (sf == 0) | (kf > KM) | (sf > 2)
                   | Mux(sf == 2, ((kf + 1) >> 1) > P, kf > P)
                   | (flags & ~allowed & 0xFF).any())
        cbv = sum((f["c_base"] << i) for i in range(V.bit_length()) if V >> i & 1)
        bad_tile = ((f["a_base"] + f["entries"] > d["a"]) | (f["w_base"] + f["q"] > d["w"])
                    | (cbv + G_now > d["c"] * V))
        # V = dvr rows + dvj columns; output V - 1 at row (V-1) // ow, column (V-1) % ow
        dvn = [Signal(16, name=n) for n in ("dvr_n", "dvj_n", "rl0_n", "jl0_n")]
        dv = [Signal(16, name=n) for n in ("dvr_r", "dvj_r", "rl0", "jl0")]
        m.d.comb += [dvn[0].eq(0), dvn[1].eq(V), dvn[2].eq(0), dvn[3].eq(V - 1)]
        with m.Switch(a_ow):
            for o in range(1, V + 1):
                with m.Case(o):
                    m.d.comb += [dvn[0].eq(V // o), dvn[1].eq(V % o),
                                 dvn[2].eq((V - 1) // o), dvn[3].eq((V - 1) % o)]
        lastc_now, jcol0 = Signal(GB + 3), Signal(GB + 3)
        m.d.comb += jcol0.eq(Mux(s2, dv[3] << 1, dv[3]) + f["k"] - 1)
        over0 = G_now < V                         # the first word would pass the last output
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.ctl.start):
                    m.d.sync += [*(s.eq(self._field(n)) for n, s in f.items()),
                                 flags.eq(self._field("flags")), p2.eq(0), e3_v.eq(0),
                                 G_now.eq(self._field("rows") * a_ow),
                                 ow_mod.eq(ow_mod_now),
                                 *(r.eq(n) for r, n in zip(dv, dvn)),
                                 lastc_now.eq(Mux(a_s2, (a_ow - 1) << 1, a_ow - 1) + a_k - 1)]
                    m.next = "VERIFY"
            with m.State("VERIFY"):
                m.d.comb += self.ctl.check_done.eq(1)
                with m.If(bad_arg):
                    m.d.comb += self.ctl.check_err.eq(Err.ARG)
                    m.next = "IDLE"
                with m.Elif(bad_tile):
                    m.d.comb += self.ctl.check_err.eq(Err.TILE)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [running.eq(1), prow.eq(0), pcol.eq(0),
                                 pq.eq(0), pend.eq(0), rem.eq(G_now), wcount.eq(0),
                                 *(x.eq(ln) for ln, x in enumerate(wg)),
                                 dvr.eq(dv[0]), dvj.eq(dv[1]), dmo.eq(dv[1] - f["ow"]),
                                 sdvj.eq(Mux(s2, dv[1] << 1, dv[1])),
                                 sdmo.eq(Mux(s2, (dv[1] - f["ow"]) << 1, dv[1] - f["ow"])),
                                 lastc.eq(lastc_now), rl.eq(dv[2]), jl.eq(dv[3]),
                                 jcol.eq(jcol0), lc_row.eq(Mux(over0, f["rows"] - 1, dv[2])),
                                 lc_col.eq(Mux(over0, lastc_now, jcol0)),
                                 *(v.eq(0) for v in live_v),
                                 *(v.eq(0) for qv in q_v for v in qv)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(emit & (rem <= V)):
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
