"""The fpec kind's requantizing epilogue (docs/epilogue.md, "fpec"): the twin
(`tessera.sim.fpec_epilogue`) against the independent Fraction reference
(`tessera.sim.fpec_epilogue_ref`), exhaustively on a small format and on corners plus seeded
random values on wide ones; the reference against the host quantizer
(`tessera.sim.fpec.FpecFormat.quantize`) wherever float64 holds the exact value; the HDL lane
(`tessera.hdl.arith.fpec_epilogue.FpecEpilogue`) against the twin in Amaranth simulation;
and the golden core running the epilogue's layer cases against the reference. The RTL run is
`tests/test_epilogue_rtl.py` (config ``fpec``)."""

import asyncio
import itertools
from fractions import Fraction

import numpy as np
import pytest

from tessera.generators.config import config_from_dict
from tessera.hdl.arith.fixed import FixedFormat
from tessera.hdl.arith.fpec_epilogue import FpecEpilogue
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.fpec import FpecFormat
from tessera.sim.fpec_epilogue import fpec_epilogue, shift_bits_for, threshold_bits
from tessera.sim.fpec_epilogue_ref import ref_fpec_epilogue
from tessera.sim.layers import layer_from_dict
from tessera.sim.lowering import case_bias, layer_cases, requant_params, run_layer

from tests.helpers import run_lanes, simulate


NAMES = ("acc", "bias", "mult", "shift", "zero_point", "lo", "hi")


def twin(cols, acc_bits, w, emb_bits, threshold):
    return fpec_epilogue(*cols, acc_bits=acc_bits, w=w, emb_bits=emb_bits,
                         threshold=threshold)


def ref(cols, acc_bits, w, emb_bits, threshold):
    return np.array([ref_fpec_epilogue(*map(int, c), acc_bits=acc_bits, w=w,
                                       emb_bits=emb_bits, threshold=threshold)
                     for c in zip(*cols)], dtype=np.int64)


