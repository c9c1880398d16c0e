# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tier of the floating-point units, bit-exact against `tessera.sim.fp`.

Exhaustive where the operand space is 8 bits wide (every FP8 x FP8 product, every FP8
conversion, every 16-bit -> FP8 conversion for the main pairs), directed corners plus seeded
random vectors for the 16-bit formats, every pipeline depth 1..4, the MAC (also as a PE) on
back-to-back accumulations, and the parameter validation messages. The 10^5-vector random sets
and the exhaustive FP8 MAC live in the cocotb tier (`tests/test_fp_rtl.py`); the Amaranth
version of the latter is marked ``slow``.
"""
# amaranth: UnusedElaboratable=no

import numpy as np
import pytest
from amaranth import Shape, unsigned
from amaranth.lib.wiring import In
from amaranth.sim import Simulator

from tessera.hdl.arith import formats as F
from tessera.hdl.arith.fpadd import FPAdd
from tessera.hdl.arith.fpcommon import FormatInfo
from tessera.hdl.arith.fpconv import FPConvert
from tessera.hdl.arith.fpfma import FPFMA
from tessera.hdl.arith.fpmac import FPMac
from tessera.hdl.arith.fpmul import FPMul
from tessera.hdl.arith.fpunit import FPUnit
from tessera.hdl.array.pe import PE, PESignature
import tessera.sim.fp as fp


def fid(x):
    return x.name if isinstance(x, F.FloatFormat) else str(x)


FP8 = [F.fp8_e4m3, F.fp8_e5m2, F.hfp8, F.hfp8_ibm]
WIDE = [F.fp16, F.bf16, F.dlfloat16]


# ------------------------------------------------------------------------------------------
# harness

def run_pipelined(dut, inputs):
    """Drive one vector per cycle into a fixed-latency unit; return ``result`` per vector."""
    names = list(inputs)
    cols = [np.asarray(inputs[k]).astype(np.int64).tolist() for k in names]
    ports = [getattr(dut, k) for k in names]
    n = len(cols[0])
    got = []

    async def drive(ctx):
        for i in range(n):
            for p, c in zip(ports, cols):
                ctx.set(p, c[i])
            await ctx.tick()

    async def collect(ctx):
        await ctx.tick().repeat(dut.latency)
        for _ in range(n):
            got.append(ctx.get(dut.result))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.add_testbench(collect)
    sim.run()
    return np.array(got, dtype=np.int64)


def mac_stream(accs, *, rng, gaps=0.0, sr_bits=0):
    """Per-cycle stream for accumulations ``accs`` (list of (a, b, rand)), with idle gaps."""
    cycles = []
    for a, b, r in accs:
        n = len(a)
        for i in range(n):
            c = {"a": int(a[i]), "b": int(b[i]), "valid": 1, "first": int(i == 0),
                 "last": int(i == n - 1)}
            if sr_bits:
                c["rand"] = int(r[i])
            cycles.append(c)
            if gaps and rng.random() < gaps:   # idle cycle with garbage on the data lines
                g = {"a": int(rng.integers(0, 256)), "b": int(rng.integers(0, 256)),
                     "valid": 0, "first": int(rng.integers(0, 2)),
                     "last": int(rng.integers(0, 2))}
                if sr_bits:
                    g["rand"] = 0
                cycles.append(g)
    return cycles


def run_mac(dut, cycles):
    """Drive a MAC/PE stream; check result_valid timing; return the finished results."""
    lasts = [i for i, c in enumerate(cycles) if c["valid"] and c["last"]]
    seen = []

    async def drive(ctx):
        for c in cycles:
            for k, v in c.items():
                ctx.set(getattr(dut, k), v)
            await ctx.tick()
        ctx.set(dut.valid, 0)

    async def collect(ctx):
        for cyc in range(len(cycles) + dut.latency + 2):
            if ctx.get(dut.result_valid):
                seen.append((cyc, ctx.get(dut.result)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.add_testbench(collect)
    sim.run()
    assert [c for c, _ in seen] == [i + dut.latency for i in lasts]
    return np.array([r for _, r in seen], dtype=np.int64)


def assert_codes(got, expected, *inputs):
    expected = np.asarray(expected, dtype=np.int64)
    bad = np.nonzero(got != expected)[0]
    if bad.size:
        rows = [" ".join(f"{int(x[i]):#x}" for x in inputs) +
                f" -> {int(got[i]):#x} twin {int(expected[i]):#x}" for i in bad[:8]]
        pytest.fail(f"{bad.size} of {got.size} mismatches:\n" + "\n".join(rows))


def corners(fmt):
    """Directed corner codes of ``fmt``: zeros, subnormal edges, 1, max, specials, ..."""
    m = fmt.man_bits
    one = fmt.bias << m
    mags = {0, 1, 2, fmt.man_mask, 1 << m, (1 << m) + 1, one, one + 1, one - 1,
            one + (1 << (m - 1)), fmt.max_finite_code, fmt.max_finite_code - 1,
            fmt.mag_mask, fmt.mag_mask - 1, (fmt.exp_max_field << m)}
    codes = set()
    for mag in mags:
        codes.add(mag)
        codes.add(mag | fmt.sign_mask)
    codes.add(fmt.nan_code)
    return np.array(sorted(codes), dtype=np.int64)


def near_pairs(fmt, rng, n):
    """Random pairs whose second operand is close in magnitude (cancellation, ties)."""
    a = rng.integers(0, 1 << fmt.width, n)
    flip = rng.integers(0, 1 << (fmt.man_bits + 2), n) | (rng.integers(0, 2, n) * fmt.sign_mask)
    b = (a ^ flip) & ((1 << fmt.width) - 1)
    return a, b


def all_pairs():
    a, b = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    return a.ravel(), b.ravel()


#: Exhaustive runs in the default suite: the first format of each unit; the other formats'
#: exhaustive runs are ``slow`` (Amaranth's simulator takes 15-30 s per 65536 inputs) and the
#: default suite runs them on `sampled` inputs instead.
EXHAUSTIVE_SLOW = pytest.mark.slow


def sampled(fmt, codes, n=6000, seed=0):
    """``codes`` (pairs as arrays, or one array) cut to every pair with a corner operand
    (`corners`: zeros, subnormals, the largest finite, infinities, NaNs) plus ``n`` seeded
    random others: the exhaustive set's edges, for the default suite."""
    arrays = codes if isinstance(codes, tuple) else (codes,)
    c = set(int(x) for x in corners(fmt))
    edge = np.zeros(len(arrays[0]), dtype=bool)
    for x in arrays:
        edge |= np.isin(x, list(c))
    rest = np.flatnonzero(~edge)
    pick = np.random.default_rng(seed).choice(rest, size=min(n, len(rest)), replace=False)
    idx = np.sort(np.concatenate([np.flatnonzero(edge), pick]))
    out = tuple(x[idx] for x in arrays)
    return out if isinstance(codes, tuple) else out[0]


