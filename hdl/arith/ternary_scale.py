"""Serial scaler of the ternary engines: c = Wp * S_p - Wn * S_n, one lane per cycle."""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.arith.params import TERNARY_SCALE_LATENCY
from tessera.hdl.engine.base import ResultSignature, StorePortSignature


__all__ = ["SerialScaler"]


class SerialScaler(wiring.Component):
    """The two final multiplications of reduce-and-scale, shared by all lanes of a result word.

    A ``load`` captures ``lanes`` pairs (S_p, S_n) with the result word's address, the
    scale-store base and step, and the accumulate bit. In the ``lanes`` cycles after the load
    lane ``j`` reads the scale word ``s_base + j * s_step`` (Wp in its low ``scale_bits``,
    Wn above), multiplies (one register), subtracts (one register) and wraps the difference to
    ``acc_bits`` two's complement. The finished word leaves on ``result`` ``lanes + 3`` cycles
    after the load. A new load is accepted ``lanes`` cycles after the previous one (``ready``);
    so 2 multipliers serve a whole word instead of 2 per lane.

    Parameters
    ----------
    lanes : int
        Lanes of a result word (1..255).
    sum_bits : int
        Width of the unsigned sums S_p and S_n.
    scale_bits : int
        Width of the unsigned scale codes Wp and Wn.
    acc_bits : int
        Width of a result lane.
    s_depth, c_depth : int
        Depths of the scale store and of the result store.

    Members
    -------
    load : In(1)
        Capture ``sp``, ``sn``, ``s_base``, ``s_step``, ``addr``, ``accumulate`` (only while
        ``ready``; a load at any other time is a bug in the engine).
    sp, sn : In(ArrayLayout(unsigned(sum_bits), lanes))
    s_base : In(range(s_depth))
    s_step : In(1)
        0: every lane uses the scale word at ``s_base``; 1: lane j uses ``s_base + j``.
    addr : In(range(c_depth))
    accumulate : In(1)
    ready : Out(1)
        A load in this cycle is accepted.
    ready_next : Out(1)
        A load in the next cycle will be accepted (given this cycle's ``load``).
    idle : Out(1)
        Nothing captured or in flight.
    s_port : Out(StorePortSignature(s_depth, 2 * scale_bits, write=False))
    result : Out(ResultSignature(c_depth, lanes * acc_bits))
    """

    def __init__(self, *, lanes, sum_bits, scale_bits, acc_bits, s_depth, c_depth):
        for name, v, lo, hi in (("lanes", lanes, 1, 255), ("sum_bits", sum_bits, 1, 96),
                                ("scale_bits", scale_bits, 1, 32), ("acc_bits", acc_bits, 2, 64)):
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"SerialScaler: {name} = {v!r}; allowed: {lo}..{hi}")
        self.lanes, self.sum_bits, self.scale_bits, self.acc_bits = \
            lanes, sum_bits, scale_bits, acc_bits
        self.s_depth, self.c_depth = s_depth, c_depth
        super().__init__({
            "load": In(1),
            "sp": In(data.ArrayLayout(unsigned(sum_bits), lanes)),
            "sn": In(data.ArrayLayout(unsigned(sum_bits), lanes)),
            "s_base": In(range(s_depth)), "s_step": In(1),
            "addr": In(range(c_depth)), "accumulate": In(1),
            "ready": Out(1), "ready_next": Out(1), "idle": Out(1),
            "s_port": Out(StorePortSignature(depth=s_depth, width=2 * scale_bits, write=False)),
            "result": Out(ResultSignature(depth=c_depth, width=lanes * acc_bits)),
        })

    #: Cycles from a load to its result word (plus ``lanes``).
    LATENCY_EXTRA = TERNARY_SCALE_LATENCY

    def elaborate(self, platform):
        m = Module()
        L, sb = self.lanes, self.scale_bits
        hold_p = Signal(data.ArrayLayout(unsigned(self.sum_bits), L))
        hold_n = Signal(data.ArrayLayout(unsigned(self.sum_bits), L))
        base, step = Signal(range(self.s_depth)), Signal()
        addr0, acc0 = Signal(range(self.c_depth)), Signal()
        rem = Signal(range(max(L + 1, 3)))     # lanes still to start (2 bits at least:
        # with one lane a 1-bit counter makes ``rem <= 1`` a constant, which the lint refuses)

        m.d.comb += [self.ready.eq(rem <= 1),
                     self.ready_next.eq((rem <= 2) if L > 1 else 1)]
        if L > 1:
            with m.If(self.load):
                m.d.comb += self.ready_next.eq(0)
        with m.If(rem != 0):
            m.d.sync += rem.eq(rem - 1)
        with m.If(self.load):
            m.d.sync += [rem.eq(L), hold_p.eq(self.sp), hold_n.eq(self.sn),
                         base.eq(self.s_base), step.eq(self.s_step),
                         addr0.eq(self.addr), acc0.eq(self.accumulate)]

        # Stage 0: lane j = L - rem reads its scale word and its two sums. (Lane numbers get
        # at least one bit: with one lane a range(1) signal would be zero bits wide, which
        # Verilog cannot declare.)
        lane_range = range(max(L, 2))
        j = Signal(lane_range)
        m.d.comb += j.eq(L - rem)
        go0 = rem != 0
        m.d.comb += [self.s_port.r_addr.eq(base + Mux(step, j, 0)), self.s_port.r_en.eq(go0)]
        sel_p = Signal(self.sum_bits)
        sel_n = Signal(self.sum_bits)
        v1, lane1, last1 = Signal(), Signal(lane_range), Signal()
        addr1, acc1 = Signal(range(self.c_depth)), Signal()
        m.d.sync += [sel_p.eq(hold_p[j] if L > 1 else hold_p[0]),
                     sel_n.eq(hold_n[j] if L > 1 else hold_n[0]), v1.eq(go0), lane1.eq(j),
                     last1.eq(go0 & (rem == 1)), addr1.eq(addr0), acc1.eq(acc0)]
        # Stage 1: the two products.
        prod_bits = sb + self.sum_bits
        pp, pn = Signal(prod_bits), Signal(prod_bits)
        wp = self.s_port.r_data[:sb]
        wn = self.s_port.r_data[sb:2 * sb]
        v2, lane2, last2 = Signal(), Signal(lane_range), Signal()
        addr2, acc2 = Signal(range(self.c_depth)), Signal()
        m.d.sync += [pp.eq(wp * sel_p), pn.eq(wn * sel_n), v2.eq(v1), lane2.eq(lane1),
                     last2.eq(last1), addr2.eq(addr1), acc2.eq(acc1)]
        # Stage 2: the difference, wrapped into its lane of the result word.
        word = Signal(data.ArrayLayout(signed(self.acc_bits), L))
        out_v = Signal()
        out_addr, out_acc = Signal(range(self.c_depth)), Signal()
        diff = Signal(signed(prod_bits + 1))
        m.d.comb += diff.eq(pp - pn)
        with m.If(v2):
            m.d.sync += (word[lane2] if L > 1 else word[0]).eq(diff)
        m.d.sync += [out_v.eq(v2 & last2), out_addr.eq(addr2), out_acc.eq(acc2)]
        m.d.comb += [self.result.valid.eq(out_v), self.result.payload.addr.eq(out_addr),
                     self.result.payload.data.eq(word.as_value()),
                     self.result.payload.accumulate.eq(out_acc),
                     self.idle.eq((rem == 0) & ~v1 & ~v2 & ~out_v)]
        return m

