# amaranth: UnusedElaboratable=no
"""The seam test: a PE kind defined entirely in this file plugs into the systolic engine.

The kind uses everything PE contract v2 offers that ``int`` and ``fpmac`` do not: two operand
elements per lane, a side-band bit travelling with the activations, a run-time mode carried by
RUN, and an initiation interval that depends on the mode (2 or 3: one multiplier reused over
two cycles, so operands issued every cycle would give wrong sums). No shared file knows it: the core, the decoder, the
golden core and the driver are driven by what the kind declares.
"""

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth import Module, Mux, Signal, signed

from tessera.generators.assemble import build_core
from tessera.generators.config import ArraySection, CoreConfig, MemorySection
from tessera.generators.kinds.base import OperandLayout, PEKind
from tessera.hdl.array.pe import PE, PESignature
from tessera.hdl.ctrl.protocol import CAP_MODES, Err
from tessera.sim import intmac
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver, TesseraError
from tessera.sim.engines.model import evaluate
from tessera.sim.pysim import run_with_driver

BITS, ACC = 4, 16


class PairMacPE(PE):
    """acc += (-1)**neg * scale * (a0*b0 + a1*b1), one product per cycle (latency 3; a pair
    every 2 cycles at least, the kind asks 3 in mode 1); ``scale`` is 1 in mode 0, 2 in mode 1."""

    def __init__(self):
        super().__init__(PESignature(a_shape=2 * BITS, b_shape=2 * BITS, acc_shape=signed(ACC),
                                     lanes=2, side={"neg": 1}, mode_shape=1))

    @property
    def latency(self):
        return 3

    @property
    def ii(self):
        return 2

    def elaborate(self, platform):
        m = Module()
        la, lb = Signal(2 * BITS), Signal(2 * BITS)
        neg, first, last, phase, busy, done = (Signal(name=n) for n in
                                               ("neg_l", "first_l", "last_l", "phase", "busy_l",
                                                "done"))
        acc = Signal(signed(ACC))
        with m.If(self.valid):
            m.d.sync += [la.eq(self.a), lb.eq(self.b), neg.eq(self.neg), first.eq(self.first),
                         last.eq(self.last), phase.eq(0), busy.eq(1)]
        with m.Elif(phase == 1):
            m.d.sync += busy.eq(0)
        sel = Mux(phase, 1, 0)
        x = Mux(sel, la[BITS:].as_signed(), la[:BITS].as_signed())
        y = Mux(sel, lb[BITS:].as_signed(), lb[:BITS].as_signed())
        p = Signal(signed(2 * BITS + 2))
        m.d.comb += p.eq(Mux(self.mode, (x * y) << 1, x * y))
        term = Mux(neg, -p, p)
        m.d.sync += done.eq(0)
        with m.If(busy):
            with m.If(phase == 0):
                m.d.sync += [acc.eq(Mux(first, 0, acc) + term), phase.eq(1)]
            with m.Else():
                m.d.sync += [acc.eq(acc + term), phase.eq(0), done.eq(last)]
        m.d.comb += [self.result.eq(acc), self.result_valid.eq(done)]
        return m


class PairTwin:
    def tile(self, a_lanes, b_lanes, mode=None):
        a = np.asarray(a_lanes, dtype=np.int64)     # K x rows lanes: 2 elements + neg bit
        b = np.asarray(b_lanes, dtype=np.int64)     # K x cols lanes: 2 elements
        a0, a1 = (intmac.from_codes((a >> (BITS * e)) & 15, BITS) for e in (0, 1))
        b0, b1 = (intmac.from_codes((b >> (BITS * e)) & 15, BITS) for e in (0, 1))
        sgn = np.where((a >> (2 * BITS)) & 1, -1, 1)
        scale = 2 if mode == "x2" else 1
        terms = (a0[:, :, None] * b0[:, None, :] + a1[:, :, None] * b1[:, None, :]) \
            * sgn[:, :, None] * scale
        return intmac.to_codes(intmac.wrap(terms.sum(axis=0), ACC), ACC)