# ------------------------------------------------------------------------------------------
# multiplier

@pytest.mark.parametrize("fmt,stages", [pytest.param(f, st, marks=() if i == 0 else
                                                      EXHAUSTIVE_SLOW)
                                         for i, (f, st) in enumerate(zip(FP8, [1, 2, 3, 4]))],
                         ids=lambda x: getattr(x, "name", x))
def test_mul_fp8_exhaustive(fmt, stages):
    a, b = all_pairs()
    got = run_pipelined(FPMul(fmt_in=fmt, stages=stages), {"a": a, "b": b})
    assert_codes(got, fp.mul(fmt, a, b), a, b)


@pytest.mark.parametrize("fmt,stages", list(zip(FP8, [1, 2, 3, 4]))[1:],
                         ids=lambda x: getattr(x, "name", x))
def test_mul_fp8_sampled(fmt, stages):
    """The formats whose exhaustive run is slow: every corner pair and 6000 others."""
    a, b = sampled(fmt, all_pairs())
    got = run_pipelined(FPMul(fmt_in=fmt, stages=stages), {"a": a, "b": b})
    assert_codes(got, fp.mul(fmt, a, b), a, b)


@pytest.mark.parametrize("fmt_in,fmt_out", [(F.fp8_e4m3, F.fp16),
                                            pytest.param(F.fp8_e5m2, F.dlfloat16,
                                                         marks=EXHAUSTIVE_SLOW)],
                         ids=["e4m3-fp16", "e5m2-dlf16"])
