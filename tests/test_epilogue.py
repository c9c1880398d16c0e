# amaranth: UnusedElaboratable=no
"""IntEpilogue (hdl/arith/epilogue.py) against its twin (sim/epilogue.py), the twin against an
independent exact reference (fractions.Fraction from the definition) and against TFLite's own
test expectations; the descriptor (generators/kinds/epilogue.py)."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from amaranth import Shape

from tessera.generators.kinds.epilogue import IntEpilogueSpec
from tessera.hdl.arith.epilogue import IntEpilogue
from tessera.sim.epilogue import int_epilogue, quantize_multiplier, shift_bits_for
from tessera.sim.epilogue_ref import ref_epilogue, ref_many
from tests.helpers import run_lanes, simulate


INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# gemmlowp's fixedpoint.h, transcribed literally for int32 (C division truncates toward 0).
def gemmlowp_srdhm(a, b):
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    n = ab + nudge
    return abs(n) // (1 << 31) * (1 if n >= 0 else -1)


def gemmlowp_rdbpot(x, exponent):
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def _srange(bits):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def random_case(rng, n, acc_bits, out_bits):
    """Random operands, biased toward the interesting: real multipliers in [2**30, 2**31),
    shifts that keep the result in range, and a share of corners."""
    alo, ahi = _srange(acc_bits)
    olo, ohi = _srange(out_bits)
    sb = shift_bits_for(acc_bits)

    def ints(lo, hi, size):       # uniform over a range possibly wider than int64
        return np.array([int(v) for v in rng.integers(0, 1 << 62, size)], dtype=object) \
            % (hi - lo + 1) + lo
    acc = ints(alo, ahi, n)
    bias = np.where(rng.random(n) < 0.5, ints(alo, ahi, n),
                    ints(max(alo, -1000), min(ahi, 1000), n))
    mult = np.where(rng.random(n) < 0.7, ints(1 << 30, INT32_MAX, n), ints(INT32_MIN, INT32_MAX, n))
    shift = np.where(rng.random(n) < 0.7, ints(max(0, acc_bits - out_bits - 2), acc_bits + 1, n),
                     ints(0, (1 << sb) - 1, n))
    zp = ints(olo, ohi, n)
    lo = np.where(rng.random(n) < 0.5, olo, ints(olo, ohi, n))
    hi = np.where(rng.random(n) < 0.5, ohi, ints(olo, ohi, n))
    return [acc, bias, mult, shift, zp, lo, hi]


def corner_case(acc_bits, out_bits):
    alo, ahi = _srange(acc_bits)
    olo, ohi = _srange(out_bits)
    sb = shift_bits_for(acc_bits)
    rows = itertools.product(
        [alo, alo + 1, -1, 0, 1, ahi], [0, alo, ahi, 1],
        [INT32_MIN, INT32_MIN + 1, -1, 0, 1, 1 << 30, INT32_MAX],
        sorted({0, 1, 31, acc_bits, acc_bits + 1, acc_bits + 31, (1 << sb) - 1}),
        [tuple(min(max(v, olo), ohi) for v in z)
         for z in ((0, olo, ohi), (-3, -3, ohi), (5, olo, 6), (0, 2, -2))])
    rows = [(a, b, m, s, *z) for a, b, m, s, z in rows]
    return [np.array(c, dtype=object) for c in zip(*rows)]


def tie_case(acc_bits, out_bits):
    """Exact ties in both roundings: M = 2**30 halves s, shifts 1..3 halve again."""
    olo, ohi = _srange(out_bits)
    rows = [(s, 0, 1 << 30, sh, 0, olo, ohi) for s in range(-40, 41) for sh in (0, 1, 2, 3)]
    return [np.array(c, dtype=object) for c in zip(*rows)]


def twin(cols, acc_bits, out_bits):
    return int_epilogue(*cols, acc_bits=acc_bits, out_bits=out_bits)


# -- the twin against the reference ---------------------------------------------------------
def test_twin_exhaustive_small_against_reference():
    """acc_bits 8: every accumulator value x a multiplier grid x every shift field value,
    bias, zero point and clamp drawn per element."""
    acc_bits, out_bits = 8, 4
    rng = np.random.default_rng(8)
    mults = [INT32_MIN, INT32_MIN + 1, -(1 << 30), -1, 0, 1, 1 << 30, (1 << 30) + 1,
             1518500250, INT32_MAX]
    grid = np.array(list(itertools.product(range(-128, 128), mults,
                                           range(1 << shift_bits_for(acc_bits)))))
    n = len(grid)
    olo, ohi = _srange(out_bits)
    cols = [grid[:, 0], rng.integers(-128, 128, n), grid[:, 1], grid[:, 2],
            rng.integers(olo, ohi + 1, n), rng.integers(olo, 1, n), rng.integers(-1, ohi + 1, n)]
    np.testing.assert_array_equal(twin(cols, acc_bits, out_bits),
                                  ref_many(cols, acc_bits=acc_bits, out_bits=out_bits))


@pytest.mark.parametrize("acc_bits,out_bits", [(16, 8), (32, 8), (32, 16), (48, 16), (64, 32),
                                               (64, 2)])
def test_twin_random_and_corners_against_reference(acc_bits, out_bits):
    rng = np.random.default_rng(acc_bits * 100 + out_bits)
    for cols in (random_case(rng, 3000, acc_bits, out_bits), corner_case(acc_bits, out_bits),
                 tie_case(acc_bits, out_bits)):
        np.testing.assert_array_equal(twin(cols, acc_bits, out_bits),
                                      ref_many(cols, acc_bits=acc_bits, out_bits=out_bits))


def test_ties_by_hand():
    def one(s, mult, shift):
        return int(int_epilogue(s, 0, mult, shift, 0, -128, 127, acc_bits=16, out_bits=8))
    half = 1 << 30                   # M = 2**30: s * M / 2**31 = s / 2
    # High half: ties toward +infinity (gemmlowp).
    assert [one(s, half, 0) for s in (3, 1, -1, -3)] == [2, 1, 0, -1]
    # Divide by a power of two: ties away from zero.
    assert [one(s, INT32_MAX, 1) for s in (3, -3, 1, -1)] == [2, -2, 1, -1]
    assert [one(s, INT32_MAX, 2) for s in (5, -5, 6, -6, 7, -7)] == [1, -1, 2, -2, 2, -2]


def test_twin_matches_gemmlowp_transcription_on_int32():
    """For acc_bits 32 the steps are gemmlowp's functions, transcribed from fixedpoint.h."""
    rng = np.random.default_rng(32)
    a = [INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX] + [int(v) for v in
                                                           rng.integers(INT32_MIN, INT32_MAX, 400)]
    m = [INT32_MIN, INT32_MIN + 1, -1, 0, 1, 1 << 30, INT32_MAX] + [int(v) for v in
                                                                   rng.integers(INT32_MIN,
                                                                                INT32_MAX, 60)]
    rows = [(v, mm, sh) for v in a for mm in m[:7] for sh in (0, 1, 31)] + \
        [(v, mm, int(rng.integers(0, 32))) for v in a for mm in m[7:]]
    x, mm, sh = (np.array(c) for c in zip(*rows))
    got = int_epilogue(x, 0, mm, sh, 0, INT32_MIN, INT32_MAX, acc_bits=32, out_bits=32)
    want = [gemmlowp_rdbpot(gemmlowp_srdhm(int(p), int(q)), int(r)) for p, q, r in rows]
    np.testing.assert_array_equal(got, want)


