"""Golden floating-point model (sim/fp.py) and format descriptor (hdl/arith/formats.py) against
independent references.

References, none of which shares code with the twin:

* ``Oracle`` below: a slow scalar model written from spec/float.md with ``fractions.Fraction``
  (exact rational arithmetic) and its own table of every representable value;
* ml_dtypes (float8_e4m3fn, float8_e5m2, float8_e4m3b11fnuz, bfloat16) and ``numpy.float16`` /
  ``numpy.float32`` casts. ml_dtypes casts float64 through float32 (double rounding), so it is
  only fed values that float32 holds exactly; numpy's float64 -> float16 cast is direct.

Exhaustive: every FP8 x FP8 product for each FP8 format, every FP8 conversion, every fp16 ->
dlfloat16 and dlfloat16 -> fp16 conversion. Seeded random: >= 10^5 vectors per operation for the
16-bit formats.
"""

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from tessera.hdl.arith import formats as F
from tessera.hdl.arith.formats import FloatFormat, float_format
from tessera.sim import fp

N_RANDOM = 100_000
FP8 = ["fp8_e4m3", "fp8_e5m2", "hfp8", "hfp8_ibm"]
ML = {"fp8_e4m3": ml_dtypes.float8_e4m3fn, "fp8_e5m2": ml_dtypes.float8_e5m2,
      "hfp8": ml_dtypes.float8_e4m3b11fnuz, "bf16": ml_dtypes.bfloat16, "fp16": np.float16,
      "fp32": np.float32}
# Canonical NaN codes written out from the spec, not read from the descriptor.
NAN_CODE = {"fp8_e4m3": 0x7F, "fp8_e5m2": 0x7E, "hfp8": 0x80, "hfp8_ibm": 0x7F,
            "fp16": 0x7E00, "bf16": 0x7FC0, "dlfloat16": 0x7FFF, "fp32": 0x7FC00000}
UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32}


# =============================================================================================
# Independent exact oracle
# =============================================================================================
class Oracle:
    """Scalar exact model of one format, built from the bit-field definitions of the spec."""

    _cache = {}

    @classmethod
    def of(cls, fmt):
        if fmt not in cls._cache:
            cls._cache[fmt] = cls(fmt)
        return cls._cache[fmt]

    def __init__(self, fmt):
        self.f = fmt
        self.E, self.M, self.B = fmt.exp_bits, fmt.man_bits, fmt.bias
        self.w = 1 + self.E + self.M
        self.sp = fmt.specials
        self.signed_zero = self.sp in ("ieee", "fn")
        self.nan = NAN_CODE.get(fmt.name)
        if self.w <= 16:
            # value -> magnitude code for every finite positive code; max and min normal.
            self.table = {}
            for c in range(1, 1 << (self.w - 1)):
                v = self.value(c)
                if v[0] == "num":
                    self.table[v[1]] = c
            self.max = max(self.table)
        else:
            assert fmt.name == "fp32"
            self.table = None
            self.max = Fraction(float(np.finfo(np.float32).max))
        self.min_normal = (Fraction(2) ** (1 - self.B) if fmt.subnormals
                           else Fraction(2) ** (-self.B) * (1 + Fraction(1, 2 ** self.M)))

    def value(self, code, ftz=False):
        """('nan',) | ('inf', s) | ('num', Fraction, s): s is the sign (of zeros too)."""
        E, M, B, w = self.E, self.M, self.B, self.w
        s = code >> (w - 1)
        e = (code >> M) & ((1 << E) - 1)
        f = code & ((1 << M) - 1)
        top = e == (1 << E) - 1
        if self.sp == "ieee" and top:
            return ("inf", s) if f == 0 else ("nan",)
        if self.sp in ("fn", "merged") and top and f == (1 << M) - 1:
            return ("nan",)
        if self.sp == "fnuz" and code == 1 << (w - 1):
            return ("nan",)
        zs = s if self.signed_zero else 0
        if e == 0 and f == 0:
            return ("num", Fraction(0), zs)
        if self.f.subnormals and e == 0:
            if ftz:
                return ("num", Fraction(0), zs)
            mag = Fraction(f) * Fraction(2) ** (1 - B - M)
        else:
            mag = Fraction((1 << M) + f) * Fraction(2) ** (e - B - M)
        return ("num", -mag if s else mag, s)

    def zero(self, s):
        return (s << (self.w - 1)) if self.signed_zero else 0

    def inf(self, s):
        if self.sp == "ieee":
            return (s << (self.w - 1)) | (((1 << self.E) - 1) << self.M)
        return self.nan

    def mag_code(self, v):
        if self.table is not None:
            return self.table[v]
        f32 = np.float32(float(v))
        assert Fraction(float(f32)) == v
        return int(np.array(f32).view(np.uint32)) & 0x7FFFFFFF

    def round(self, x, *, rounding=None, ftz=False, overflow=None, sr=None):
        """Code of the non-zero rational ``x`` rounded into the format."""
        rounding = rounding or self.f.rounding
        overflow = overflow or self.f.overflow
        s = int(x < 0)
        a = abs(x)
        e = a.numerator.bit_length() - a.denominator.bit_length()
        if Fraction(2) ** e > a:
            e -= 1
        assert Fraction(2) ** e <= a < Fraction(2) ** (e + 1)
        emin = (1 - self.B) if self.f.subnormals else -self.B
        q = (max(e, emin) if (self.f.subnormals and not ftz) else e) - self.M
        n = a / Fraction(2) ** q
        lo = math.floor(n)
        frac = n - lo
        if sr is not None:
            d, r = sr
            up = math.floor(frac * 2 ** d) + r >= 2 ** d
        elif rounding == "rne":
            up = frac > Fraction(1, 2) or (frac == Fraction(1, 2) and lo % 2 == 1)
        elif rounding == "rnu":
            up = frac >= Fraction(1, 2)
        else:
            up = False
        v = (lo + up) * Fraction(2) ** q
        if v > self.max:
            if overflow == "saturate":
                return (s << (self.w - 1)) | self.mag_code(self.max)
            return self.inf(s) if self.sp == "ieee" else self.nan
        if self.f.subnormals and not ftz:
            if v == 0:
                return self.zero(s)
        elif self.f.subnormals:
            if v < self.min_normal:
                return self.zero(s)
        elif v <= Fraction(2) ** (-self.B):
            return 0
        return (s << (self.w - 1)) | self.mag_code(v)

    def pack(self, val, **kw):
        """Code of an exact oracle value tuple."""
        if val[0] == "nan":
            return self.nan
        if val[0] == "inf":
            return self.inf(val[1])
        if val[1] == 0:
            return self.zero(val[2])
        return self.round(val[1], **kw)


def o_mul(va, vb):
    if va[0] == "nan" or vb[0] == "nan":
        return ("nan",)
    sa = va[1] if va[0] == "inf" else va[2]
    sb = vb[1] if vb[0] == "inf" else vb[2]
    if va[0] == "inf" or vb[0] == "inf":
        other = vb if va[0] == "inf" else va
        if other[0] == "num" and other[1] == 0:
            return ("nan",)
        return ("inf", sa ^ sb)
    return ("num", va[1] * vb[1], sa ^ sb)


def o_add(va, vb):
    if va[0] == "nan" or vb[0] == "nan":
        return ("nan",)
    if va[0] == "inf" and vb[0] == "inf":
        return ("inf", va[1]) if va[1] == vb[1] else ("nan",)
    if va[0] == "inf" or vb[0] == "inf":
        return va if va[0] == "inf" else vb
    if va[1] == 0 and vb[1] == 0:
        return ("num", Fraction(0), va[2] & vb[2])
    tot = va[1] + vb[1]
    if tot == 0:
        return ("num", tot, 0)
    return ("num", tot, int(tot < 0))