@dataclass(frozen=True)
class PairKind(PEKind):
    name = "pair_test"
    code = 99

    def layout(self, mode=None):
        return OperandLayout(a_elems=2, a_bits=BITS, b_elems=2, b_bits=BITS, a_side_bits=1)

    @property
    def modes(self):
        return ("x1", "x2")

    @property
    def result_bits(self):
        return ACC

    @property
    def latency(self):
        return 3

    def ii(self, mode=None):
        return 3 if mode == "x2" else 2

    def make_pe(self):
        return PairMacPE()

    def twin(self):
        return PairTwin()

    def formats(self):
        return {}


def _cfg():
    return CoreConfig(array=ArraySection(rows=2, cols=3), pe=PairKind(),
                      memory=MemorySection(a_depth=16, b_depth=16, c_depth=16))


def _reference(a_words, b_words, mode, mt, nt, k, rows, cols):
    """Plain Python loops over the element codes (independent of `PairTwin`)."""
    def s4(v):
        return v - 16 if v >= 8 else v
    out = np.zeros((mt * nt * rows, cols), dtype=np.uint64)
    for mi in range(mt):
        for ni in range(nt):
            for r in range(rows):
                for c in range(cols):
                    total = 0
                    for kk in range(k):
                        la = int(a_words[mi * k + kk][r])
                        lb = int(b_words[ni * k + kk][c])
                        dot = s4(la & 15) * s4(lb & 15) + s4((la >> 4) & 15) * s4((lb >> 4) & 15)
                        total += (-dot if (la >> 8) & 1 else dot) * (2 if mode else 1)
                    out[(mi * nt + ni) * rows + r][c] = total % (1 << ACC)
    return out


@pytest.mark.parametrize("mode", [0, 1])
def test_new_kind_through_the_core(mode):
    cfg = _cfg()
    g = cfg.geometry
    assert [s.lane_bits for s in g.stores] == [2 * BITS + 1, 2 * BITS, ACC]
    rng = np.random.default_rng(mode)
    mt, nt, k = 2, 2, 5
    a_words = rng.integers(0, 1 << 9, (mt * k, 2)).astype(np.uint64)
    b_words = rng.integers(0, 1 << 8, (nt * k, 3)).astype(np.uint64)

    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=4)
        info = await drv.connect()
        await drv.write("a", 0, a_words)
        await drv.write("b", 0, b_words)
        cycles = await drv.run(m_tiles=mt, n_tiles=nt, k=k, mode=mode)
        out = await drv.read("c", 0, mt * nt * 2)
        errors = []
        for bad in ({"mode": 2}, {"flags": 1}):
            try:
                await drv.start(m_tiles=1, n_tiles=1, k=1, **bad)
            except TesseraError as e:
                errors.append(e.code)
        return info, cycles, out, errors
    info, cycles, out, errors = run_with_driver(build_core(cfg), body)
    assert info.modes == 2 and info.capabilities & CAP_MODES and info.pe_ii == 2  # ii(None)
    assert not info.accumulate                 # no combiner: ACCUMULATE is refused
    assert errors == [Err.ARG, Err.ARG]
    want = _reference(a_words, b_words, mode, mt, nt, k, 2, 3)
    np.testing.assert_array_equal(out, want)
    # The golden core computes the same bits and the same cycles, by the kind's twin and the
    # engine's schedule, which paces issue by the PE's II.
    golden = GoldenCore(cfg)

    async def gbody():
        drv = TesseraDriver(GoldenTransport(golden), cfg)
        await drv.connect()
        await drv.write("a", 0, a_words)
        await drv.write("b", 0, b_words)
        c = await drv.run(m_tiles=mt, n_tiles=nt, k=k, mode=mode)
        return c, await drv.read("c", 0, mt * nt * 2)
    gcycles, gout = asyncio.run(gbody())
    np.testing.assert_array_equal(gout, want)
    assert cycles == gcycles == evaluate(cfg.engine.twin().model,
                                         {"m_tiles": mt, "n_tiles": nt, "k": k,
                                          "accumulate": 0, "mode": mode})
    # II 2 (mode 0) or 3 (mode 1): each tile's period is max(ii * k, rows, cols) cycles; then
    # read 1, operand register 1, PE 3, skew 3, output register and drain 2, write and end 2.
    ii = 3 if mode else 2
    assert cycles == 18 + (mt * nt - 1) * max(ii * k, 2, 3) + ii * (k - 1) + 1 + 1 + 3 + 3 + 2 + 2