def random_cols(rng, n, acc_bits, w):
    """Random elements: mostly unclipped (format range), a quarter with random clips, shifts
    mostly where the quotient lands in the output range."""
    half, top = 1 << (acc_bits - 1), 1 << (w - 1)
    acc = np.array([int(v) for v in rng.integers(-half, half, n, dtype=np.int64)]
                   if acc_bits < 64 else [int(rng.integers(-2**62, 2**62)) * 2 - int(rng.integers(0, 2)) for _ in range(n)], dtype=object)
    bias = np.array([int(v) // 8 for v in rng.integers(-half, half, n, dtype=np.int64)]
                    if acc_bits < 64 else [0] * n, dtype=object)
    mult = rng.integers(-(1 << 31), 1 << 31, n)
    mult = np.where(rng.random(n) < 0.7, rng.integers(1 << 30, 1 << 31, n), mult)
    # |s * M| ~ 2**(acc_bits + 29): a shift near acc_bits - w lands x in the output range.
    base = max(0, acc_bits - w - 1)
    shift = np.clip(base + rng.integers(-3, 5, n), 0, None)
    shift = np.where(rng.random(n) < 0.1, rng.integers(0, 1 << shift_bits_for(acc_bits), n),
                     shift)
    zp = np.where(rng.random(n) < 0.7, 0, rng.integers(-top, top, n))
    clip = rng.random(n) < 0.25
    lo = np.where(clip, rng.integers(-top, top, n), -top)
    hi = np.where(clip, rng.integers(-top, top, n), top - 1)
    return [acc, bias, mult, shift, zp, lo, hi]


def corner_cols(acc_bits, w):
    half, top = 1 << (acc_bits - 1), 1 << (w - 1)
    accs = [-half, -half + 1, -1, 0, 1, half - 1, 12345 % half, -(54321 % half)]
    mults = [-(1 << 31), -(1 << 31) + 1, -1, 0, 1, 1 << 30, (1 << 31) - 1, 1518500250]
    shifts = sorted({0, 1, 5, max(0, acc_bits - w - 1), acc_bits - 1, acc_bits, acc_bits + 1,
                     acc_bits + 30, (1 << shift_bits_for(acc_bits)) - 1})
    clips = [(0, -top, top - 1), (1, 0, top - 1), (-1, -2, 3), (0, 2, -2), (top - 1, -top, -top)]
    rows = [(a, 0, m, s, z, l, h) for a, m, s, (z, l, h) in
            itertools.product(accs, mults, shifts, clips)]
    return [np.array(c, dtype=object) for c in zip(*rows)]


def tie_cols(acc_bits, w, emb_bits, threshold):
    """Quotients exactly on every bucket edge, on the rounding tie and one LSB of the
    quotient's fraction either side, for both signs."""
    B = threshold_bits(threshold, emb_bits)
    t = Fraction(threshold)
    n = 1 << emb_bits
    edges = [t + j * (Fraction(1, 2) - t) / n for j in range(n)] + [Fraction(1, 2)]
    rows = []
    shift = 2
    K = 31 + shift
    for q in (0, 3, -3):
        for e in edges:
            for sign in (1, -1):
                x = q + sign * e
                num = x * (1 << K)
                if num.denominator != 1:
                    continue
                for d in (-1, 0, 1):
                    p = int(num) + d        # s * M with M = 1: s = p
                    if -(1 << (acc_bits - 1)) <= p < 1 << (acc_bits - 1):
                        rows.append((p, 0, 1, shift, 0, -(1 << (w - 1)), (1 << (w - 1)) - 1))
    return [np.array(c, dtype=object) for c in zip(*rows)] if rows else None


def test_exhaustive_small_format():
    """acc_bits 8, w 3, emb_bits 2, T 1/4: every accumulator x every shift x two multipliers x
    every zero point (2**17 elements), then every (lo, hi) pair x every accumulator."""
    a, w, m, T = 8, 3, 2, 0.25
    accs = np.arange(-128, 128)
    rows = list(itertools.product(accs, [0], [1 << 30, -1518500250],
                                  range(1 << shift_bits_for(a)), range(-2, 2), [-4], [3]))
    cols = [np.array(c, dtype=np.int64) for c in zip(*rows)]
    np.testing.assert_array_equal(twin(cols, a, w, m, T), ref(cols, a, w, m, T))
    rows = list(itertools.product(accs, [7], [1 << 30], [3], [1], range(-4, 4), range(-4, 4)))
    cols = [np.array(c, dtype=np.int64) for c in zip(*rows)]
    np.testing.assert_array_equal(twin(cols, a, w, m, T), ref(cols, a, w, m, T))


FORMATS = [(16, 4, 0, 0.25), (16, 4, 2, 0.25), (32, 6, 1, 0.5), (32, 6, 2, 0.3),
           (24, 8, 2, 0.375), (64, 16, 2, 0.125), (48, 5, 1, 0.25)]


@pytest.mark.parametrize("acc_bits,w,emb_bits,threshold", FORMATS)
def test_twin_matches_reference(acc_bits, w, emb_bits, threshold):
    rng = np.random.default_rng(acc_bits * 7 + w + emb_bits)
    sets = [random_cols(rng, 1500, acc_bits, w), corner_cols(acc_bits, w)]
    ties = tie_cols(acc_bits, w, emb_bits, threshold)
    if ties is not None:
        sets.append(ties)
    for cols in sets:
        got = twin(cols, acc_bits, w, emb_bits, threshold)
        np.testing.assert_array_equal(got, ref(cols, acc_bits, w, emb_bits, threshold))
    # The sets exercise every field value (with T = 1/2 only ties compensate).
    fmt = FpecFormat(FixedFormat(w - 1, 0), emb_bits, threshold)
    codes = np.concatenate([twin(c, acc_bits, w, emb_bits, threshold) for c in sets])
    q, ezb, edb, e = fmt.fields(codes.astype(np.uint64))
    assert set(ezb.tolist()) == {0, 1} and set(edb.tolist()) == {0, 1}
    assert set(e.tolist()) == (set(range(1 << emb_bits)) if threshold < 0.5 else {0})


@pytest.mark.parametrize("emb_bits,threshold", [(0, 0.25), (1, 0.25), (2, 0.25), (2, 0.375),
                                                (1, 0.5), (2, 0.125)])
def test_reference_is_the_host_quantizer(emb_bits, threshold):
    """Where float64 holds the exact value, the reference's code is `FpecFormat.quantize` of
    the clipped value (lo/hi the format's range: of the value itself)."""
    int_bits, frac_bits = 3, 2
    fmt = FpecFormat(FixedFormat(int_bits, frac_bits), emb_bits, threshold)
    w = fmt.w
    rng = np.random.default_rng(emb_bits * 10 + int(threshold * 8))
    n = 3000
    acc = rng.integers(-(1 << 15), 1 << 15, n)
    mult = rng.integers(1 << 30, 1 << 31, n)
    shift = rng.integers(9, 15, n)
    full = rng.random(n) < 0.5
    lo = np.where(full, fmt.fixed.min_int, rng.integers(-8, 1, n))
    hi = np.where(full, fmt.fixed.max_int, rng.integers(1, 12, n))
    zp = rng.integers(-2, 3, n)
    cols = [acc, np.zeros(n, dtype=np.int64), mult, shift, zp, lo, hi]
    got = ref(cols, 16, w, emb_bits, threshold)
    x = [Fraction(int(a) * int(mm), 1 << (31 + int(s))) + int(z)
         for a, mm, s, z in zip(acc, mult, shift, zp)]
    mn, mx = fmt.fixed.min_int, fmt.fixed.max_int

    def act(xi, lo_, hi_):          # ReLU/clip; a bound at the format's end is no clip
        xi = xi if lo_ == mn else max(xi, Fraction(int(lo_)))
        return xi if hi_ == mx else min(xi, Fraction(int(hi_)))
    v = [act(xi, l, h) for xi, l, h in zip(x, lo, hi)]
    vals = np.array([float(vi) for vi in v])
    assert all(Fraction(f) == vi for f, vi in zip(vals, v))        # exact in float64
    want = fmt.quantize(vals * 2.0 ** -frac_bits).astype(np.int64)
    np.testing.assert_array_equal(got, want)
    # Without a clip: the host quantizer of x itself, saturated values included.
    assert (full & (vals > mx + 0.5)).sum() > 20 and (full & (vals < mn - 0.5)).sum() > 20
    assert (~full & (vals == lo)).sum() > 20


# -- the HDL against the twin ---------------------------------------------------------------
def run_hdl(dut, cols, gaps):
    return run_lanes(dut, NAMES, cols, gaps)

@pytest.mark.parametrize("acc_bits,w,emb_bits,threshold",
                         [(16, 4, 2, 0.25), (32, 6, 0, 0.25), (32, 6, 2, 0.3),
                          (64, 16, 1, 0.375), (8, 3, 2, 0.5)])
def test_hdl_matches_twin(acc_bits, w, emb_bits, threshold):
    rng = np.random.default_rng(acc_bits + w + emb_bits)
    cor = corner_cols(acc_bits, w)
    pick = rng.choice(len(cor[0]), size=min(len(cor[0]), 200), replace=False)
    sets = [random_cols(rng, 200, acc_bits, w), [c[pick] for c in cor]]
    ties = tie_cols(acc_bits, w, emb_bits, threshold)
    if ties is not None:
        sets.append(ties)
    cols = [np.concatenate(list(c)) for c in zip(*sets)]
    n = len(cols[0])
    gaps = np.where(rng.random(n) < 0.8, 0, rng.integers(1, 4, n))
    dut = FpecEpilogue(acc_bits=acc_bits, w=w, emb_bits=emb_bits, threshold=threshold)
    np.testing.assert_array_equal(run_hdl(dut, cols, gaps),
                                  twin(cols, acc_bits, w, emb_bits, threshold))


def test_hdl_latency_and_ii():
    dut = FpecEpilogue(acc_bits=32, w=6, emb_bits=0, threshold=0.25)
    seen = []

    async def bench(ctx):
        for t in range(12):
            ctx.set(dut.valid, int(t in (1, 2, 3)))
            ctx.set(dut.acc, t << 20)
            ctx.set(dut.mult, 1 << 30)
            ctx.set(dut.shift, 19)
            ctx.set(dut.lo, -32)
            ctx.set(dut.hi, 31)
            if ctx.get(dut.out_valid):
                seen.append((t, ctx.get(dut.out)))
            await ctx.tick()
    simulate(dut, bench)
    assert dut.latency == 5
    # x = t * 2**20 * 2**30 / 2**(31 + 19) = t: exact levels, EZB (the code is the level).
    assert seen == [(6, 1), (7, 2), (8, 3)]


# -- the kind, the golden core ------------------------------------------------------------------
def cfg_of(**pe):
    return config_from_dict({"array": {"rows": 2, "cols": 3}, "pe": {"kind": "fpec", **pe},
                             "memory": {"a_depth": 64, "b_depth": 64, "c_depth": 64,
                                        "p_depth": 4}})


def test_kind_builds_the_epilogue():
    cfg = cfg_of(emb_bits=2)
    epi = cfg.engine.epilogue()
    assert epi.out_bits == cfg.pe.layout().a_bits == 10
    assert epi.latency == 5          # the lane's: test_hdl_latency_and_ii
    assert [f.name for f in epi.param_fields] == list(NAMES[1:])
    assert epi.out_format() == cfg.pe.a_format.as_dict()
    assert config_from_dict({"pe": {"kind": "fpec"}}).engine.epilogue() is None


@pytest.mark.parametrize("pe", [{}, {"emb_bits": 2}, {"emb_bits": 1, "threshold": 0.375,
                                                      "acc_bits": 20}])
def test_epilogue_cases_on_golden_core(pe):
    cfg = cfg_of(**pe)
    epi = cfg.engine.epilogue()
    cases = [c for c in layer_cases(cfg) if "epilogue" in c]
    assert len(cases) == 3
    fields = set()
    for case in cases:
        layer = layer_from_dict(case["layer"])
        x, w = cfg.engine.layer_operands(layer, case["input"], seed=case["seed"])
        kw = {"epilogue": case["epilogue"], "bias": case_bias(cfg, layer, case)}
        drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)

        async def go():
            await drv.connect()
            return await run_layer(drv, layer, x, w, raw=True, **kw)
        got, st = asyncio.run(go())
        acc = cfg.engine.layer_reference(layer, x, w, k_split=st.k_split)
        params = requant_params(cfg.engine, case["epilogue"], kw["bias"], acc.shape[1])
        want = epi.reference_codes(acc, params)
        np.testing.assert_array_equal(np.asarray(got, dtype=np.uint64), want)
        q, ezb, edb, e = epi.fmt.fields(want)
        fields.update(zip(ezb.ravel().tolist(), edb.ravel().tolist(), e.ravel().tolist()))
    # Uncompensated outputs and compensated ones in both directions occur.
    assert {f[:2] for f in fields} == {(1, 0), (0, 0), (0, 1)}