def oracle_mul(fi, fo, a, b, ftz=False, **kw):
    oi, oo = Oracle.of(fi), Oracle.of(fo)
    return oo.pack(o_mul(oi.value(a, ftz), oi.value(b, ftz)), ftz=ftz, **kw)


def oracle_add(f, a, b, ftz=False, **kw):
    o = Oracle.of(f)
    return o.pack(o_add(o.value(a, ftz), o.value(b, ftz)), ftz=ftz, **kw)


def oracle_fma(fi, fa, a, b, c, ftz=False, **kw):
    oi, oa = Oracle.of(fi), Oracle.of(fa)
    return oa.pack(o_add(o_mul(oi.value(a, ftz), oi.value(b, ftz)), oa.value(c, ftz)),
                   ftz=ftz, **kw)


def oracle_convert(f1, f2, c, ftz=False, **kw):
    return Oracle.of(f2).pack(Oracle.of(f1).value(c, ftz), ftz=ftz, **kw)


def oracle_mac(fi, fa, a, b, *, init=0, product_rounding="exact_fused", rand=None, d=0):
    acc = init
    for n in range(len(a)):
        sr = (d, int(rand[n])) if d else None
        if product_rounding == "exact_fused":
            acc = oracle_fma(fi, fa, int(a[n]), int(b[n]), acc, sr=sr)
        else:
            p = oracle_mul(fi, fa, int(a[n]), int(b[n]))
            acc = oracle_add(fa, p, acc, sr=sr)
    return acc


def oracle_chunk_mac(fi, fa, a, b, chunk, *, rand=None, **kw):
    outer = 0
    for k in range(0, len(a), chunk):
        r = None if rand is None else rand[k:k + chunk]
        inner = oracle_mac(fi, fa, a[k:k + chunk], b[k:k + chunk], rand=r, **kw)
        outer = oracle_add(fa, outer, inner)
    return outer


def vmap(fn, *arrays):
    return np.array([fn(*(int(x) for x in t)) for t in zip(*arrays)], dtype=np.int64)


# =============================================================================================
# helpers for library comparisons
# =============================================================================================
def lib_codes(name, values):
    """Codes and NaN mask of float values cast by the library type of ``name``."""
    dt = ML[name]
    with np.errstate(over="ignore", invalid="ignore"):
        arr = np.asarray(values).astype(dt)
    width = float_format(name).width
    codes = arr.view(UINT[width]).astype(np.int64)
    return codes, np.isnan(arr.astype(np.float64))


def assert_matches_lib(name, got, values, unsigned_zero=False):
    """``got`` equals the library's cast of ``values``; NaNs must be the canonical code."""
    ref, isnan = lib_codes(name, values)
    got = np.asarray(got).astype(np.int64)
    np.testing.assert_array_equal(got[isnan], NAN_CODE[name])
    np.testing.assert_array_equal(got[~isnan], ref[~isnan])


def codes_of(name):
    return np.arange(1 << float_format(name).width, dtype=np.uint32)


def f32_exact(x):
    """float64 array whose values float32 holds exactly (safe for ml_dtypes casts)."""
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float32).astype(np.float64)


# =============================================================================================
# FloatFormat
# =============================================================================================
@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "hfp8", "bf16", "fp16", "fp32"])
def test_format_ranges_match_libraries(name):
    fmt = F.FORMATS[name]
    fi = ml_dtypes.finfo(ML[name]) if name not in ("fp16", "fp32") else np.finfo(ML[name])
    assert fmt.max_finite == float(fi.max)
    assert fmt.min_normal == float(fi.smallest_normal)
    assert fmt.min_subnormal == float(fi.smallest_subnormal)
    assert fmt.width == fi.bits
    assert fmt.man_bits == fi.nmant


def test_format_ibm_ranges_from_spec():
    d = F.dlfloat16
    assert d.max_finite == 8_573_157_376.0 and d.max_finite_code == 0x7FFE
    assert d.min_normal == 2.0 ** -31 * (1 + 2.0 ** -9) and d.min_subnormal is None
    assert d.nan_code == 0x7FFF and d.inf_code(0) is None and not d.has_neg_zero
    assert d.emin == -31 and d.emax == 32
    h = F.hfp8_ibm
    assert h.max_finite == 28.0 and h.min_positive == 2.0 ** -11 * 1.125
    assert F.hfp8.max_finite == 30.0 and F.hfp8.nan_code == 0x80
    assert F.fp16.inf_code(1) == 0xFC00 and F.fp16.zero_code(1) == 0x8000
    assert F.hfp8.zero_code(1) == 0 and F.fp8_e4m3.zero_code(1) == 0x80
    assert F.fp8_e4m3.max_code(1) == 0xFE
    for name, code in NAN_CODE.items():
        assert F.FORMATS[name].nan_code == code


@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "hfp8", "hfp8_ibm", "fp16", "bf16",
                                  "dlfloat16"])
def test_format_predicates_exhaustive(name):
    fmt = F.FORMATS[name]
    o = Oracle.of(fmt)
    c = codes_of(name)
    vals = [o.value(int(x)) for x in c]
    np.testing.assert_array_equal(fmt.is_nan(c), [v[0] == "nan" for v in vals])
    np.testing.assert_array_equal(fmt.is_inf(c), [v[0] == "inf" for v in vals])
    np.testing.assert_array_equal(fmt.is_zero(c), [v[0] == "num" and v[1] == 0 for v in vals])
    sub = [fmt.subnormals and v[0] == "num" and v[1] != 0 and abs(v[1]) < o.min_normal
           for v in vals]
    np.testing.assert_array_equal(fmt.is_subnormal(c), sub)


def test_float_format_lookup_and_custom():
    assert float_format("dlfloat16") is F.dlfloat16
    assert float_format(F.fp16) is F.fp16
    e3m4 = float_format({"exp_bits": 3, "man_bits": 4})
    assert e3m4.bias == 3 and e3m4.name == "custom_e3m4" and e3m4.max_finite == 15.5
    assert float_format(F.bf16.as_dict()) == F.bf16
    sat = F.fp8_e4m3.with_overflow("saturate")
    assert sat.overflow == "saturate" and sat.with_rounding("rnu").rounding == "rnu"
    fnuz_ibm = float_format({"name": "hfp8_ibm30", "exp_bits": 4, "man_bits": 3, "bias": 11,
                             "subnormals": False, "specials": "fnuz"})
    assert fnuz_ibm.max_finite == 30.0 and fnuz_ibm.min_positive == 2.0 ** -11 * 1.125