def test_mul_fp8_to_wide_exhaustive(fmt_in, fmt_out):
    a, b = all_pairs()
    got = run_pipelined(FPMul(fmt_in=fmt_in, fmt_out=fmt_out, stages=2), {"a": a, "b": b})
    assert_codes(got, fp.mul(fmt_in, a, b, fmt_out), a, b)


def test_mul_fp8_to_wide_sampled():
    """e5m2 x e5m2 into DLFloat16 (exhaustive: slow): every corner pair and 6000 others."""
    fmt_in, fmt_out = F.fp8_e5m2, F.dlfloat16
    a, b = sampled(fmt_in, all_pairs())
    got = run_pipelined(FPMul(fmt_in=fmt_in, fmt_out=fmt_out, stages=2), {"a": a, "b": b})
    assert_codes(got, fp.mul(fmt_in, a, b, fmt_out), a, b)


@pytest.mark.parametrize("fmt", WIDE, ids=lambda f: f.name)
@pytest.mark.parametrize("ftz", [False, True], ids=["gradual", "ftz"])
def test_mul_wide(fmt, ftz):
    rng = np.random.default_rng(10)
    c = corners(fmt)
    ca, cb = [x.ravel() for x in np.meshgrid(c, c)]
    ra, rb = rng.integers(0, 1 << fmt.width, (2, 1500))
    a, b = np.concatenate([ca, ra]), np.concatenate([cb, rb])
    got = run_pipelined(FPMul(fmt_in=fmt, ftz=ftz, stages=2), {"a": a, "b": b})
    assert_codes(got, fp.mul(fmt, a, b, ftz=ftz), a, b)


# ------------------------------------------------------------------------------------------
# adder

def test_add_e4m3_exhaustive():
    a, b = all_pairs()
    got = run_pipelined(FPAdd(fmt=F.fp8_e4m3, stages=2), {"a": a, "b": b})
    assert_codes(got, fp.add(F.fp8_e4m3, a, b), a, b)


@pytest.mark.parametrize("fmt", [F.fp8_e5m2, F.hfp8, F.hfp8_ibm], ids=lambda f: f.name)
def test_add_fp8_random(fmt):
    rng = np.random.default_rng(11)
    a, b = rng.integers(0, 256, (2, 4000))
    got = run_pipelined(FPAdd(fmt=fmt, stages=3), {"a": a, "b": b})
    assert_codes(got, fp.add(fmt, a, b), a, b)


@pytest.mark.parametrize("fmt", WIDE, ids=lambda f: f.name)
@pytest.mark.parametrize("ftz", [False, True], ids=["gradual", "ftz"])
def test_add_wide(fmt, ftz):
    rng = np.random.default_rng(12)
    c = corners(fmt)
    ca, cb = [x.ravel() for x in np.meshgrid(c, c)]
    na, nb = near_pairs(fmt, rng, 1500)
    ra, rb = rng.integers(0, 1 << fmt.width, (2, 500))
    a, b = np.concatenate([ca, na, ra]), np.concatenate([cb, nb, rb])
    got = run_pipelined(FPAdd(fmt=fmt, ftz=ftz, stages=2), {"a": a, "b": b})
    assert_codes(got, fp.add(fmt, a, b, ftz=ftz), a, b)


@pytest.mark.parametrize("fmt,d", [(F.fp16, 4), (F.dlfloat16, 7), (F.fp8_e5m2, 1)],
                         ids=["fp16-sr4", "dlf16-sr7", "e5m2-sr1"])
def test_add_stochastic(fmt, d):
    rng = np.random.default_rng(13)
    a, b = near_pairs(fmt, rng, 2000)
    r = rng.integers(0, 1 << d, a.size)
    got = run_pipelined(FPAdd(fmt=fmt, sr_bits=d, stages=2), {"a": a, "b": b, "rand": r})
    assert_codes(got, fp.add(fmt, a, b, sr_bits=d, rand=r), a, b, r)


# ------------------------------------------------------------------------------------------
# FMA

def fma_vectors(fi, fa, rng, n):
    ci = corners(fi)[::2]
    ca = corners(fa)[::3]
    x, y, z = [v.ravel() for v in np.meshgrid(ci, ci, ca)]
    a, b = rng.integers(0, 1 << fi.width, (2, n))
    p = fp.mul(fi, a, b, fa).astype(np.int64)
    c = (p ^ rng.integers(0, 1 << (fa.man_bits + 3), n) ^ fa.sign_mask) & ((1 << fa.width) - 1)
    c[::2] = rng.integers(0, 1 << fa.width, n)[::2]
    return np.concatenate([x, a]), np.concatenate([y, b]), np.concatenate([z, c])