def test_tflite_worked_examples():
    """tensorflow/lite/kernels/internal/quantization_util_test.cc: QuantizeMultiplier and
    MultiplyByQuantizedMultiplier (int32) expectations (TFLite's shift is our -shift)."""
    assert quantize_multiplier(0.25) == (1073741824, 1)
    assert quantize_multiplier(0.50 - 5e-9) == (2147483627, 1)
    assert quantize_multiplier(0.50 - 1e-10) == (1073741824, 0)
    assert quantize_multiplier(0.50) == (1073741824, 0)
    assert quantize_multiplier(0.75) == (1610612736, 0)
    assert quantize_multiplier(1 - 1e-9) == (2147483646, 0)
    assert quantize_multiplier(0.125) == (1073741824, 2)
    assert quantize_multiplier(math.ldexp(1.0, -31)) == (1073741824, 30)
    assert quantize_multiplier(math.ldexp(1.0, -32)) == (1073741824, 31)

    def qm(x, scale):
        mult, shift = quantize_multiplier(scale)
        return int(int_epilogue(x, 0, mult, shift, 0, INT32_MIN, INT32_MAX,
                                acc_bits=32, out_bits=32))
    assert qm(0, 0.1) == 0
    assert qm(10000, 0.00097656) == 10
    assert qm(-10000, 0.00097656) == -10
    assert qm(INT32_MIN, 0.00001) == -21475
    assert qm(INT32_MAX, 0.00001) == 21475
    # Largest x and M with TFLite's shift -3: its expected value is round(x * M / 2**34).
    x = INT32_MAX
    assert int(int_epilogue(x, 0, INT32_MAX, 3, 0, INT32_MIN, INT32_MAX, acc_bits=32,
                            out_bits=32)) == round(Fraction(x * INT32_MAX, 1 << 34))