@pytest.mark.parametrize("kwargs, match", [
    (dict(exp_bits=1), r"FloatFormat\.exp_bits must be an integer in 2\.\.8, not 1"),
    (dict(exp_bits=9), r"FloatFormat\.exp_bits must be an integer in 2\.\.8, not 9"),
    (dict(man_bits=0), r"FloatFormat\.man_bits must be an integer in 1\.\.23, not 0"),
    (dict(man_bits=2.5), r"FloatFormat\.man_bits must be an integer in 1\.\.23, not 2\.5"),
    (dict(exp_bits=8, man_bits=23 + 0, bias=127, name="x32"), None),
    (dict(bias=16), r"FloatFormat\.bias must be an integer in 0\.\.15, not 16"),
    (dict(bias=-1), r"FloatFormat\.bias must be an integer in 0\.\.15, not -1"),
    (dict(specials="x"), r"FloatFormat\.specials must be one of 'ieee', 'fn', 'fnuz', "
                         r"'merged', not 'x'"),
    (dict(rounding="rtz"), r"FloatFormat\.rounding must be one of 'rne', 'rnu', not 'rtz'"),
    (dict(overflow="clip"), r"FloatFormat\.overflow must be one of 'inf', 'saturate', "
                            r"not 'clip'"),
    (dict(subnormals=1), r"FloatFormat\.subnormals must be True or False, not 1"),
    (dict(name="a b"), r"FloatFormat\.name must be a non-empty string .*not 'a b'"),
    (dict(specials="merged", subnormals=True),
     r"subnormals=True is not allowed with specials='merged'.*set subnormals=False"),
    (dict(specials="ieee", subnormals=False),
     r"subnormals=False is not allowed with specials='ieee'.*ftz=True"),
])
def test_format_validation_messages(kwargs, match):
    args = dict(name="t", exp_bits=4, man_bits=3, bias=7)
    args.update(kwargs)
    if match is None:
        FloatFormat(**args)
        return
    with pytest.raises(ValueError, match=match):
        FloatFormat(**args)


def test_format_width_limit_message():
    with pytest.raises(ValueError, match=r"width 1 \+ exp_bits \+ man_bits must be <= 32, "
                                         r"not 33 \(exp_bits=8, man_bits=24\)|man_bits must"):
        FloatFormat("w", 8, 24, 127)
    with pytest.raises(ValueError, match=r"width 1 \+ exp_bits \+ man_bits must be <= 32, "
                                         r"not 33 \(exp_bits=9|exp_bits must"):
        FloatFormat("w", 9, 23, 127)


def test_float_format_messages():
    with pytest.raises(ValueError, match=r"float format 'fp12' is unknown; allowed names are "
                                         r"'fp8_e4m3', 'fp8_e5m2', 'hfp8', 'hfp8_ibm', 'fp16', "
                                         r"'bf16', 'dlfloat16', 'fp32'"):
        float_format("fp12")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['mantissa'\]"):
        float_format({"exp_bits": 4, "mantissa": 3})
    with pytest.raises(ValueError, match=r"missing required key\(s\) \['man_bits'\]"):
        float_format({"exp_bits": 4})
    with pytest.raises(ValueError, match=r"spec must be a format name, a FloatFormat or a "
                                         r"dict, not 3"):
        float_format(3)
    with pytest.raises(ValueError, match=r"sign must be 0 or 1, not 2"):
        F.fp16.inf_code(2)


# =============================================================================================
# decode / encode
# =============================================================================================
@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "hfp8", "fp16", "bf16"])
def test_decode_exhaustive_vs_library(name):
    c = codes_of(name)
    with np.errstate(invalid="ignore"):
        ref = c.astype(UINT[F.FORMATS[name].width]).view(ML[name]).astype(np.float64)
    got = fp.decode(name, c)
    np.testing.assert_array_equal(got, ref)           # NaN == NaN here
    ok = ~np.isnan(ref)
    np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(ref[ok]))   # -0.0 too


@pytest.mark.parametrize("name", ["hfp8_ibm", "dlfloat16"])
def test_decode_exhaustive_vs_oracle(name):
    c = codes_of(name)
    o = Oracle.of(F.FORMATS[name])
    ref = np.array([math.nan if v[0] == "nan" else float(v[1]) for v in map(o.value, c.tolist())])
    np.testing.assert_array_equal(fp.decode(name, c), ref)


def test_decode_fp32_random():
    c = np.random.default_rng(1).integers(0, 1 << 32, N_RANDOM, dtype=np.uint64)
    c = np.concatenate([c, np.array([0, 0x80000000, 1, 0x7F800000, 0xFF800000, 0x7F7FFFFF,
                                     0x7FC00001], dtype=np.uint64)])
    with np.errstate(invalid="ignore"):
        ref = c.astype(np.uint32).view(np.float32).astype(np.float64)
    np.testing.assert_array_equal(fp.decode("fp32", c), ref)


@pytest.mark.parametrize("x, code", [
    (1 + 2 ** -10, 0x3E01), (-(1 + 2 ** -10), 0xBE01), (1 + 2 ** -10 - 2 ** -20, 0x3E00),
    (0.1, 0x3733), (65504.0, 0x5E00), (2.0 ** -31, 0x0000), (2.0 ** -31 * (1 + 2 ** -10), 1),
    (8_573_157_376.0, 0x7FFE), (8_573_157_376.0 * (1 + 2 ** -10), 0x7FFF), (math.inf, 0x7FFF),
    (-math.inf, 0x7FFF), (math.nan, 0x7FFF), (1.0, 0x3E00), (3.0, 0x4100), (-0.0, 0),
    (2.0 ** -32 * 1.9999, 0), (-(2.0 ** -31) * (1 + 2 ** -10), 0x8001),
])
def test_encode_dlfloat16_spec_table(x, code):
    # spec/float.md 1.3 (values given as float32-exact inputs; 0.1 rounds from float64 here).
    assert int(fp.encode("dlfloat16", np.float64(x))) == code


@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "hfp8", "hfp8_ibm", "fp16", "bf16",
                                  "dlfloat16"])
def test_encode_decode_roundtrip_exhaustive(name):
    fmt = F.FORMATS[name]
    c = codes_of(name)
    back = fp.encode(fmt, fp.decode(fmt, c)).astype(np.int64)
    c = c.astype(np.int64)
    nan = fmt.is_nan(c)
    np.testing.assert_array_equal(back[nan], NAN_CODE[name])
    if fmt.has_neg_zero:
        np.testing.assert_array_equal(back[~nan], c[~nan])
    else:   # the only other non-canonical codes are the merged style's zero codes
        zero = fmt.is_zero(c)
        np.testing.assert_array_equal(back[zero], 0)
        np.testing.assert_array_equal(back[~nan & ~zero], c[~nan & ~zero])


def _random_values(rng, n, lo_exp, hi_exp):
    """Random float32-exact values of both signs over a range of binades, plus halfway
    points between neighbours (ties) of a 3..10-bit grid."""
    mant = rng.integers(1 << 23, 1 << 24, n)
    exp = rng.integers(lo_exp, hi_exp, n)
    x = np.ldexp(mant.astype(np.float64), exp - 23)
    x[: n // 4] = np.ldexp(np.round(x[: n // 4] / np.ldexp(1.0, exp[: n // 4] - 12)) + 0.5,
                           exp[: n // 4] - 12)
    sign = rng.integers(0, 2, n) * 2 - 1
    return f32_exact(sign * x)


@pytest.mark.parametrize("name, lo, hi", [("fp8_e4m3", -14, 11), ("fp8_e5m2", -20, 18),
                                          ("hfp8", -16, 7), ("fp16", -28, 18),
                                          ("bf16", -135, 129)])
def test_encode_random_vs_library(name, lo, hi):
    rng = np.random.default_rng(2)
    x = _random_values(rng, N_RANDOM, lo, hi)
    x = np.concatenate([x, [0.0, -0.0, math.inf, -math.inf, math.nan, 1e30, -1e30]])
    assert_matches_lib(name, fp.encode(name, x), x)


@pytest.mark.parametrize("name, lo, hi", [("dlfloat16", -34, 35), ("hfp8_ibm", -13, 6)])
def test_encode_random_vs_oracle(name, lo, hi):
    rng = np.random.default_rng(3)
    x = _random_values(rng, 20_000, lo, hi)
    o = Oracle.of(F.FORMATS[name])
    ref = [o.round(Fraction(v)) for v in x.tolist()]
    np.testing.assert_array_equal(fp.encode(name, x), ref)


@pytest.mark.parametrize("rounding", ["rne", "rnu", "rz"])
@pytest.mark.parametrize("ftz", [False, True])
@pytest.mark.parametrize("overflow", ["inf", "saturate"])
@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "hfp8", "hfp8_ibm"])
def test_encode_policies_vs_oracle(name, rounding, ftz, overflow):
    rng = np.random.default_rng(4)
    fmt = F.FORMATS[name]
    x = _random_values(rng, 3000, int(math.log2(fmt.min_positive)) - 2,
                       int(math.log2(fmt.max_finite)) + 2)
    o = Oracle.of(fmt)
    ref = [o.round(Fraction(v), rounding=rounding, ftz=ftz, overflow=overflow) for v in x]
    got = fp.encode(fmt, x, rounding=rounding, ftz=ftz, overflow=overflow)
    np.testing.assert_array_equal(got, ref)