@pytest.mark.parametrize("fi,fa", [(F.fp16, F.fp16), (F.bf16, F.bf16),
                                   (F.dlfloat16, F.dlfloat16), (F.fp8_e4m3, F.fp16),
                                   (F.fp8_e5m2, F.dlfloat16), (F.hfp8, F.bf16),
                                   (F.hfp8_ibm, F.dlfloat16), (F.fp16, F.fp32)],
                         ids=lambda f: f.name)
def test_fma(fi, fa):
    rng = np.random.default_rng(14)
    a, b, c = fma_vectors(fi, fa, rng, 1200)
    got = run_pipelined(FPFMA(fmt_in=fi, fmt_acc=fa, stages=3), {"a": a, "b": b, "c": c})
    assert_codes(got, fp.fma(fi, a, b, fa, c), a, b, c)


@pytest.mark.parametrize("fmt", [F.fp16, F.bf16], ids=lambda f: f.name)
def test_fma_subnormal_products(fmt):
    """Subnormal x large products (unnormalised product significands) against addends of
    nearby and much smaller magnitude: the alignment window's exactness corner."""
    rng = np.random.default_rng(17)
    n = 3000
    man, eb = fmt.man_bits, fmt.exp_bits
    top = (1 << eb) - 2
    a = rng.integers(1, 1 << man, n) | (rng.integers(0, 2, n) << (fmt.width - 1))
    b = (rng.integers(top - man - 3, top + 1, n) << man) | rng.integers(0, 1 << man, n)
    b |= rng.integers(0, 2, n) << (fmt.width - 1)
    p = fp.mul(fmt, a, b).astype(np.int64)
    shift = rng.integers(0, 2 * man + 4, n) << man
    c = (p - shift) & ((1 << (fmt.width - 1)) - 1)
    c = np.where(p & ((1 << (fmt.width - 1)) - 1) > shift, c, rng.integers(0, 1 << man, n))
    c = c ^ rng.integers(0, 1 << 3, n) ^ (rng.integers(0, 2, n) << (fmt.width - 1))
    got = run_pipelined(FPFMA(fmt_in=fmt, stages=2), {"a": a, "b": b, "c": c})
    assert_codes(got, fp.fma(fmt, a, b, fmt, c), a, b, c)


def test_fma_ftz_and_stochastic():
    rng = np.random.default_rng(15)
    a, b, c = fma_vectors(F.fp8_e5m2, F.fp16, rng, 1500)
    got = run_pipelined(FPFMA(fmt_in=F.fp8_e5m2, fmt_acc=F.fp16, ftz=True, stages=2),
                        {"a": a, "b": b, "c": c})
    assert_codes(got, fp.fma(F.fp8_e5m2, a, b, F.fp16, c, ftz=True), a, b, c)
    r = rng.integers(0, 32, a.size)
    got = run_pipelined(FPFMA(fmt_in=F.fp8_e5m2, fmt_acc=F.fp16, sr_bits=5, stages=2),
                        {"a": a, "b": b, "c": c, "rand": r})
    assert_codes(got, fp.fma(F.fp8_e5m2, a, b, F.fp16, c, sr_bits=5, rand=r), a, b, c, r)


# ------------------------------------------------------------------------------------------
# converters

@pytest.mark.parametrize("src", FP8, ids=lambda f: f.name)
def test_convert_fp8_exhaustive(src):
    """Every FP8 code into every format, with nearest/saturate/ftz variants."""
    a = np.arange(256)
    for dst in F.FORMATS.values():
        for kw in ({}, {"overflow": "saturate"}, {"ftz": True}):
            got = run_pipelined(FPConvert(fmt_from=src, fmt_to=dst, **kw), {"a": a})
            assert_codes(got, fp.convert(src, dst, a, **kw), a)


