# amaranth: UnusedElaboratable=no
"""The BiScaled epilogue (docs/epilogue.md, "biscaled"): the twin (sim/biscaled_epilogue.py)
against the independent exact reference (sim/biscaled_epilogue_ref.py), exhaustively over
every scale-fine level and every 8-bit accumulator, and on random and corner inputs of wide
accumulators; every output is the code the kind's codec `encode` writes for its value; the
HDL lane (hdl/arith/biscaled_epilogue.py) against the twin in the Amaranth simulator; the
descriptor; the kind's example layer cases on the golden core against the reference. The
Verilator run (bit- and cycle-exact) is the ``biscaled`` entry of tests/test_epilogue_rtl.py."""

import asyncio
import itertools

import numpy as np
import pytest
from amaranth.hdl import Fragment

from tessera.generators.config import config_from_dict
from tessera.generators.kinds.biscaled import BiScaledKind
from tessera.generators.kinds.biscaled_epilogue import BiScaledEpilogueSpec
from tessera.hdl.arith.biscaled_epilogue import BiScaledEpilogue
from tessera.sim.biscaled import BiScaledFormat
from tessera.sim.biscaled_epilogue import biscaled_epilogue
from tessera.sim.biscaled_epilogue_ref import ref_biscaled_epilogue
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.epilogue import shift_bits_for
from tessera.sim.layers import layer_from_dict
from tessera.sim.lowering import case_bias, layer_cases, requant_params, run_layer
from tests.helpers import run_lanes, simulate


NAMES = ["acc", "bias", "mult", "shift", "zero_point", "lo", "hi"]


def ref_many(cols, **kw):
    return np.array([ref_biscaled_epilogue(*map(int, c), **kw) for c in zip(*cols)],
                    dtype=np.uint64)


def twin(cols, **kw):
    return biscaled_epilogue(*[np.asarray(c, dtype=object if kw["acc_bits"] > 32 else np.int64)
                               for c in cols], **kw)


def kind_of(bits, fine, wide, acc_bits=32):
    return BiScaledKind(a_bits=bits, a_fine_frac_bits=fine, a_wide_frac_bits=wide,
                        acc_bits=max(acc_bits, bits + 6 + (fine - wide) + 2 + 1))


# (bits, fine_frac_bits, wide_frac_bits): D = 3 (the preset), 1, bits - 1, beyond the code
# width, 2-bit codes.
FORMATS = [(6, 3, 0), (4, 2, 1), (5, 2, -2), (3, 0, -5), (2, 1, -2), (8, 4, 0)]


@pytest.mark.parametrize("bits,fine,wide", FORMATS)
def test_every_level_exhaustive(bits, fine, wide):
    """Every scale-fine level of the level field (acc = 2z, M = 2**30, shift 0 makes the
    requantized level z itself): the twin equals the reference, and each output is the code
    the kind's codec writes for its value (scale-fine wherever that holds the value), within
    half a scale-wide LSB of z (or clamped at the format's end)."""
    d, lb = fine - wide, bits + fine - wide
    z = np.arange(-(1 << (lb - 1)), 1 << (lb - 1), dtype=np.int64)
    n = z.size
    cols = [2 * z, np.zeros(n, np.int64), np.full(n, 1 << 30), np.zeros(n, np.int64),
            np.zeros(n, np.int64),
            np.full(n, -(1 << (lb - 1))), np.full(n, (1 << (lb - 1)) - 1)]
    kw = dict(acc_bits=24, bits=bits, d=d)
    got = twin(cols, **kw)
    np.testing.assert_array_equal(got, ref_many(cols, **kw))
    kind = kind_of(bits, fine, wide)
    f = kind.a_format
    vals = f.decode(*f.split_lane_codes(got))
    np.testing.assert_array_equal(kind.encode(vals, operand="a"), got)
    level = vals * 2.0 ** fine
    top = float(((1 << (bits - 1)) - 1) << d)
    inside = (z >= -(1 << (bits - 1 + d))) & (z <= top)
    assert np.all(np.abs(level - z)[inside] <= (1 << (d - 1)))
    assert np.all(level[z > top] == top)
    sw = f.split_lane_codes(got)[1]
    fits = (z >= -(1 << (bits - 1))) & (z < (1 << (bits - 1)))
    assert np.all(sw[fits] == 0) and np.all(level[fits] == z[fits])
    assert sw.sum() > 0