def test_encode_fp8_corners():
    e4 = F.fp8_e4m3
    assert int(fp.encode(e4, 464.0)) == 0x7E                  # tie to even -> 448
    assert int(fp.encode(e4, 480.0)) == 0x7F                  # overflow -> NaN
    assert int(fp.encode(e4, -1e6)) == 0x7F                   # canonical NaN (sign 0)
    assert int(fp.encode(e4, -1e6, overflow="saturate")) == 0xFE
    assert int(fp.encode(e4, 2.0 ** -10)) == 0x00             # tie to even 0
    assert int(fp.encode(e4, -2.0 ** -10)) == 0x80            # -0 kept
    assert int(fp.encode(e4, 2.0 ** -10, rounding="rnu")) == 0x01
    assert int(fp.encode(e4, 0.9375 * 2 ** -6)) == 0x08  # tie: subnormal up to normal
    assert int(fp.encode(e4, 0.875 * 2 ** -6, ftz=True)) == 0x00
    h = F.hfp8
    assert int(fp.encode(h, 31.0)) == 0x80 and int(fp.encode(h, 30.9)) == 0x7F
    assert int(fp.encode(h, -0.0)) == 0 and int(fp.encode(h, -1e-9)) == 0
    e5 = F.fp8_e5m2
    assert int(fp.encode(e5, 1e6)) == 0x7C and int(fp.encode(e5, -1e6)) == 0xFC
    assert int(fp.encode(e5, math.inf, overflow="saturate")) == 0x7C   # Inf input stays Inf
    assert int(fp.encode(e5, 1e6, overflow="saturate")) == 0x7B
    assert int(fp.encode(e4, math.inf, overflow="saturate")) == 0x7F   # no Inf: NaN
    hi = F.hfp8_ibm
    assert int(fp.encode(hi, 28.0)) == 0x7E and int(fp.encode(hi, 30.0)) == 0x7F
    assert int(fp.encode(hi, 2.0 ** -11)) == 0 and int(fp.encode(hi, 2.0 ** -11 * 1.0625)) == 0
    assert int(fp.encode(hi, 2.0 ** -11 * 1.07)) == 1


# =============================================================================================
# conversions
# =============================================================================================
def test_convert_fp16_to_dlfloat16_exhaustive():
    c = codes_of("fp16")
    ref = vmap(lambda x: oracle_convert(F.fp16, F.dlfloat16, x), c)
    np.testing.assert_array_equal(fp.convert("fp16", "dlfloat16", c), ref)
    assert int(fp.convert("fp16", "dlfloat16", 0x7BFF)) == 0x5E00     # 65504 -> 65536


def test_convert_dlfloat16_to_fp16_exhaustive():
    c = codes_of("dlfloat16")
    got = fp.convert("dlfloat16", "fp16", c)
    ref = vmap(lambda x: oracle_convert(F.dlfloat16, F.fp16, x), c)
    np.testing.assert_array_equal(got, ref)
    # second reference: numpy's direct float64 -> float16 cast of the exact DLFloat value
    assert_matches_lib("fp16", got, fp.decode("dlfloat16", c))
    sat = fp.convert("dlfloat16", "fp16", c, overflow="saturate")
    ref_sat = vmap(lambda x: oracle_convert(F.dlfloat16, F.fp16, x, overflow="saturate"), c)
    np.testing.assert_array_equal(sat, ref_sat)


@pytest.mark.parametrize("src", FP8)
@pytest.mark.parametrize("dst", ["fp8_e4m3", "fp8_e5m2", "hfp8", "hfp8_ibm", "fp16", "bf16",
                                 "dlfloat16", "fp32"])
def test_convert_from_fp8_exhaustive(src, dst):
    c = codes_of(src)
    got = fp.convert(src, dst, c)
    ref = vmap(lambda x: oracle_convert(F.FORMATS[src], F.FORMATS[dst], x), c)
    np.testing.assert_array_equal(got, ref)
    if dst in ML:
        assert_matches_lib(dst, got, fp.decode(src, c))
    ref_ftz = vmap(lambda x: oracle_convert(F.FORMATS[src], F.FORMATS[dst], x, ftz=True), c)
    np.testing.assert_array_equal(fp.convert(src, dst, c, ftz=True), ref_ftz)


@pytest.mark.parametrize("src", ["fp16", "bf16", "dlfloat16"])
@pytest.mark.parametrize("dst", FP8)
def test_convert_16bit_to_fp8_exhaustive(src, dst):
    c = codes_of(src)
    got = fp.convert(src, dst, c)
    if dst in ML:
        assert_matches_lib(dst, got, fp.decode(src, c))
    idx = np.random.default_rng(5).choice(c.size, 4000, replace=False)
    for ov in ("inf", "saturate"):
        ref = vmap(lambda x: oracle_convert(F.FORMATS[src], F.FORMATS[dst], x, overflow=ov),
                   c[idx])
        np.testing.assert_array_equal(fp.convert(src, dst, c[idx], overflow=ov), ref)


@pytest.mark.parametrize("dst", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "hfp8"])
def test_convert_fp32_random_vs_library(dst):
    c = np.random.default_rng(6).integers(0, 1 << 32, N_RANDOM, dtype=np.uint64)
    got = fp.convert("fp32", dst, c)
    assert_matches_lib(dst, got, c.astype(np.uint32).view(np.float32))


def test_convert_bf16_dlfloat16_random_vs_oracle():
    rng = np.random.default_rng(7)
    c = rng.integers(0, 1 << 16, 20_000)
    ref = vmap(lambda x: oracle_convert(F.bf16, F.dlfloat16, x), c)
    np.testing.assert_array_equal(fp.convert("bf16", "dlfloat16", c), ref)
    ref = vmap(lambda x: oracle_convert(F.dlfloat16, F.bf16, x), c)
    np.testing.assert_array_equal(fp.convert("dlfloat16", "bf16", c), ref)


# =============================================================================================
# multiplication
# =============================================================================================
@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "hfp8"])
def test_mul_fp8_exhaustive_vs_library(name):
    c = codes_of(name)
    a, b = (x.ravel() for x in np.meshgrid(c, c))
    with np.errstate(invalid="ignore"):
        exact = fp.decode(name, a) * fp.decode(name, b)     # exact: <= 8-bit significands
    got = fp.mul(name, a, b)
    assert_matches_lib(name, got, exact)
    for out in ("fp16", "bf16", "fp32"):
        assert_matches_lib(out, fp.mul(name, a, b, out), exact)