@pytest.mark.parametrize("src,dst,kw", [
    (F.fp16, F.fp8_e4m3, {}), (F.fp16, F.fp8_e5m2, {"overflow": "saturate"}),
    (F.bf16, F.hfp8, {}), (F.bf16, F.hfp8_ibm, {"ftz": True}),
    (F.fp16, F.dlfloat16, {}), (F.dlfloat16, F.fp16, {}), (F.dlfloat16, F.bf16, {}),
    (F.bf16, F.fp16, {"rounding": "rnu"}),
], ids=lambda x: x.name if isinstance(x, F.FloatFormat) else (
    "-".join(f"{k}={v}" for k, v in x.items()) or "default"))
def test_convert_16bit_exhaustive(src, dst, kw, request):
    a = np.arange(1 << 16)
    if request.node.callspec.id not in FULL_CONVERT:
        a = sampled(src, a, n=8000)        # every corner code and 8000 others
    got = run_pipelined(FPConvert(fmt_from=src, fmt_to=dst, stages=2, **kw), {"a": a})
    assert_codes(got, fp.convert(src, dst, a, **kw), a)


#: The 16-bit conversions run over all 65536 codes in the default suite; the others over
#: `sampled` codes there, and over all codes with ``-m slow``
#: (`test_convert_16bit_exhaustive_slow`).
FULL_CONVERT = ("fp16-fp8_e4m3-default", "fp16-dlfloat16-default")


@pytest.mark.slow
@pytest.mark.parametrize("src,dst,kw", [
    (F.fp16, F.fp8_e5m2, {"overflow": "saturate"}), (F.bf16, F.hfp8, {}),
    (F.bf16, F.hfp8_ibm, {"ftz": True}), (F.dlfloat16, F.fp16, {}), (F.dlfloat16, F.bf16, {}),
    (F.bf16, F.fp16, {"rounding": "rnu"})])
def test_convert_16bit_exhaustive_slow(src, dst, kw):
    a = np.arange(1 << 16)
    got = run_pipelined(FPConvert(fmt_from=src, fmt_to=dst, stages=2, **kw), {"a": a})
    assert_codes(got, fp.convert(src, dst, a, **kw), a)


@pytest.mark.parametrize("dst", [F.fp8_e4m3, F.fp8_e5m2, F.hfp8, F.hfp8_ibm, F.bf16, F.fp16,
                                 F.dlfloat16], ids=lambda f: f.name)
def test_convert_fp32(dst):
    rng = np.random.default_rng(16)
    a = rng.integers(0, 1 << 32, 2000, dtype=np.int64)
    # half of them in the destination's range, where rounding matters most
    a[::2] = (a[::2] & 0x80000000) | rng.integers(0x2F000000, 0x48000000, 1000)
    c = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00001, 0x00000001, 0x007FFFFF,
                  0x7F7FFFFF, 0x3F800000, 0x47800000], dtype=np.int64)
    a = np.concatenate([c, a])
    got = run_pipelined(FPConvert(fmt_from=F.fp32, fmt_to=dst, stages=1), {"a": a})
    assert_codes(got, fp.convert(F.fp32, dst, a), a)


def test_convert_dlfloat_spec_table():
    """spec/float.md 1.3 test vectors (independent of the twin)."""
    table = [(0x3F802000, 0x3E01), (0xBF802000, 0xBE01), (0x3F801FF8, 0x3E00),
             (0x3DCCCCCD, 0x3733), (0x477FE000, 0x5E00), (0x30000000, 0x0000),
             (0x30002000, 0x0001), (0x30001000, 0x0000), (0x4FFF8000, 0x7FFE),
             (0x4FFFC000, 0x7FFF),
             (0x7F800000, 0x7FFF), (0x7FC00000, 0x7FFF)]
    a = np.array([t[0] for t in table], dtype=np.int64)
    got = run_pipelined(FPConvert(fmt_from=F.fp32, fmt_to=F.dlfloat16), {"a": a})
    assert_codes(got, [t[1] for t in table], a)


# ------------------------------------------------------------------------------------------
# pipeline depths: every unit at latency 1..4 is bit-exact