def test_docs_worked_example():
    """docs/epilogue.md, "Worked example", every intermediate by hand."""
    mult, shift = quantize_multiplier(0.0123)
    assert (mult, shift) == (1690499128, 6)
    # s = 1000 + (-24) = 976; x = round(976 * 1690499128 / 2**31) = round(768.3072...) = 768;
    # y = 768 / 64 = 12; z = 12 + (-5) = 7; ReLU6 clamp at zero point -5: [-5, 100] -> 7.
    assert int(int_epilogue(1000, -24, mult, shift, -5, -5, 100, acc_bits=32, out_bits=8)) == 7
    # A negative accumulator goes to the ReLU floor, the zero point.
    assert int(int_epilogue(-5000, -24, mult, shift, -5, -5, 100, acc_bits=32, out_bits=8)) == -5


@pytest.mark.parametrize("scale,msg", [
    (0.0, r"^real_scale must be a finite number in \(0, 1\), not 0\.0$"),
    (1.0, r"^real_scale must be a finite number in \(0, 1\), not 1\.0$"),
    (-0.5, r"^real_scale must be a finite number in \(0, 1\), not -0\.5$"),
    (float("nan"), r"^real_scale must be a finite number in \(0, 1\), not nan$"),
    (1 - 1e-15, r"^real_scale 0\.999999999999999 rounds to 1\.0 \(a left shift\)"),
    (1e-12, r"^real_scale 1e-12 needs a right shift of 39, more than max_shift 31$"),
])
def test_quantize_multiplier_refuses(scale, msg):
    with pytest.raises(ValueError, match=msg):
        quantize_multiplier(scale)


def test_quantize_multiplier_wide_shift_and_accuracy():
    assert quantize_multiplier(1e-12, max_shift=63)[1] == 39
    rng = np.random.default_rng(5)
    for scale in rng.random(200) * 0.999 + 1e-4:
        mult, shift = quantize_multiplier(scale)
        assert 1 << 30 <= mult < 1 << 31
        assert abs(mult / 2.0 ** (31 + shift) - scale) <= scale * 2.0 ** -30


def test_twin_rejects_out_of_range_inputs():
    with pytest.raises(ValueError, match=r"^acc must hold integers -128\.\.127, not 128$"):
        int_epilogue(128, 0, 1, 0, 0, 0, 0, acc_bits=8, out_bits=8)
    with pytest.raises(ValueError, match=r"^shift must hold integers 0\.\.63, not 64$"):
        int_epilogue(0, 0, 1, 64, 0, 0, 0, acc_bits=8, out_bits=8)
    with pytest.raises(ValueError, match=r"^lo must hold integers -8\.\.7, not 8$"):
        int_epilogue(0, 0, 1, 0, 0, 8, 0, acc_bits=8, out_bits=4)


# -- the HDL against the twin ---------------------------------------------------------------
def run_hdl(acc_bits, out_bits, cols, gaps):
    dut = IntEpilogue(acc_bits=acc_bits, out_bits=out_bits)
    return run_lanes(dut, ["acc", "bias", "mult", "shift", "zero_point", "lo", "hi"], cols,
                     gaps)

@pytest.mark.parametrize("acc_bits,out_bits", [(8, 8), (16, 8), (32, 8), (32, 16), (48, 16),
                                               (64, 32), (64, 2)])
def test_hdl_matches_twin(acc_bits, out_bits):
    rng = np.random.default_rng(acc_bits + out_bits)
    rnd = random_case(rng, 150, acc_bits, out_bits)
    cor = corner_case(acc_bits, out_bits)
    pick = rng.choice(len(cor[0]), size=min(len(cor[0]), 250), replace=False)
    tie = tie_case(acc_bits, out_bits)
    cols = [np.concatenate([r, c[pick], t[::3]]) for r, c, t in zip(rnd, cor, tie)]
    n = len(cols[0])
    gaps = np.where(rng.random(n) < 0.8, 0, rng.integers(1, 4, n))   # mostly back to back
    np.testing.assert_array_equal(run_hdl(acc_bits, out_bits, cols, gaps),
                                  twin(cols, acc_bits, out_bits))