def test_every_8bit_accumulator_exhaustive():
    """Every 8-bit accumulator x biases x (M, shift) x (zero point, clamp) for two formats."""
    for bits, fine, wide in [(6, 3, 0), (3, 1, -1)]:
        d, lb = fine - wide, bits + fine - wide
        top = 1 << (lb - 1)
        combos = list(itertools.product(
            [0, 37, -128, 127], [(1 << 30, 0), (1717986918, 0), (-(1 << 31), 1),
                                 ((1 << 31) - 1, 3), (1234567890, 9)],
            [(0, -top, top - 1), (0, 0, top - 1), (1, -top // 2, top // 3),
             (-3, top // 4, -top // 4)]))
        acc = np.arange(-128, 128)
        cols = [[] for _ in NAMES]
        for bias, (mult, shift), (zp, lo, hi) in combos:
            for c, v in zip(cols, (acc, bias, mult, shift, zp, lo, hi)):
                c.append(np.broadcast_to(v, acc.shape))
        cols = [np.concatenate(c) for c in cols]
        kw = dict(acc_bits=8, bits=bits, d=d)
        np.testing.assert_array_equal(twin(cols, **kw), ref_many(cols, **kw))


def random_case(rng, n, acc_bits, bits, d):
    lb = bits + d

    def ints(lo, hi, size):
        return np.array([int(v) for v in rng.integers(0, 1 << 62, size)], dtype=object) \
            % (hi - lo + 1) + lo
    top = 1 << (lb - 1)
    return [ints(-(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1, n),
            ints(-(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1, n) // 64,
            ints(1 << 30, (1 << 31) - 1, n), ints(0, (1 << shift_bits_for(acc_bits)) - 1, n)
            % (acc_bits + 3),
            ints(-4, 4, n), np.where(rng.random(n) < 0.5, 0, -top).astype(object),
            np.full(n, top - 1, dtype=object)]


def corner_case(acc_bits, bits, d):
    lb = bits + d
    top = 1 << (lb - 1)
    amin, amax = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    rows = list(itertools.product([amin, amax, 0, -1, 1], [0, amin, amax],
                                  [-(1 << 31), (1 << 31) - 1, 1 << 30],
                                  [0, 1, acc_bits - 1, acc_bits + 1,
                                   (1 << shift_bits_for(acc_bits)) - 1],
                                  [0], [-top, 0], [top - 1, 1 << (bits - 1)]))
    return [np.array(c, dtype=object) for c in zip(*rows)]


@pytest.mark.parametrize("acc_bits,bits,d", [(32, 6, 3), (24, 8, 1), (48, 16, 16),
                                             (64, 4, 5)])
def test_twin_random_and_corners_against_reference(acc_bits, bits, d):
    rng = np.random.default_rng(acc_bits * 100 + bits + d)
    kw = dict(acc_bits=acc_bits, bits=bits, d=d)
    for cols in (random_case(rng, 3000, **kw), corner_case(**kw)):
        np.testing.assert_array_equal(twin(cols, **kw), ref_many(cols, **kw))


# -- the HDL against the twin ---------------------------------------------------------------
def run_hdl(acc_bits, bits, d, cols, gaps):
    dut = BiScaledEpilogue(acc_bits=acc_bits, bits=bits, d=d)
    return run_lanes(dut, NAMES, cols, gaps, dtype=np.uint64)

@pytest.mark.parametrize("acc_bits,bits,d", [(24, 6, 3), (32, 2, 3), (64, 16, 16), (16, 8, 1)])
def test_hdl_matches_twin(acc_bits, bits, d):
    rng = np.random.default_rng(acc_bits + 7 * bits + d)
    kw = dict(acc_bits=acc_bits, bits=bits, d=d)
    rnd, cor = random_case(rng, 200, **kw), corner_case(**kw)
    pick = rng.choice(len(cor[0]), size=min(len(cor[0]), 200), replace=False)
    lb = bits + d                   # every level near the code range and the format's ends
    z = np.unique(np.clip(np.r_[np.arange(-(1 << (bits - 1)) - (2 << d), (1 << (bits - 1))
                                          + (2 << d)),
                               np.arange(-(1 << (lb - 1)), -(1 << (lb - 1)) + 8),
                               np.arange((1 << (lb - 1)) - 8, 1 << (lb - 1))],
                          -(1 << (lb - 1)), (1 << (lb - 1)) - 1))
    if acc_bits < lb + 2:
        z = z[(2 * z >= -(1 << (acc_bits - 1))) & (2 * z < 1 << (acc_bits - 1))]
    if z.size > 2048:   # wide formats (bits + d = 32): the levels within 64 of every edge of
        # the code range and of the wide re-rounding, plus 1024 drawn from the rest (the twin
        # is checked exhaustively against the reference elsewhere; this is the HDL's run time)
        edges = [-(1 << (bits - 1)), (1 << (bits - 1)) - 1, -(1 << (bits - 1)) - (2 << d),
                 (1 << (bits - 1)) + (2 << d)]
        near = np.concatenate([np.arange(e - 64, e + 65) for e in edges])
        z = np.unique(np.concatenate([z[np.isin(z, near)], z[:8], z[-8:],
                                      rng.choice(z, 1024, replace=False)]))
    m = z.size
    lev = [2 * z, np.zeros(m, np.int64), np.full(m, 1 << 30), np.zeros(m, np.int64),
           np.zeros(m, np.int64),
           np.full(m, -(1 << (lb - 1))), np.full(m, (1 << (lb - 1)) - 1)]
    cols = [np.concatenate([np.asarray(r, dtype=object), np.asarray(c, dtype=object)[pick],
                            np.asarray(v, dtype=object)]) for r, c, v in zip(rnd, cor, lev)]
    n = len(cols[0])
    gaps = np.where(rng.random(n) < 0.8, 0, rng.integers(1, 4, n))
    np.testing.assert_array_equal(run_hdl(acc_bits, bits, d, cols, gaps), twin(cols, **kw))


def test_hdl_latency_and_ii():
    dut = BiScaledEpilogue(acc_bits=24, bits=6, d=3)
    assert dut.latency == 6
    seen = []

    async def bench(ctx):
        for t in range(16):
            ctx.set(dut.valid, int(t in (1, 2, 3)))
            ctx.set(dut.acc, 2 * 40 * t)        # levels 40, 80, 120: all scale-wide
            ctx.set(dut.mult, 1 << 30)
            ctx.set(dut.lo, -256)
            ctx.set(dut.hi, 255)
            if ctx.get(dut.out_valid):
                seen.append((t, ctx.get(dut.out)))
            await ctx.tick()
    simulate(dut, bench)
    assert seen == [(7, 64 | 5), (8, 64 | 10), (9, 64 | 15)]


# -- the descriptor and the kind ---------------------------------------------------------------
def test_descriptor():
    kind = BiScaledKind()
    epi = kind.epilogue()
    assert isinstance(epi, BiScaledEpilogueSpec)
    assert (epi.out_bits, epi.level_bits, epi.latency, epi.lanes_per_channel) == (7, 9, 6, 2)
    assert [f.name for f in epi.run_fields] == ["zero_point", "lo", "hi"]
    assert all(f.bits == 9 and f.signed for f in epi.run_fields)
    lane = epi.hdl()
    Fragment.get(lane, None)
    assert lane.latency == epi.latency
    assert epi.level_range() == (-256, 248)
    p = epi.user_params({"scale": 0.05, "activation": "relu"}, None, 3)
    assert (p["zero_point"], p["lo"], p["hi"]) == (0, 0, 248)
    lanes = epi.pack_params(p["bias"], p["mult"], p["shift"])
    for a, b in zip(epi.unpack_params(lanes), (p["bias"], p["mult"], p["shift"])):
        np.testing.assert_array_equal(a, b)
    assert epi.as_dict()["kind"] == "biscaled_requant"
    assert epi.out_format()["kind"] == "biscaled"
    # Values decode through the A format; outputs are the next layer's A lane elements.
    codes = epi.apply_codes(np.array([[2 * 20, 2 * 100]], dtype=np.uint64),
                            {"bias": np.zeros(2, np.int64), "mult": np.full(2, 1 << 30),
                             "shift": np.zeros(2, np.int64)},
                            {"zero_point": 0, "lo": -256, "hi": 248})
    np.testing.assert_array_equal(epi.decode(codes), [[2.5, 13.0]])   # 100/8: tie, away
    assert BiScaledKind(a_bits=2, b_bits=2, acc_bits=7, a_fine_frac_bits=1,
                        a_wide_frac_bits=0, b_fine_frac_bits=1,
                        b_wide_frac_bits=0).epilogue() is None


# -- on the golden core and the RTL ------------------------------------------------------------
MEM = {"a_depth": 64, "b_depth": 64, "c_depth": 64, "p_depth": 4}


def golden_layer(cfg, layer, x, w, **kw):
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)

    async def go():
        await drv.connect()
        return await run_layer(drv, layer, x, w, **kw)
    return asyncio.run(go())


@pytest.mark.parametrize("pe", [{}, {"a_bits": 4, "a_fine_frac_bits": 2,
                                     "a_wide_frac_bits": -1, "acc_bits": 24}])
def test_example_cases_on_golden_core(pe):
    cfg = config_from_dict({"array": {"rows": 2, "cols": 3}, "pe": {"kind": "biscaled", **pe},
                            "memory": MEM})
    epi = cfg.engine.epilogue()
    cases = [c for c in cfg.engine.layer_cases() if c.get("epilogue") is not None]
    assert len(cases) == 3
    wide = fine = 0
    for case in cases:
        layer = layer_from_dict(case["layer"])
        x, w = cfg.engine.layer_operands(layer, case["input"], seed=case["seed"])
        kw = {"epilogue": case["epilogue"], "bias": case_bias(cfg, layer, case)}
        got, st = golden_layer(cfg, layer, x, w, raw=True, **kw)
        acc = cfg.engine.layer_reference(layer, x, w, k_split=st.k_split)
        params = requant_params(cfg.engine, case["epilogue"], kw["bias"], acc.shape[1])
        want = epi.reference_codes(acc, params)
        np.testing.assert_array_equal(np.asarray(got, np.uint64), want)
        sw = epi.fmt.split_lane_codes(want)[1]
        wide, fine = wide + int(sw.sum()), fine + int((sw == 0).sum())
        # Values: the decoded outputs, re-encoded by the kind's codec, give the same codes.
        vals = epi.decode(got)
        np.testing.assert_array_equal(cfg.pe.encode(vals, operand="a"),
                                      np.asarray(got, np.uint64))
    assert wide > 10 and fine > 10          # both scales are exercised


def test_p_depth_refused_below_8_accumulator_bits():
    from tessera.generators.kinds.base import ConfigError
    with pytest.raises(ConfigError, match=r"^memory\.p_depth: 4 asks for an epilogue and "
                                          r"pe\.kind 'biscaled' has none \(the requantizing "
                                          r"epilogue needs pe\.acc_bits >= 8\); allowed: 0$"):
        config_from_dict({"pe": {"kind": "biscaled", "a_bits": 2, "b_bits": 2,
                                 "a_fine_frac_bits": 1, "a_wide_frac_bits": 0,
                                 "b_fine_frac_bits": 1, "b_wide_frac_bits": 0, "acc_bits": 7},
                          "memory": {"p_depth": 4}})