@pytest.mark.parametrize("stages", [1, 2, 3, 4])
def test_stage_variants(stages):
    rng = np.random.default_rng(17 + stages)
    a, b = near_pairs(F.fp16, rng, 300)
    c = rng.integers(0, 1 << 16, 300)
    got = run_pipelined(FPMul(fmt_in=F.fp16, stages=stages), {"a": a, "b": b})
    assert_codes(got, fp.mul(F.fp16, a, b), a, b)
    got = run_pipelined(FPAdd(fmt=F.dlfloat16, stages=stages), {"a": a, "b": b})
    assert_codes(got, fp.add(F.dlfloat16, a, b), a, b)
    got = run_pipelined(FPFMA(fmt_in=F.bf16, stages=stages), {"a": a, "b": b, "c": c})
    assert_codes(got, fp.fma(F.bf16, a, b, F.bf16, c), a, b, c)
    got = run_pipelined(FPConvert(fmt_from=F.fp16, fmt_to=F.fp8_e4m3, stages=stages),
                        {"a": a})
    assert_codes(got, fp.convert(F.fp16, F.fp8_e4m3, a), a)
    for unit in (FPMul(fmt_in=F.fp16, stages=stages), FPAdd(fmt=F.fp16, stages=stages),
                 FPFMA(fmt_in=F.fp16, stages=stages),
                 FPConvert(fmt_from=F.fp16, fmt_to=F.bf16, stages=stages)):
        assert unit.latency == stages


# ------------------------------------------------------------------------------------------
# MAC and PE

def random_accs(fi, lengths, rng, sr_bits=0, finite=0.95):
    accs = []
    for n in lengths:
        a, b = rng.integers(0, 1 << fi.width, (2, n))
        keep = rng.random(n) < finite          # mostly moderate finite values
        a[keep] &= ~(1 << (fi.width - 2))
        b[keep] &= ~(1 << (fi.width - 2))
        r = rng.integers(0, 1 << sr_bits, n) if sr_bits else None
        accs.append((a, b, r))
    return accs


def twin(fi, fa, accs, *, chunk=None, **kw):
    out = []
    for a, b, r in accs:
        if chunk is None:
            out.append(fp.mac(fi, a, b, fa, rand=r, **kw))
        else:
            out.append(fp.chunk_mac(fi, a, b, fa, chunk=chunk, rand=r, **kw))
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("fi,fa,chunk,stages,pr,d", [
    (F.fp8_e4m3, F.fp16, None, 1, "exact_fused", 0),
    (F.fp8_e5m2, F.dlfloat16, None, 2, "round_to_acc", 0),
    (F.hfp8, F.fp16, 8, 2, "exact_fused", 0),
    (F.fp8_e4m3, F.bf16, 5, 3, "round_to_acc", 0),
    (F.hfp8_ibm, F.dlfloat16, 3, 4, "exact_fused", 0),
    (F.fp8_e5m2, F.fp16, None, 3, "exact_fused", 6),
    (F.fp8_e4m3, F.dlfloat16, 4, 2, "round_to_acc", 3),
    (F.fp16, F.fp32, 7, 4, "exact_fused", 0),
], ids=fid)
def test_mac(fi, fa, chunk, stages, pr, d):
    rng = np.random.default_rng(18)
    lengths = [1, 2, 3, 9, 1, 1, 30, 4]
    if chunk:
        lengths += [max(chunk - 1, 1), chunk, chunk + 1, 3 * chunk + 5, 2 * chunk]
    accs = random_accs(fi, lengths, rng, sr_bits=d)
    dut = FPMac(fmt_in=fi, fmt_acc=fa, chunk=chunk, stages=stages, product_rounding=pr,
                sr_bits=d)
    got = run_mac(dut, mac_stream(accs, rng=rng, gaps=0.25, sr_bits=d))
    assert_codes(got, twin(fi, fa, accs, chunk=chunk, product_rounding=pr, sr_bits=d))


@pytest.mark.parametrize("chunk,stages,pr", [(None, 1, "exact_fused"), (None, 3, "round_to_acc"),
                                             (6, 2, "exact_fused"), (4, 4, "round_to_acc")],
                         ids=str)
def test_mac_pe(chunk, stages, pr):
    fi, fa = F.fp8_e4m3, F.fp16
    pe = FPMac(fmt_in=fi, fmt_acc=fa, chunk=chunk, stages=stages, product_rounding=pr)
    assert isinstance(pe, PE) and pe.latency == stages and pe.ii == 1
    assert pe.signature == PESignature(a_shape=8, b_shape=8, acc_shape=16)
    cl = chunk or 5
    lengths = [1, 2, cl - 1, cl, cl + 1, 3 * cl + 5, 1, cl, 2]
    rng = np.random.default_rng(19)
    accs = random_accs(fi, lengths, rng)
    got = run_mac(pe, mac_stream(accs, rng=rng))          # strictly back to back
    assert_codes(got, twin(fi, fa, accs, chunk=chunk, product_rounding=pr))