def test_hdl_latency_and_ii():
    dut = IntEpilogue(acc_bits=32, out_bits=8)
    seen = []

    async def bench(ctx):
        for t in range(12):
            ctx.set(dut.valid, int(t in (1, 2, 3)))
            ctx.set(dut.acc, 100 * t)
            ctx.set(dut.mult, INT32_MAX)
            ctx.set(dut.lo, -128)
            ctx.set(dut.hi, 127)
            if ctx.get(dut.out_valid):
                seen.append((t, ctx.get(dut.out)))
            await ctx.tick()
    simulate(dut, bench)
    assert dut.latency == 5
    assert seen == [(6, 100), (7, 127), (8, 127)]


@pytest.mark.parametrize("kw,msg", [
    (dict(acc_bits=7, out_bits=8), r"^acc_bits must be an integer 8\.\.64, not 7$"),
    (dict(acc_bits=65, out_bits=8), r"^acc_bits must be an integer 8\.\.64, not 65$"),
    (dict(acc_bits=True, out_bits=8), r"^acc_bits must be an integer 8\.\.64, not True$"),
    (dict(acc_bits=32, out_bits=1), r"^out_bits must be an integer 2\.\.32, not 1$"),
    (dict(acc_bits=32, out_bits="8"), r"^out_bits must be an integer 2\.\.32, not '8'$"),
])
def test_parameter_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        IntEpilogue(**kw)
    with pytest.raises(ValueError, match=msg):
        IntEpilogueSpec(**kw)


def test_widths_and_members():
    dut = IntEpilogue(acc_bits=32, out_bits=8)
    assert (dut.acc_bits, dut.out_bits, dut.mult_bits, dut.shift_bits) == (32, 8, 32, 6)
    assert IntEpilogue(acc_bits=64, out_bits=8).shift_bits == 7
    widths = {name: (Shape.cast(member.shape).width, Shape.cast(member.shape).signed)
              for name, member in dut.signature.members.items()}
    assert widths == {"valid": (1, False), "acc": (32, True), "bias": (32, True),
                      "mult": (32, True), "shift": (6, False), "zero_point": (8, True),
                      "lo": (8, True), "hi": (8, True), "out_valid": (1, False),
                      "out": (8, True)}


# -- the descriptor -------------------------------------------------------------------------
@pytest.mark.parametrize("acc_bits,out_bits", [(8, 4), (32, 8), (48, 16), (64, 32)])
def test_spec_pack_roundtrip_and_facts(acc_bits, out_bits):
    spec = IntEpilogueSpec(acc_bits, out_bits)
    dut = spec.hdl()
    dut._MustUse__silence = True         # built for its facts only
    assert (spec.latency, spec.shift_bits) == (dut.latency, dut.shift_bits)
    assert spec.lane_bits <= 64
    rng = np.random.default_rng(acc_bits)
    lo, hi = _srange(acc_bits)
    bias = np.array([lo, hi, -1, 0] + [int(v) for v in rng.integers(lo, hi, 4, endpoint=True)])
    mult = np.array([INT32_MIN, INT32_MAX, -1, 0, 1 << 30, 1, 7, 9])
    shift = np.array([0, (1 << spec.shift_bits) - 1, 1, 2, 3, 4, 5, 6])
    lanes = spec.pack_params(bias[None], mult[None], shift[None])
    assert lanes.shape == (1, 16) and lanes.dtype == np.uint64
    assert int(lanes.max()) < 1 << spec.lane_bits
    for got, want in zip(spec.unpack_params(lanes), (bias, mult, shift)):
        np.testing.assert_array_equal(got[0], want)
    d = spec.as_dict()
    assert d["latency"] == 5 and d["acc_bits"] == acc_bits and d["out_bits"] == out_bits
    assert [(p["name"], p["bits"], p["scope"]) for p in d["params"]] == [
        ("bias", acc_bits, "channel"), ("mult", 32, "channel"),
        ("shift", spec.shift_bits, "channel"), ("zero_point", out_bits, "run"),
        ("lo", out_bits, "run"), ("hi", out_bits, "run")]
    np.testing.assert_array_equal(spec.twin([100], [-24], [1690499128], [6], -5, -5, 7),
                                  int_epilogue([100], [-24], [1690499128], [6], -5, -5, 7,
                                               acc_bits=acc_bits, out_bits=out_bits))


def test_spec_pack_refuses_out_of_range():
    spec = IntEpilogueSpec(16, 8)
    with pytest.raises(ValueError, match=r"^bias must hold integers -32768\.\.32767$"):
        spec.pack_params([1 << 15], [0], [0])
    with pytest.raises(ValueError, match=r"^shift must hold integers 0\.\.63$"):
        spec.pack_params([0], [0], [64])