@pytest.mark.parametrize("name", FP8)
def test_mul_fp8_exhaustive_vs_oracle(name):
    fmt = F.FORMATS[name]
    c = codes_of(name)
    a, b = (x.ravel() for x in np.meshgrid(c, c))
    if name != "hfp8_ibm":      # the library covers the rest; sample them
        idx = np.random.default_rng(8).choice(a.size, 6000, replace=False)
        a, b = a[idx], b[idx]
    ref = vmap(lambda x, y: oracle_mul(fmt, fmt, x, y), a, b)
    np.testing.assert_array_equal(fp.mul(fmt, a, b), ref)


@pytest.mark.parametrize("name", FP8)
@pytest.mark.parametrize("out", ["dlfloat16", "hfp8_ibm"])
def test_mul_fp8_into_ibm_formats(name, out):
    c = codes_of(name)
    a, b = (x.ravel() for x in np.meshgrid(c, c))
    idx = np.random.default_rng(9).choice(a.size, 8000, replace=False)
    a, b = a[idx], b[idx]
    ref = vmap(lambda x, y: oracle_mul(F.FORMATS[name], F.FORMATS[out], x, y), a, b)
    np.testing.assert_array_equal(fp.mul(name, a, b, out), ref)


@pytest.mark.parametrize("name", FP8)
def test_mul_fp8_ftz_saturate_vs_oracle(name):
    fmt = F.FORMATS[name].with_overflow("saturate")
    rng = np.random.default_rng(10)
    a, b = rng.integers(0, 256, (2, 5000))
    ref = vmap(lambda x, y: oracle_mul(fmt, fmt, x, y, ftz=True, overflow="saturate"), a, b)
    np.testing.assert_array_equal(fp.mul(fmt, a, b, ftz=True), ref)


def test_mul_fp16_random_vs_numpy():
    rng = np.random.default_rng(11)
    a, b = rng.integers(0, 1 << 16, (2, N_RANDOM))
    with np.errstate(invalid="ignore", over="ignore"):
        exact = fp.decode("fp16", a) * fp.decode("fp16", b)  # 22-bit product: exact in float64
    assert_matches_lib("fp16", fp.mul("fp16", a, b), exact)


def test_mul_bf16_random_vs_ml_dtypes():
    rng = np.random.default_rng(12)
    a, b = rng.integers(0, 1 << 16, (2, N_RANDOM))
    # mid-range exponents so that the 16-bit product is also float32-exact
    a = (a & 0x81FF) | 0x3C00
    b = (b & 0x83FF) | 0x3800
    exact = fp.decode("bf16", a) * fp.decode("bf16", b)
    assert np.array_equal(f32_exact(exact), exact)
    assert_matches_lib("bf16", fp.mul("bf16", a, b), exact)
    a2, b2 = rng.integers(0, 1 << 16, (2, 10_000))
    ref = vmap(lambda x, y: oracle_mul(F.bf16, F.bf16, x, y), a2, b2)
    np.testing.assert_array_equal(fp.mul("bf16", a2, b2), ref)


def test_mul_dlfloat16_random_vs_oracle():
    rng = np.random.default_rng(13)
    a, b = rng.integers(0, 1 << 16, (2, N_RANDOM))
    # concentrate half the operands near 1 so products stay in range and round often
    a[::2] = (a[::2] & 0x83FF) | 0x3C00
    b[::2] = (b[::2] & 0x81FF) | 0x3E00
    ref = vmap(lambda x, y: oracle_mul(F.dlfloat16, F.dlfloat16, x, y), a, b)
    np.testing.assert_array_equal(fp.mul("dlfloat16", a, b), ref)


def test_mul_specials_directed():
    f = F.fp16
    # Inf * 0 -> NaN, Inf * -2 -> -Inf, NaN * 1 -> canonical NaN, -0 * 3 -> -0
    np.testing.assert_array_equal(fp.mul(f, [0x7C00, 0x7C00, 0x7D01, 0x8000, 0x0000],
                                         [0x0000, 0xC000, 0x3C00, 0x4200, 0x8000]),
                                  [0x7E00, 0xFC00, 0x7E00, 0x8000, 0x8000])
    d = F.dlfloat16
    # NINF * 0 -> NINF, -NINF * 1 -> NINF, -0(0x8000) * 1 -> 0, 1 * -1 -> 0xBE00
    np.testing.assert_array_equal(fp.mul(d, [0x7FFF, 0xFFFF, 0x8000, 0x3E00],
                                         [0x0000, 0x3E00, 0x3E00, 0xBE00]),
                                  [0x7FFF, 0x7FFF, 0x0000, 0xBE00])
    # product of two tiny dlfloat values underflows to 0 (no subnormals)
    assert int(fp.mul(d, 0x0001, 0x3000)) == 0
    # fp16 gradual underflow: 2^-14 * 2^-10 = 2^-24 (min subnormal); * 2^-11 -> tie -> 0
    assert int(fp.mul(f, 0x0400, 0x1400)) == 0x0001
    assert int(fp.mul(f, 0x0400, 0x1000)) == 0x0000
    assert int(fp.mul(f, 0x0400, 0x1000, rounding="rnu")) == 0x0001
    assert int(fp.mul(f, 0x0400, 0x1400, ftz=True)) == 0x0000


# =============================================================================================
# addition
# =============================================================================================
def _fp16_operands(rng, n):
    a, b = rng.integers(0, 1 << 16, (2, n))
    # a third with b close to -a (cancellation), a third with close exponents (ties)
    k = n // 3
    b[:k] = (a[:k] ^ 0x8000) + rng.integers(-3, 4, k)
    b[k:2 * k] = (a[k:2 * k] & 0xFC00) - rng.integers(0, 12, k) * 0x400 | rng.integers(
        0, 0x400, k)
    return a, np.clip(b, 0, 0xFFFF)


def test_add_fp16_random_vs_numpy():
    rng = np.random.default_rng(14)
    a, b = _fp16_operands(rng, N_RANDOM)
    with np.errstate(invalid="ignore"):
        exact = fp.decode("fp16", a) + fp.decode("fp16", b)   # exact: fp16 spans 40 bits
    got = fp.add("fp16", a, b)
    assert_matches_lib("fp16", got, exact)
    # signs of exact zeros: x + (-x) = +0, -0 + -0 = -0 (numpy follows IEEE here)
    zero = exact == 0
    assert zero.sum() > 1000
    idx = np.arange(0, N_RANDOM, 10)
    ref = vmap(lambda x, y: oracle_add(F.fp16, x, y), a[idx], b[idx])
    np.testing.assert_array_equal(got[idx], ref)


def test_add_bf16_random():
    rng = np.random.default_rng(15)
    a, b = rng.integers(0, 1 << 16, (2, N_RANDOM))
    k = 3 * N_RANDOM // 4       # close exponents: b's exponent 0..14 below a's, random sign
    b[:k] = np.clip((a[:k] & 0x7F80) - rng.integers(0, 15, k) * 0x80, 0, 0x7F80) | (
        rng.integers(0, 0x80, k) | (rng.integers(0, 2, k) << 15))
    with np.errstate(invalid="ignore", over="ignore"):
        exact = fp.decode("bf16", a) + fp.decode("bf16", b)
    got = fp.add("bf16", a, b)
    # float64 sum is exact and float32 holds it iff it re-rounds to itself; compare there
    ok = np.isnan(exact) | np.isinf(exact) | (f32_exact(exact) == exact)
    ok &= np.abs(np.log2(np.abs(fp.decode("bf16", a)) + 1e-300)
                 - np.log2(np.abs(fp.decode("bf16", b)) + 1e-300)) < 15
    assert ok.sum() > 60_000
    assert_matches_lib("bf16", got[ok], exact[ok])
    idx = np.arange(0, N_RANDOM, 10)
    ref = vmap(lambda x, y: oracle_add(F.bf16, x, y), a[idx], b[idx])
    np.testing.assert_array_equal(got[idx], ref)