@pytest.mark.parametrize("fa,chunk,expected", [(F.fp16, None, 2048.0), (F.fp16, 64, 4096.0),
                                               (F.dlfloat16, None, 2048.0),
                                               (F.dlfloat16, 64, 4096.0)], ids=fid)
def test_mac_swamping(fa, chunk, expected):
    """spec/float.md 2.2: 4096 products 1.0 x 1.0 stall at 2048 without chunking."""
    one = int(fp.encode(F.fp8_e4m3, 1.0))
    pe = FPMac(fmt_in=F.fp8_e4m3, fmt_acc=fa, chunk=chunk, stages=2)
    accs = [(np.full(4096, one), np.full(4096, one), None)]
    got = run_mac(pe, mac_stream(accs, rng=None))
    assert fp.decode(fa, got)[0] == expected


@pytest.mark.slow
@pytest.mark.parametrize("fi", [F.fp8_e4m3, F.fp8_e5m2, F.hfp8], ids=lambda f: f.name)
def test_fp8_mac_exhaustive_slow(fi):
    """Every FP8 operand pair against accumulator values including specials (fused step)."""
    fa = F.fp16
    a, b = all_pairs()
    for c in (0x0000, 0x8000, 0x3C00, 0xBC00, 0x0001, 0x83FF, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
              0x7E00, 0x1400):
        cc = np.full(a.size, c)
        got = run_pipelined(FPFMA(fmt_in=fi, fmt_acc=fa, stages=2), {"a": a, "b": b, "c": cc})
        assert_codes(got, fp.fma(fi, a, b, fa, cc), a, b, cc)


# ------------------------------------------------------------------------------------------
# internals and validation

# (max_mag, nan_code, has_inf, signed_zero, emin, emax_field), worked out from the encodings
FORMAT_INFO = {
    "fp8_e4m3": (0x7E, 0x7F, False, True, -6, 15),
    "fp8_e5m2": (0x7B, 0x7E, True, True, -14, 30),
    "hfp8": (0x7F, 0x80, False, False, -10, 15),
    "hfp8_ibm": (0x7E, 0x7F, False, False, -11, 15),
    "fp16": (0x7BFF, 0x7E00, True, True, -14, 30),
    "bf16": (0x7F7F, 0x7FC0, True, True, -126, 254),
    "dlfloat16": (0x7FFE, 0x7FFF, False, False, -31, 63),
    "fp32": (0x7F7FFFFF, 0x7FC00000, True, True, -126, 254),
}


@pytest.mark.parametrize("fmt", list(F.FORMATS.values()), ids=lambda f: f.name)
def test_format_info_constants(fmt):
    """The datapath constants (taken from the descriptor) against hand-derived values."""
    info = FormatInfo(fmt)
    got = (info.max_mag, info.nan_code, info.has_inf, info.signed_zero, info.emin,
           info.emax_field)
    assert got == FORMAT_INFO[fmt.name]
    assert (info.width, info.p, info.field_max) == (fmt.width, fmt.man_bits + 1,
                                                    (1 << fmt.exp_bits) - 1)
    assert info.emax_field - info.bias == fmt.emax


def test_fp_unit_base():
    """The five units share `FPUnit`: ftz, sr_bits, stages, latency = stages, optional rand."""
    units = [FPMul(fmt_in=F.fp16, ftz=True, stages=3),
             FPAdd(fmt=F.fp16, sr_bits=4, stages=2),
             FPConvert(fmt_from=F.fp32, fmt_to=F.fp16, stages=4),
             FPFMA(fmt_in=F.fp16, sr_bits=5, stages=1),
             FPMac(fmt_in=F.fp8_e4m3, fmt_acc=F.fp16, sr_bits=6, stages=3)]
    for u, (ftz, d, st) in zip(units, [(True, 0, 3), (False, 4, 2), (False, 0, 4),
                                       (False, 5, 1), (False, 6, 3)]):
        assert isinstance(u, FPUnit)
        assert (u.ftz, u.sr_bits, u.stages, u.latency) == (ftz, d, st, st)
        members = u.signature.members
        assert ("rand" in members) == (d > 0)
        if d:
            rand = members["rand"]
            assert rand.flow == In and Shape.cast(rand.shape) == unsigned(d)
    assert list(units[1].signature.members) == ["a", "b", "rand", "result"]
    assert list(units[3].signature.members) == ["a", "b", "c", "rand", "result"]


