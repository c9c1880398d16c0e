"""Output stage: stores engine result words, combining them with the stored ones on request."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.engine.base import ResultSignature, StorePortSignature


__all__ = ["OutputStage"]


def _delay(m, sig, n, name):
    cur = sig
    for i in range(n):
        nxt = Signal.like(sig, name=f"{name}_d{i + 1}")
        m.d.sync += nxt.eq(cur)
        cur = nxt
    return cur


class OutputStage(wiring.Component):
    """Writes each result word to its address; with ``accumulate``, combines it first.

    A word that arrives in cycle t is written in cycle t+1 when it replaces the stored word.
    With ``accumulate`` the stored word is read in cycle t, each lane is combined with the new
    one by a ``combiner`` (the PE kind's: a wrapping integer add, an FP adder, ...) of latency
    L, and the result is written in cycle t+1+L. One word per cycle either way; the words of
    one RUN all have the same ``accumulate`` bit and distinct addresses, so writes never
    collide and a read never sees a word still in flight.

    Parameters
    ----------
    depth : int
        Depth of the result store.
    lanes, lane_bits : int
        Lanes per result word and bits per lane.
    combiner : object or None
        The PE kind's combiner: ``latency`` (L) and ``hdl()``, which returns a new one-lane
        combiner component (members ``a`` stored, ``b`` new, ``result``); None if the kind cannot
        accumulate (the bit is then ignored: the engine's argument check refuses such RUNs).

    Members
    -------
    i : In(ResultSignature(depth, lanes * lane_bits))
    port : Out(StorePortSignature(depth, lanes * lane_bits))
    idle : Out(1)
        No word is in flight (nothing arrives this cycle, nothing is waiting to be written).
    """

    def __init__(self, *, depth, lanes, lane_bits, combiner=None):
        self._depth, self._lanes, self._lane_bits = depth, lanes, lane_bits
        self._combiner = combiner
        self._lat = 0 if combiner is None else combiner.latency
        width = lanes * lane_bits
        super().__init__({
            "i": In(ResultSignature(depth=depth, width=width)),
            "port": Out(StorePortSignature(depth=depth, width=width)),
            "idle": Out(1),
        })

    @property
    def combiner_latency(self):
        return self._lat

    def elaborate(self, platform):
        m = Module()
        L, w = self._lat, self._lane_bits
        p = self.i.payload
        # Cycle t: the word arrives (and the stored word is read for accumulation).
        m.d.comb += [self.port.r_addr.eq(p.addr), self.port.r_en.eq(self.i.valid & p.accumulate)]
        # Cycle t+1: replace, or feed the combiners.
        valid1 = Signal()
        addr1 = Signal.like(p.addr)
        acc1 = Signal()
        new1 = Signal.like(p.data, reset_less=True)
        m.d.sync += [valid1.eq(self.i.valid), addr1.eq(p.addr), acc1.eq(p.accumulate),
                     new1.eq(p.data)]
        pending = [valid1]
        if self._combiner is None:
            m.d.comb += [self.port.w_addr.eq(addr1), self.port.w_data.eq(new1),
                         self.port.w_en.eq(valid1)]
        else:
            lanes = []
            for i in range(self._lanes):
                m.submodules[f"comb{i}"] = c = self._combiner.hdl()
                m.d.comb += [c.a.eq(self.port.r_data[i * w:(i + 1) * w]),
                             c.b.eq(new1[i * w:(i + 1) * w])]
                lanes.append(c.result)
            # The combined word leaves the combiners L cycles after t+1.
            chain = [valid1 & acc1]
            for j in range(L):
                nxt = Signal(name=f"acc_valid_d{j + 1}")
                m.d.sync += nxt.eq(chain[-1])
                chain.append(nxt)
            valid_acc = chain[-1]
            addr_acc = _delay(m, addr1, L, "acc_addr")
            pending = [valid1] + chain[1:]
            replace = valid1 & ~acc1
            m.d.comb += [
                self.port.w_addr.eq(Mux(replace, addr1, addr_acc)),
                self.port.w_data.eq(Mux(replace, new1, Cat(*lanes))),
                self.port.w_en.eq(replace | valid_acc),
            ]
        busy = self.i.valid
        for s in pending:
            busy = busy | s
        m.d.comb += self.idle.eq(~busy)
        return m