def test_add_dlfloat16_random_vs_oracle():
    rng = np.random.default_rng(16)
    a, b = rng.integers(0, 1 << 16, (2, N_RANDOM))
    k = N_RANDOM // 2
    b[:k] = np.clip((a[:k] & 0xFE00) - rng.integers(0, 12, k) * 0x200 | rng.integers(
        0, 0x200, k), 0, 0xFFFF) ^ (rng.integers(0, 2, k) << 15)
    ref = vmap(lambda x, y: oracle_add(F.dlfloat16, x, y), a, b)
    np.testing.assert_array_equal(fp.add("dlfloat16", a, b), ref)


@pytest.mark.parametrize("name", FP8)
def test_add_fp8_exhaustive(name):
    fmt = F.FORMATS[name]
    c = codes_of(name)
    a, b = (x.ravel() for x in np.meshgrid(c, c))
    got = fp.add(fmt, a, b)
    if name in ML:
        with np.errstate(invalid="ignore"):
            assert_matches_lib(name, got, fp.decode(name, a) + fp.decode(name, b))
    else:
        ref = vmap(lambda x, y: oracle_add(fmt, x, y), a, b)
        np.testing.assert_array_equal(got, ref)


def test_add_directed_corners():
    f = F.fp16
    cases = [  # a, b, expected
        (0x0000, 0x8000, 0x0000), (0x8000, 0x8000, 0x8000), (0x3C00, 0xBC00, 0x0000),
        (0x7C00, 0xFC00, 0x7E00), (0x7C00, 0x7C00, 0x7C00), (0x7C00, 0xFBFF, 0x7C00),
        (0x7BFF, 0x7BFF, 0x7C00),                       # overflow -> Inf
        (0x7BFF, 0x4800, 0x7BFF),                       # 65504 + 8 rounds back (RNE)
        (0x7BFF, 0x4C00, 0x7C00),                       # 65504 + 16: tie -> 65536 -> Inf
        (0x6800, 0x3C00, 0x6800),                       # 2048 + 1: tie to even 2048
        (0x6801, 0x3C00, 0x6802),                       # 2050 + 1: tie to even 2052
        (0x0001, 0x8002, 0x8001),                       # subnormal difference
        (0x0200, 0x0200, 0x0400),                       # subnormals sum to min normal
        (0x7E00, 0x3C00, 0x7E00), (0xFD00, 0x3C00, 0x7E00),
    ]
    a, b, e = map(np.array, zip(*cases))
    np.testing.assert_array_equal(fp.add(f, a, b), e)
    sat = f.with_overflow("saturate")
    np.testing.assert_array_equal(fp.add(sat, [0x7BFF, 0xFBFF, 0x7C00], [0x7BFF, 0xFBFF, 0x0]),
                                  [0x7BFF, 0xFBFF, 0x7C00])
    assert int(fp.add(f, 0x0200, 0x0100, ftz=True)) == 0      # subnormal inputs read as 0
    assert int(fp.add(f, 0x8200, 0x0000, ftz=True)) == 0      # -0 + +0 = +0
    d = F.dlfloat16
    cases = [(0x3E00, 0xBE00, 0x0000), (0x8000, 0x8000, 0x0000), (0x7FFF, 0xFFFF, 0x7FFF),
             (0x7FFE, 0x7FFE, 0x7FFF), (0x5200, 0x3E00, 0x5201),   # 1024 + 1: tie -> away
             (0x5400, 0x3E00, 0x5400),                             # 2048 + 1 below half
             (0xD200, 0xBE00, 0xD201),                             # ties away from zero
             (0x0001, 0x8000, 0x0001), (0x0002, 0x8001, 0x0000)]   # 2^-31*2^-9 -> 0
    a, b, e = map(np.array, zip(*cases))
    np.testing.assert_array_equal(fp.add(d, a, b), e)