def test_mac_is_pe_with_rand_side_band():
    mac = FPMac(fmt_in=F.fp8_e5m2, fmt_acc=F.fp16, chunk=8, sr_bits=3, stages=2)
    assert isinstance(mac, PE) and isinstance(mac, FPUnit)
    assert mac.signature == PESignature(a_shape=8, b_shape=8, acc_shape=16, side={"rand": 3})
    assert list(mac.signature.members) == ["a", "b", "rand", "valid", "first", "last",
                                           "result", "result_valid"]
    plain = FPMac(fmt_in=F.fp8_e5m2, fmt_acc=F.fp16)
    assert plain.signature.side == () and "rand" not in plain.signature.members


def test_validation_messages():
    with pytest.raises(TypeError, match=r"fmt_in must be a FloatFormat .*not 'fp16'"):
        FPMul(fmt_in="fp16")
    with pytest.raises(TypeError, match=r"fmt_out must be a FloatFormat"):
        FPMul(fmt_in=F.fp16, fmt_out=16)
    with pytest.raises(ValueError, match=r"stages must be an int in 1\.\.4, not 0"):
        FPMul(fmt_in=F.fp16, stages=0)
    with pytest.raises(ValueError, match=r"stages must be an int in 1\.\.4, not 5"):
        FPAdd(fmt=F.fp16, stages=5)
    with pytest.raises(TypeError, match=r"ftz must be a bool \(True or False\), not 1"):
        FPAdd(fmt=F.fp16, ftz=1)
    with pytest.raises(ValueError, match=r"sr_bits must be an int in 0\.\.32 .*not 33"):
        FPFMA(fmt_in=F.fp16, sr_bits=33)
    with pytest.raises(TypeError, match=r"fmt_acc must be a FloatFormat"):
        FPFMA(fmt_in=F.fp16, fmt_acc="bf16")
    with pytest.raises(ValueError, match=r"overflow must be one of None, 'inf', 'saturate', "
                                         r"not 'clip'"):
        FPConvert(fmt_from=F.fp16, fmt_to=F.fp8_e4m3, overflow="clip")
    with pytest.raises(ValueError, match=r"rounding must be one of None, 'rne', 'rnu', not 'sr'"):
        FPConvert(fmt_from=F.fp16, fmt_to=F.fp8_e4m3, rounding="sr")
    with pytest.raises(TypeError, match=r"fmt_from must be a FloatFormat"):
        FPConvert(fmt_from=None, fmt_to=F.fp16)
    with pytest.raises(ValueError, match=r"chunk must be None \(no chunking\) or an int >= 1, "
                                         r"not 0"):
        FPMac(fmt_in=F.fp8_e4m3, fmt_acc=F.fp16, chunk=0)
    with pytest.raises(ValueError, match=r"product_rounding must be one of 'exact_fused', "
                                         r"'round_to_acc', not 'none'"):
        FPMac(fmt_in=F.fp8_e4m3, fmt_acc=F.fp16, product_rounding="none")
    with pytest.raises(ValueError, match=r"stages must be an int in 2\.\.4, not 1"):
        FPMac(fmt_in=F.fp8_e4m3, fmt_acc=F.fp16, chunk=4, stages=1)
    with pytest.raises(TypeError, match=r"fmt_in must be a FloatFormat"):
        FPMac(fmt_in="fp8", fmt_acc=F.fp16)
    with pytest.raises(ValueError, match=r"chunk must be None"):
        FPMac(fmt_in=F.fp8_e4m3, fmt_acc=F.fp16, chunk=-3)
    with pytest.raises(ValueError, match=r"sr_bits must be an int in 0\.\.32 .*not -1"):
        FPMac(fmt_in=F.fp8_e4m3, fmt_acc=F.fp16, sr_bits=-1)
    with pytest.raises(TypeError, match=r"ftz must be a bool \(True or False\), not 'no'"):
        FPConvert(fmt_from=F.fp16, fmt_to=F.fp8_e4m3, ftz="no")
    with pytest.raises(TypeError):
        FPMul(F.fp16)  # keyword-only