# =============================================================================================
# fused multiply-add
# =============================================================================================
@pytest.mark.parametrize("fin", ["fp8_e4m3", "fp8_e5m2"])
def test_fma_fp8_fp16_random_vs_numpy(fin):
    rng = np.random.default_rng(17)
    a, b = rng.integers(0, 256, (2, N_RANDOM))
    c = rng.integers(0, 1 << 16, N_RANDOM)
    c[::2] = (c[::2] & 0x83FF) | (rng.integers(0, 18, N_RANDOM // 2) << 10)
    with np.errstate(invalid="ignore"):
        # product <= 2^-32 .. 2^31, c 2^-24 .. 2^16: the float64 sum is exact
        exact = fp.decode(fin, a) * fp.decode(fin, b) + fp.decode("fp16", c)
    got = fp.fma(fin, a, b, "fp16", c)
    assert_matches_lib("fp16", got, exact)
    idx = np.arange(0, N_RANDOM, 20)
    ref = vmap(lambda x, y, z: oracle_fma(F.FORMATS[fin], F.fp16, x, y, z),
               a[idx], b[idx], c[idx])
    np.testing.assert_array_equal(got[idx], ref)


@pytest.mark.parametrize("fin, facc", [("fp8_e4m3", "dlfloat16"), ("fp8_e5m2", "dlfloat16"),
                                       ("hfp8", "dlfloat16"), ("hfp8_ibm", "dlfloat16"),
                                       ("fp8_e4m3", "fp32"), ("dlfloat16", "dlfloat16"),
                                       ("fp16", "fp32"), ("bf16", "fp32"), ("fp16", "fp16")])
def test_fma_random_vs_oracle(fin, facc):
    rng = np.random.default_rng(18)
    n = 20_000 if facc == "dlfloat16" else 8000
    fi, fa = F.FORMATS[fin], F.FORMATS[facc]
    a, b = rng.integers(0, 1 << fi.width, (2, n), dtype=np.uint64)
    c = rng.integers(0, 1 << fa.width, n, dtype=np.uint64)
    # half the addends near the product's magnitude so that cancellation and ties occur
    with np.errstate(invalid="ignore", over="ignore"):
        p = fp.decode(fi, a) * fp.decode(fi, b)
    near = fp.encode(fa, -p * (1 + rng.integers(-8, 9, n) * 2.0 ** -fa.man_bits))
    c[::2] = np.where(np.isfinite(p), near, c)[::2]
    ref = vmap(lambda x, y, z: oracle_fma(fi, fa, x, y, z), a, b, c)
    np.testing.assert_array_equal(fp.fma(fi, a, b, fa, c), ref)
    ref = vmap(lambda x, y, z: oracle_fma(fi, fa, x, y, z, ftz=True), a[:3000], b[:3000],
               c[:3000])
    np.testing.assert_array_equal(fp.fma(fi, a[:3000], b[:3000], fa, c[:3000], ftz=True), ref)


def test_fma_dlfloat16_full_random_vs_oracle():
    rng = np.random.default_rng(19)
    a, b, c = rng.integers(0, 1 << 16, (3, N_RANDOM))
    a[::2] = (a[::2] & 0x83FF) | 0x3C00
    b[::2] = (b[::2] & 0x83FF) | 0x3A00
    c[::4] = (c[::4] & 0x81FF) | 0x3800
    ref = vmap(lambda x, y, z: oracle_fma(F.dlfloat16, F.dlfloat16, x, y, z), a, b, c)
    np.testing.assert_array_equal(fp.fma("dlfloat16", a, b, "dlfloat16", c), ref)


def test_fma_directed():
    e4, f16 = F.fp8_e4m3, F.fp16
    # (+0)(-1) + (+0) = +0; (-0)(1) + (-0) = -0; NaN input -> 0x7E00; 2*3 + -6 = +0
    np.testing.assert_array_equal(
        fp.fma(e4, [0x00, 0x80, 0x7F, 0x40, 0x38], [0xB8, 0x38, 0x38, 0x44, 0x38], f16,
               [0x0000, 0x8000, 0x3C00, 0xC600, 0x7C00]),
        [0x0000, 0x8000, 0x7E00, 0x0000, 0x7C00])
    # e5m2 Inf * 0 -> NaN; Inf*1 + -Inf -> NaN; Inf*1 into dlfloat -> NINF
    e5 = F.fp8_e5m2
    np.testing.assert_array_equal(fp.fma(e5, [0x7C, 0x7C], [0x00, 0x3C], f16, [0, 0xFC00]),
                                  [0x7E00, 0x7E00])
    assert int(fp.fma(e5, 0x7C, 0x3C, F.dlfloat16, 0)) == 0x7FFF
    # e5m2 min subnormal squared (2^-32) vanishes in fp16 on its own but not inside the fma
    assert int(fp.fma(e5, 0x01, 0x01, f16, 0x0001)) == 0x0001
    assert int(fp.mul(e5, 0x01, 0x01, f16)) == 0x0000
    assert int(fp.fma(e5, 0x81, 0x01, f16, 0x0000)) == 0x8000   # -(tiny) rounds to -0
    # fused vs two roundings: 2^-24 + 2^-25 (product 2^-16 * 2^-9) is a tie -> 2^-23 (even)
    # fused; rounded first, the product 2^-25 is a tie -> 0, leaving 2^-24
    assert int(fp.fma(e5, 0x01, 0x18, f16, 0x0001)) == 0x0002
    seq = np.array([[0x01]]), np.array([[0x18]])
    assert int(fp.mac(e5, *seq, f16, init=1)[0]) == 0x0002
    assert int(fp.mac(e5, *seq, f16, init=1, product_rounding="round_to_acc")[0]) == 0x0001
    assert int(fp.fma(e4, 0x39, 0x30, f16, 0x6800)) == 0x6800   # 2048 + 0.5625 -> 2048


# =============================================================================================
# sequential MAC, chunk-based accumulation, stochastic rounding
# =============================================================================================
def test_swamping_deterministic_spec_2_2():
    one = 0x38                                  # 1.0 in fp8_e4m3
    a = np.full(4096, one)
    assert fp.decode("fp16", fp.mac("fp8_e4m3", a, a, "fp16")) == 2048.0
    assert fp.decode("dlfloat16", fp.mac("fp8_e4m3", a, a, "dlfloat16")) == 2048.0
    assert fp.decode("fp16", fp.chunk_mac("fp8_e4m3", a, a, "fp16", chunk=64)) == 4096.0
    assert fp.decode("dlfloat16", fp.chunk_mac("fp8_e4m3", a, a, "dlfloat16", chunk=64)) == 4096
    assert fp.decode("fp32", fp.mac("fp8_e4m3", a, a, "fp32")) == 4096.0


@pytest.mark.parametrize("fin, facc", [("fp8_e4m3", "fp16"), ("fp8_e5m2", "dlfloat16"),
                                       ("hfp8", "fp16"), ("hfp8_ibm", "dlfloat16"),
                                       ("fp8_e4m3", "bf16")])
@pytest.mark.parametrize("product_rounding", ["exact_fused", "round_to_acc"])
def test_mac_and_chunk_mac_vs_oracle(fin, facc, product_rounding):
    rng = np.random.default_rng(20)
    fi, fa = F.FORMATS[fin], F.FORMATS[facc]
    batch, n = 24, 70
    x = rng.standard_normal((2, batch, n)) * np.array([4.0, 0.5])[:, None, None]
    x[0] = np.maximum(x[0], 0)                                   # ReLU-like activations
    a, b = fp.encode(fi, x[0]), fp.encode(fi, x[1])
    init = fp.encode(fa, rng.standard_normal(batch) * 8)
    got = fp.mac(fi, a, b, fa, init=init, product_rounding=product_rounding)
    ref = [oracle_mac(fi, fa, a[i], b[i], init=int(init[i]), product_rounding=product_rounding)
           for i in range(batch)]
    np.testing.assert_array_equal(got, ref)
    for chunk in (1, 16, 64, 100):
        got = fp.chunk_mac(fi, a, b, fa, chunk=chunk, product_rounding=product_rounding)
        ref = [oracle_chunk_mac(fi, fa, a[i], b[i], chunk, product_rounding=product_rounding)
               for i in range(batch)]
        np.testing.assert_array_equal(got, ref, err_msg=f"chunk={chunk}")


def test_mac_sr_vs_oracle_and_chunk_sr():
    rng = np.random.default_rng(21)
    batch, n, d = 16, 60, 8
    a = fp.encode("fp8_e4m3", rng.standard_normal((batch, n)) * 3)
    b = fp.encode("fp8_e4m3", rng.standard_normal((batch, n)))
    rand = rng.integers(0, 1 << d, (batch, n))
    for facc in ("fp16", "dlfloat16"):
        fa = F.FORMATS[facc]
        got = fp.mac("fp8_e4m3", a, b, fa, sr_bits=d, rand=rand)
        ref = [oracle_mac(F.fp8_e4m3, fa, a[i], b[i], rand=rand[i], d=d) for i in range(batch)]
        np.testing.assert_array_equal(got, ref)
        got = fp.chunk_mac("fp8_e4m3", a, b, fa, chunk=16, sr_bits=d, rand=rand)
        ref = [oracle_chunk_mac(F.fp8_e4m3, fa, a[i], b[i], 16, rand=rand[i], d=d)
               for i in range(batch)]
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("d", [1, 4, 8, 12])
def test_sr_counts_match_definition(d):
    # For x = lo + frac*ulp, exactly floor(frac * 2^d) of the 2^d rand values round up.
    rng = np.random.default_rng(22 + d)
    f16 = F.fp16
    c = rng.integers(0x0001, 0x7800, 300)                 # accumulator values
    a = rng.integers(0x01, 0x7E, 300)                     # e4m3 addends (a * 1.0)
    r = np.arange(1 << d)
    got = fp.fma("fp8_e4m3", a[:, None], 0x38, f16, c[:, None], sr_bits=d, rand=r[None, :])
    trunc = fp.fma("fp8_e4m3", a, 0x38, f16, c, rounding="rz")
    for i in range(300):
        exact = Fraction(*float(fp.decode("fp8_e4m3", a[i])).as_integer_ratio()) + Fraction(
            *float(fp.decode("fp16", c[i])).as_integer_ratio())
        lo = Fraction(*float(fp.decode("fp16", trunc[i])).as_integer_ratio())
        hi_code = int(trunc[i]) + 1
        ulp = Fraction(*float(fp.decode("fp16", hi_code)).as_integer_ratio()) - lo
        frac = (exact - lo) / ulp
        ups = got[i] != trunc[i]
        assert set(got[i][ups]) <= {hi_code} if hi_code < 0x7C00 else True
        assert ups.sum() == math.floor(frac * 2 ** d)
        # rounding up happens exactly for the largest rand values
        assert np.all(ups == (r >= 2 ** d - math.floor(frac * 2 ** d)))


def test_sr_is_unbiased_on_average():
    # 2048 + 0.25 repeatedly: nearest rounding stalls, SR grows by 0.25 per step on average
    rng = np.random.default_rng(30)
    n, trials, d = 256, 400, 10
    a = np.full((trials, n), 0x28)                  # 0.25 in e4m3
    b = np.full((trials, n), 0x38)
    init = np.full(trials, 0x6800)                  # 2048 in fp16
    rnd = rng.integers(0, 1 << d, (trials, n))
    near = fp.decode("fp16", fp.mac("fp8_e4m3", a, b, "fp16", init=init))
    sr = fp.decode("fp16", fp.mac("fp8_e4m3", a, b, "fp16", init=init, sr_bits=d, rand=rnd))
    assert np.all(near == 2048.0)
    assert abs(sr.mean() - (2048 + 64)) < 2.0


def test_chunk_mac_single_chunk_equals_mac():
    rng = np.random.default_rng(23)
    a = fp.encode("fp8_e5m2", rng.standard_normal((50, 40)))
    b = fp.encode("fp8_e5m2", rng.standard_normal((50, 40)))
    m = fp.mac("fp8_e5m2", a, b, "fp16")
    m = np.where(m == 0x8000, 0, m)                     # +0 + -0 = +0 at the chunk end
    np.testing.assert_array_equal(fp.chunk_mac("fp8_e5m2", a, b, "fp16", chunk=40), m)
    np.testing.assert_array_equal(fp.chunk_mac("fp8_e5m2", a, b, "fp16", chunk=1000), m)


def test_checkpoints_equal_truncated_calls():
    rng = np.random.default_rng(24)
    a = fp.encode("fp8_e4m3", np.maximum(rng.standard_normal((30, 150)), 0))
    b = fp.encode("fp8_e4m3", rng.standard_normal((30, 150)))
    cps = [0, 1, 16, 40, 64, 150]
    got = fp.mac("fp8_e4m3", a, b, "fp16", checkpoints=cps)
    assert got.shape == (30, len(cps))
    for i, n in enumerate(cps):
        np.testing.assert_array_equal(got[:, i], fp.mac("fp8_e4m3", a[:, :n], b[:, :n], "fp16"))
    got = fp.chunk_mac("fp8_e4m3", a, b, "dlfloat16", chunk=16, checkpoints=cps)
    for i, n in enumerate(cps):
        np.testing.assert_array_equal(got[:, i], fp.chunk_mac("fp8_e4m3", a[:, :n], b[:, :n],
                                                              "dlfloat16", chunk=16))
    with pytest.raises(ValueError, match=r"checkpoints must be a non-empty list of prefix "
                                         r"lengths in 0\.\.150, not \[151\]"):
        fp.mac("fp8_e4m3", a, b, "fp16", checkpoints=[151])


def test_mac_empty_and_init():
    a = np.zeros((3, 0), dtype=np.uint32)
    np.testing.assert_array_equal(fp.mac("fp8_e4m3", a, a, "fp16"), [0, 0, 0])
    np.testing.assert_array_equal(fp.mac("fp8_e4m3", a, a, "fp16", init=0x3C00), [0x3C00] * 3)
    np.testing.assert_array_equal(fp.chunk_mac("fp8_e4m3", a, a, "fp16", chunk=4,
                                               init=0x3C00), [0x3C00] * 3)


# =============================================================================================
# helpers and argument errors
# =============================================================================================
def test_all_codes_and_canonical():
    assert fp.all_codes("fp8_e4m3").dtype == np.uint32 and fp.all_codes("fp16").size == 65536
    np.testing.assert_array_equal(fp.canonical("dlfloat16", [0x8000, 0xFFFF, 0x7FFF, 0x3E00]),
                                  [0, 0x7FFF, 0x7FFF, 0x3E00])
    np.testing.assert_array_equal(fp.canonical("fp16", [0x8000, 0xFE01, 0x7C01, 0x7C00]),
                                  [0x8000, 0x7E00, 0x7E00, 0x7C00])
    np.testing.assert_array_equal(fp.canonical("fp8_e4m3", [0xFF, 0xFE]), [0x7F, 0xFE])


def test_argument_error_messages():
    with pytest.raises(ValueError, match=r"fmt: float format 'fp9' is unknown"):
        fp.decode("fp9", [0])
    with pytest.raises(ValueError, match=r"all_codes supports widths up to 20 bits"):
        fp.all_codes("fp32")
    with pytest.raises(ValueError, match=r"codes must be fp8_e4m3 codes in 0\.\.255, not 256"):
        fp.decode("fp8_e4m3", [1, 256])
    with pytest.raises(ValueError, match=r"codes must be an integer array of fp16 codes, "
                                         r"not dtype float64"):
        fp.decode("fp16", [1.0])
    with pytest.raises(ValueError, match=r"a must be fp16 codes in 0\.\.65535, not -1"):
        fp.add("fp16", -1, 0)
    with pytest.raises(ValueError, match=r"c must be dlfloat16 codes"):
        fp.fma("fp8_e4m3", 0, 0, "dlfloat16", 70000)
    with pytest.raises(ValueError, match=r"rounding must be None or one of 'rne', 'rnu', 'rz', "
                                         r"not 'up'"):
        fp.encode("fp16", 1.0, rounding="up")
    with pytest.raises(ValueError, match=r"overflow must be None, 'inf' or 'saturate', "
                                         r"not 'wrap'"):
        fp.convert("fp16", "fp8_e4m3", 0, overflow="wrap")
    with pytest.raises(ValueError, match=r"sr_bits must be an integer in 0\.\.32, not 33"):
        fp.add("fp16", 0, 0, sr_bits=33, rand=0)
    with pytest.raises(ValueError, match=r"rand is required when sr_bits=4"):
        fp.add("fp16", 0, 0, sr_bits=4)
    with pytest.raises(ValueError, match=r"rand must be None when sr_bits is 0"):
        fp.add("fp16", 0, 0, rand=3)
    with pytest.raises(ValueError, match=r"rand values must be in 0\.\.15 for sr_bits=4, "
                                         r"not 16"):
        fp.add("fp16", 0, 0, sr_bits=4, rand=16)
    with pytest.raises(ValueError, match=r"rand shape \(3,\) does not broadcast to \(2,\)"):
        fp.add("fp16", [0, 0], [0, 0], sr_bits=4, rand=[1, 2, 3])
    a = np.zeros((2, 5), dtype=np.uint32)
    with pytest.raises(ValueError, match=r"product_rounding must be one of 'exact_fused', "
                                         r"'round_to_acc', not 'none'"):
        fp.mac("fp8_e4m3", a, a, "fp16", product_rounding="none")
    with pytest.raises(ValueError, match=r"a_seq and b_seq must have the same shape"):
        fp.mac("fp8_e4m3", a, a[:, :3], "fp16")
    with pytest.raises(ValueError, match=r"chunk must be a positive integer, not 0"):
        fp.chunk_mac("fp8_e4m3", a, a, "fp16", chunk=0)
    with pytest.raises(ValueError, match=r"rand_outer must be None when sr_bits is 0"):
        fp.chunk_mac("fp8_e4m3", a, a, "fp16", chunk=2, rand_outer=[0, 0, 0])
    with pytest.raises(ValueError, match=r"rand_outer shape \(2,\) does not broadcast to "
                                         r"\(2, 3\)"):
        fp.chunk_mac("fp8_e4m3", a, a, "fp16", chunk=2, sr_bits=2, rand=0, rand_outer=[0, 0])
    with pytest.raises(ValueError, match=r"init must be fp16 codes"):
        fp.mac("fp8_e4m3", a, a, "fp16", init=-5)
