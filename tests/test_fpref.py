"""The independent FP GEMM reference (sim/fpref.py) against ml_dtypes, numpy casts, an exact
rational oracle, and the golden twin (sim/fp.py).

References:

* ml_dtypes (float8_e4m3fn, float8_e5m2, float8_e4m3b11fnuz, bfloat16) and ``numpy.float16``
  casts, fed only values that float32 holds exactly (ml_dtypes casts float64 through float32);
  numpy's direct float64 -> float32 cast for fp32.
* ``Table`` below: a scalar oracle written from the field definitions with ``fractions.Fraction``;
  it rounds by looking up the two neighbouring codes in a sorted table of every value (plus the
  "virtual" neighbours just above ``max_finite`` and, without subnormals, ``2**-bias``), so it
  shares no arithmetic with the float64 rounder under test. fp32 uses the float32 neighbours of
  the value instead of a table.
* The golden twin ``tessera.sim.fp`` (``mac``, ``chunk_mac``, ``add``): results must agree bit for
  bit after :func:`tessera.sim.fp.canonical`.
"""

import bisect
import zlib
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from tessera.hdl.arith.formats import FORMATS, float_format
from tessera.sim import fp, fpref
from tessera.sim.fpref import decode_codes, encode_values, reference_fp_gemm, round_to_format

ML = {"fp16": np.float16, "bf16": ml_dtypes.bfloat16, "fp8_e4m3": ml_dtypes.float8_e4m3fn,
      "fp8_e5m2": ml_dtypes.float8_e5m2, "hfp8": ml_dtypes.float8_e4m3b11fnuz}
UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32}
# Canonical NaN codes, written out from docs/float.md.
NAN_CODE = {"fp8_e4m3": 0x7F, "fp8_e5m2": 0x7E, "hfp8": 0x80, "hfp8_ibm": 0x7F,
            "fp16": 0x7E00, "bf16": 0x7FC0, "dlfloat16": 0x7FFF, "fp32": 0x7FC00000}
# Formats with no ml_dtypes twin, or policy variants of the named ones.
EXOTIC = {
    "dlfloat16": FORMATS["dlfloat16"],
    "hfp8_ibm": FORMATS["hfp8_ibm"],
    "hfp8_ibm_rnu": FORMATS["hfp8_ibm"].with_rounding("rnu"),
    "fp16_sat": FORMATS["fp16"].with_overflow("saturate"),
    "e4m3_sat": FORMATS["fp8_e4m3"].with_overflow("saturate"),
    "e5m2_sat_rnu": FORMATS["fp8_e5m2"].replace(overflow="saturate", rounding="rnu"),
    "hfp8_sat": FORMATS["hfp8"].with_overflow("saturate"),
    "dlfloat16_sat": FORMATS["dlfloat16"].with_overflow("saturate"),
    "fnuz_nosub": float_format({"exp_bits": 4, "man_bits": 3, "bias": 11, "specials": "fnuz",
                                "subnormals": False, "name": "fnuz_nosub"}),
    "fn_nosub": float_format({"exp_bits": 3, "man_bits": 4, "specials": "fn",
                              "subnormals": False, "name": "fn_nosub"}),
    "e3m4": float_format({"exp_bits": 3, "man_bits": 4}),
}


# =============================================================================================
# Exact scalar oracle
# =============================================================================================
class Table:
    """Exact values and round-to-nearest of one format by table lookup (Fraction)."""

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
        self.sign = 1 << (self.w - 1)
        self.signed_zero = fmt.specials in ("ieee", "fn")
        self.nan = NAN_CODE.get(fmt.name, self._nan_code())
        if self.w > 16:
            assert fmt.name == "fp32"
            return
        # (value, code, tag) for every finite code of sign 0 in code order, tags "zero", "ovf".
        entries = []
        for c in range(1 << (self.w - 1)):
            v = self.value(c)
            if v[0] == "num":
                entries.append((v[1], c, "num" if v[1] else "zero"))
        if not fmt.subnormals:            # 2**-bias: the zero code's would-be value
            entries[0] = (Fraction(2) ** -self.B, 0, "zero")
        top_v, top_c, _ = entries[-1]
        e_top = top_v.numerator.bit_length() - top_v.denominator.bit_length()
        if Fraction(2) ** e_top > top_v:
            e_top -= 1
        ulp = Fraction(2) ** (e_top - self.M)
        entries.append((top_v + ulp, top_c + 1, "ovf"))
        assert all(x[0] < y[0] for x, y in zip(entries, entries[1:]))
        self.entries = entries
        self.values = [x[0] for x in entries]
        self.max_code = top_c

    def _nan_code(self):
        if self.f.specials == "ieee":
            return (((1 << self.E) - 1) << self.M) | (1 << (self.M - 1))
        if self.f.specials == "fnuz":
            return self.sign
        return self.sign - 1

    def value(self, code):
        """('nan',) | ('inf', s) | ('num', Fraction, s); s is the sign, also of zeros."""
        E, M, B, w = self.E, self.M, self.B, self.w
        s = code >> (w - 1)
        e = (code >> M) & ((1 << E) - 1)
        f = code & ((1 << M) - 1)
        top = e == (1 << E) - 1
        sp = self.f.specials
        if sp == "ieee" and top:
            return ("inf", s) if f == 0 else ("nan",)
        if sp in ("fn", "merged") and top and f == (1 << M) - 1:
            return ("nan",)
        if sp == "fnuz" and code == self.sign:
            return ("nan",)
        if e == 0 and f == 0:
            return ("num", Fraction(0), s if self.signed_zero else 0)
        if self.f.subnormals and e == 0:
            mag = Fraction(f) * Fraction(2) ** (1 - B - M)
        else:
            mag = Fraction((1 << M) + f) * Fraction(2) ** (e - B - M)
        return ("num", -mag if s else mag, s)

    def _zero(self, s):
        return s * self.sign if self.signed_zero else 0

    def _overflow(self, s):
        if self.f.overflow == "saturate":
            return s * self.sign | self._max_code()
        if self.f.specials == "ieee":
            return s * self.sign | (((1 << self.E) - 1) << self.M)
        return self.nan

    def _max_code(self):
        if self.w > 16:
            return 0x7F7FFFFF
        return self.max_code

    def round(self, x, s):
        """Code of the exact value ``x`` (sign ``s`` for zeros)."""
        if x == 0:
            return self._zero(s)
        s = int(x < 0)
        a = abs(x)
        if self.w > 16:
            return self._round_fp32(a, s)
        vals = self.values
        if a < vals[0]:
            return self._zero(s)
        if a > vals[-1]:
            return self._overflow(s)
        i = bisect.bisect_left(vals, a)
        if vals[i] == a:
            pick = self.entries[i]
        else:
            lo, hi = self.entries[i - 1], self.entries[i]
            d_lo, d_hi = a - lo[0], hi[0] - a
            if d_lo != d_hi:
                pick = lo if d_lo < d_hi else hi
            elif self.f.rounding == "rnu":
                pick = hi
            else:
                pick = lo if lo[1] % 2 == 0 else hi
        if pick[2] == "zero":
            return self._zero(s)
        if pick[2] == "ovf":
            return self._overflow(s)
        return s * self.sign | pick[1]

    def _round_fp32(self, a, s):
        """fp32: nearest of the float32 neighbours of the float64 nearest to ``a``."""
        big = Fraction(2) ** 128           # the virtual code 0x7F800000
        if a >= big:
            return self._overflow(s)
        with np.errstate(over="ignore"):
            c0 = int(np.array(np.float32(float(a))).view(np.uint32))
        best = None
        for c in range(max(c0 - 2, 0), min(c0 + 2, 0x7F800000) + 1):
            v = big if c == 0x7F800000 else Fraction(float(np.array(c, np.uint32).view(
                np.float32)))
            key = (abs(v - a), c % 2)
            if best is None or key < best[0]:
                best = (key, c)
        c = best[1]
        if c == 0x7F800000:
            return self._overflow(s)
        return self._zero(s) if c == 0 else s * self.sign | c

    def pack(self, val):
        if val[0] == "nan":
            return self.nan
        if val[0] == "inf":                 # Inf is not overflow: it stays Inf (or NaN)
            if self.f.specials != "ieee":
                return self.nan
            return val[1] * self.sign | (((1 << self.E) - 1) << self.M)
        return self.round(val[1], val[2])


def o_mul(x, y):
    if x[0] == "nan" or y[0] == "nan":
        return ("nan",)
    sx = x[1] if x[0] == "inf" else x[2]
    sy = y[1] if y[0] == "inf" else y[2]
    if x[0] == "inf" or y[0] == "inf":
        other = y if x[0] == "inf" else x
        if other[0] == "num" and other[1] == 0:
            return ("nan",)
        return ("inf", sx ^ sy)
    return ("num", x[1] * y[1], sx ^ sy)


def o_add(x, y):
    if x[0] == "nan" or y[0] == "nan":
        return ("nan",)
    if x[0] == "inf" and y[0] == "inf":
        return ("inf", x[1]) if x[1] == y[1] else ("nan",)
    if x[0] == "inf" or y[0] == "inf":
        return x if x[0] == "inf" else y
    if x[1] == 0 and y[1] == 0:
        return ("num", Fraction(0), x[2] & y[2])
    tot = x[1] + y[1]
    return ("num", tot, int(tot < 0))


def oracle_gemm(fi, fa, a, b, *, chunk=0, k_split=None):
    """Scalar exact GEMM: the semantics of reference_fp_gemm, one Fraction step at a time."""
    ti, ta = Table.of(fi), Table.of(fa)
    zero = ("num", Fraction(0), 0)

    def rnd(v):
        return ta.value(ta.pack(v))

    m, n_k = a.shape
    out = np.zeros((m, b.shape[1]), np.uint64)
    ks = n_k if k_split is None else k_split
    for i in range(m):
        for j in range(b.shape[1]):
            total = None
            for k0 in range(0, n_k, ks):
                outer, inner = zero, zero
                ks_end = min(k0 + ks, n_k)
                for k in range(k0, ks_end):
                    inner = rnd(o_add(inner, o_mul(ti.value(int(a[i, k])),
                                                   ti.value(int(b[k, j])))))
                    if chunk and ((k - k0 + 1) % chunk == 0 or k == ks_end - 1):
                        outer, inner = rnd(o_add(outer, inner)), zero
                piece = outer if chunk else inner
                total = piece if total is None else rnd(o_add(total, piece))
            out[i, j] = ta.pack(total if total is not None else zero)
    return out


# =============================================================================================
# Helpers
# =============================================================================================
def seed(*names):
    return zlib.crc32("/".join(names).encode())


def canon(fmt, codes):
    return fp.canonical(fmt, np.asarray(codes, np.int64)).astype(np.uint64)


def quantize(fmt, x):
    return encode_values(fmt, round_to_format(fmt, x))


def operands(fi, shape, kind, rng, fa=None):
    """Operand codes: normal data, uniform over all codes, over finite codes, over the finite
    codes small enough that no dot product overflows ``fa`` (``wide``: every exponent from the
    subnormals up, so swamping, cancellation and underflow), or normal data with 3 % codes."""
    allc = rng.integers(0, 1 << fi.width, shape)
    if kind == "wide":
        v = decode_codes(fi, np.arange(1 << fi.width))
        ok = np.flatnonzero(np.abs(v) <= np.sqrt(fa.max_finite / 1024))
        return ok[rng.integers(0, len(ok), shape)].astype(np.uint64)
    if kind == "normal":
        return quantize(fi, rng.normal(0.0, 1.0, shape))
    if kind == "codes":
        return allc.astype(np.uint64)
    if kind == "finite":
        return np.where(np.isfinite(decode_codes(fi, allc)), allc, 0).astype(np.uint64)
    assert kind == "mixed"
    return np.where(rng.random(shape) < 0.03, allc,
                    quantize(fi, rng.normal(0.0, 1.0, shape))).astype(np.uint64)


def twin_gemm(fi, fa, a, b, *, chunk=0, k_split=None):
    """The golden twin's result for the same GEMM (pieces combined with fp.add)."""
    n_k = a.shape[1]
    ks = n_k if k_split is None else k_split
    total = None
    for k0 in range(0, n_k, ks):
        aa = np.asarray(a[:, k0:k0 + ks], np.uint32)[:, None, :]
        bb = np.asarray(b[k0:k0 + ks], np.uint32).T[None, :, :]
        aa, bb = np.broadcast_arrays(aa, bb)
        if chunk:
            piece = fp.chunk_mac(fi, aa, bb, fa, chunk=chunk)
        else:
            piece = fp.mac(fi, aa, bb, fa)
        total = piece if total is None else fp.add(fa, total, piece)
    return canon(fa, total)


def ml_codes(name, x32):
    fmt = FORMATS[name]
    with np.errstate(over="ignore"):                    # overflow to Inf is the point
        c = np.asarray(x32, np.float32).astype(ML[name]).view(UINT[fmt.width])
    c = c.astype(np.int64)
    return canon(fmt, c)


def tie_points(fmt):
    """Every value of ``fmt`` (both signs), every midpoint and a few values beyond the range."""
    lay = fpref._Layout(fmt)
    v = decode_codes(fmt, np.arange(1 << (fmt.width - 1)))
    v = np.sort(v[np.isfinite(v)])
    top = v[-1]
    ulp_top = top - v[-2]
    v = np.concatenate([v, [top + ulp_top, 2 * top, 4 * top]])
    if lay.flush_at is not None:
        v = np.sort(np.concatenate([[lay.flush_at], v]))
    mids = (v[1:] + v[:-1]) / 2
    pos = np.concatenate([v, mids, v / 4, v[1:3] * 0.375])
    return np.concatenate([pos, -pos])


# =============================================================================================
# 1. Decoder, rounder and encoder against ml_dtypes / numpy
# =============================================================================================
@pytest.mark.parametrize("name", list(FORMATS))
def test_layout_constants(name):
    f = FORMATS[name]
    lay = fpref._Layout(f)
    assert lay.nan_code == NAN_CODE[name] == f.nan_code
    assert lay.max_finite == f.max_finite
    assert lay.max_code == f.max_finite_code


@pytest.mark.parametrize("name", list(ML))
def test_decode_all_codes_vs_ml_dtypes(name):
    f = FORMATS[name]
    c = np.arange(1 << f.width)
    with np.errstate(invalid="ignore"):                 # NaN payloads
        want = c.astype(UINT[f.width]).view(ML[name]).astype(np.float64)
    got = decode_codes(f, c)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(got[ok], want[ok])
    np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(want[ok]))
    np.testing.assert_array_equal(encode_values(f, got), canon(f, c))


def test_decode_fp32_vs_numpy():
    rng = np.random.default_rng(1)
    c = np.concatenate([rng.integers(0, 1 << 32, 200_000), np.arange(0, 70),
                        0x7F7FFFFF + np.arange(-3, 4), 0xFF7FFFFF + np.arange(-3, 1),
                        0x80000000 + np.arange(0, 8)])
    with np.errstate(invalid="ignore"):
        want = c.astype(np.uint32).view(np.float32).astype(np.float64)
    got = decode_codes(FORMATS["fp32"], c)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(got[ok], want[ok])
    np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(want[ok]))
    np.testing.assert_array_equal(encode_values(FORMATS["fp32"], got), canon(FORMATS["fp32"], c))


@pytest.mark.parametrize("name", list(EXOTIC) + ["fp8_e4m3", "hfp8"])
def test_decode_all_codes_vs_table(name):
    f = EXOTIC.get(name) or FORMATS[name]
    t = Table.of(f)
    c = np.arange(1 << f.width)
    got = decode_codes(f, c)
    for code, g in zip(c, got):
        v = t.value(int(code))
        if v[0] == "nan":
            assert np.isnan(g)
        elif v[0] == "inf":
            assert g == (-np.inf if v[1] else np.inf)
        else:
            assert Fraction(g) == v[1] and np.signbit(g) == bool(v[2])
    np.testing.assert_array_equal(encode_values(f, got), canon(f, c))


def test_decode_dlfloat16_spec_values():
    f = FORMATS["dlfloat16"]
    got = decode_codes(f, [0x3E00, 0x4100, 0x7FFE, 0x0001, 0x0000, 0x8000, 0x7FFF, 0xFFFF])
    assert got[:4].tolist() == [1.0, 3.0, 8573157376.0, 2.0 ** -31 * (1 + 2.0 ** -9)]
    assert got[4] == 0 and got[5] == 0 and not np.signbit(got[5])
    assert np.isnan(got[6]) and np.isnan(got[7])


@pytest.mark.parametrize("name", list(ML))
def test_round_vs_ml_dtypes(name):
    """Every value and midpoint, one float32 ULP either side, random values, specials."""
    f = FORMATS[name]
    rng = np.random.default_rng(2)
    t = tie_points(f)
    t = t[np.abs(t) <= np.finfo(np.float32).max]
    x32 = t.astype(np.float32)
    assert np.array_equal(x32.astype(np.float64), t)      # all exact in float32
    up, dn = np.nextafter(x32, np.float32(np.inf)), np.nextafter(x32, np.float32(-np.inf))
    lo, hi = np.log2(f.min_positive) - 3, min(np.log2(f.max_finite) + 1, 127.9)
    rnd = (rng.choice([-1, 1], 20_000) * 2.0 ** rng.uniform(lo, hi, 20_000)).astype(np.float32)
    special = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], np.float32)
    for x in (x32, up, dn, rnd, special):
        got = encode_values(f, round_to_format(f, x.astype(np.float64)))
        np.testing.assert_array_equal(got, ml_codes(name, x))
    # The TwoSum residual decides exactly like a float32 ULP away from a tie (no other tie or
    # value lies between).
    exp = np.frexp(np.where(t == 0, 1.0, t))[1]
    tiny = np.ldexp(1.0, exp - 60)
    keep = t != 0
    for sign, ref in ((1, up), (-1, dn)):
        got = encode_values(f, round_to_format(f, t, sign * tiny))
        np.testing.assert_array_equal(got[keep], ml_codes(name, ref)[keep])


def test_round_fp32_vs_numpy():
    f = FORMATS["fp32"]
    rng = np.random.default_rng(3)
    n = 100_000
    x = rng.choice([-1, 1], n) * np.ldexp(rng.uniform(1, 2, n), rng.integers(-160, 130, n))
    v32 = rng.integers(0, 0x7F800000, n).astype(np.uint32).view(np.float32).astype(np.float64)
    nxt = np.nextafter(v32.astype(np.float32), np.float32(np.inf)).astype(np.float64)
    mids = (v32 + nxt) / 2
    mids = mids[np.isfinite(mids)]
    for xs in (x, v32, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf), -mids,
               np.array([2.0 ** 128 - 2.0 ** 103, 2.0 ** 128 - 2.0 ** 103 - 2.0 ** 60,
                         2.0 ** -150, 2.0 ** -150 * 1.5, 2.0 ** -151, np.inf, -np.inf, np.nan,
                         0.0, -0.0])):
        with np.errstate(over="ignore"):
            want = canon(f, xs.astype(np.float32).view(np.uint32))
        np.testing.assert_array_equal(encode_values(f, round_to_format(f, xs)), want)


# =============================================================================================
# 2. Rounder against the table oracle (formats ml_dtypes lacks, policy variants)
# =============================================================================================
@pytest.mark.parametrize("name", list(EXOTIC))
def test_round_vs_table(name):
    f = EXOTIC[name]
    tab = Table.of(f)
    rng = np.random.default_rng(4)
    t = tie_points(f)
    if len(t) > 6000:                       # 16-bit formats: the ends and a random sample
        order = np.argsort(np.abs(t))
        t = np.concatenate([t[order[:1500]], t[order[-1500:]], rng.choice(t, 3000)])
    exp = np.frexp(np.where(t == 0, 1.0, t))[1]
    tiny = np.where(t == 0, 0.0, np.ldexp(1.0, exp - 60))
    for r in (np.zeros_like(t), tiny, -tiny):
        got = encode_values(f, round_to_format(f, t, r))
        want = [tab.round(Fraction(x) + Fraction(y), int(np.signbit(x))) for x, y in zip(t, r)]
        np.testing.assert_array_equal(got, np.array(want, np.uint64))
    specials = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0])
    want = [tab.pack(v) for v in (("inf", 0), ("inf", 1), ("nan",), ("num", Fraction(0), 0),
                                   ("num", Fraction(0), 1))]
    np.testing.assert_array_equal(encode_values(f, round_to_format(f, specials)),
                                  np.array(want, np.uint64))


def test_round_dlfloat16_spec_vectors():
    """spec/float.md 1.3."""
    f = FORMATS["dlfloat16"]
    x = np.array([1 + 2.0 ** -10, -(1 + 2.0 ** -10), 1 + 2.0 ** -10 - 2.0 ** -20,
                  float(np.float32(0.1)), 65504.0, 2.0 ** -31, 2.0 ** -31 * (1 + 2.0 ** -10),
                  8573157376.0, 8573157376.0 * (1 + 2.0 ** -10), np.inf, np.nan,
                  2.0 ** -32 * 1.9999])
    want = [0x3E01, 0xBE01, 0x3E00, 0x3733, 0x5E00, 0x0000, 0x0001, 0x7FFE, 0x7FFF, 0x7FFF,
            0x7FFF, 0x0000]
    np.testing.assert_array_equal(encode_values(f, round_to_format(f, x)), want)


def test_encode_rejects_unrepresentable():
    with pytest.raises(ValueError, match=r"^values must be representable in fp16, not 0\.1$"):
        encode_values(FORMATS["fp16"], [0.1])
    with pytest.raises(ValueError, match=r"^values must be representable in dlfloat16"):
        encode_values(FORMATS["dlfloat16"], [2.0 ** -31])


# =============================================================================================
# 3. GEMM against the golden twin
# =============================================================================================
PAIRS = [("fp8_e4m3", "fp16"), ("dlfloat16", "dlfloat16"), ("fp8_e5m2", "fp16"),
         ("hfp8", "fp16"), ("bf16", "fp32"), ("hfp8_ibm", "dlfloat16"), ("fp16", "fp32")]


def check_twin(fi, fa, a, b, **kw):
    got = reference_fp_gemm(fi, fa, a, b, **kw)
    assert got.dtype == np.uint64 and got.shape == (a.shape[0], b.shape[1])
    np.testing.assert_array_equal(got, canon(fa, got))          # canonical output
    np.testing.assert_array_equal(got, twin_gemm(fi, fa, a, b, **kw))
    return got


@pytest.mark.parametrize("chunk", [0, 64])
def test_gemm_64x64x64_e4m3_fp16(chunk):
    fi, fa = FORMATS["fp8_e4m3"], FORMATS["fp16"]
    rng = np.random.default_rng(10 + chunk)
    check_twin(fi, fa, operands(fi, (64, 64), "normal", rng),
               operands(fi, (64, 64), "normal", rng), chunk=chunk)


@pytest.mark.parametrize("fa_name", ["fp16", "dlfloat16"])
def test_gemm_long_k(fa_name):
    """4x4x2100: swamping territory, chunked and not, mixed data with specials."""
    fi, fa = FORMATS["fp8_e4m3"], FORMATS[fa_name]
    rng = np.random.default_rng(11)
    a, b = operands(fi, (4, 2100), "normal", rng), operands(fi, (2100, 4), "normal", rng)
    b[:, 0] = quantize(fi, np.abs(rng.normal(1.0, 0.2, 2100)))   # all-positive sums
    a[0] = quantize(fi, np.ones(2100))
    for chunk in (0, 64):
        check_twin(fi, fa, a, b, chunk=chunk)


@pytest.mark.parametrize("fi_name,fa_name", PAIRS)
@pytest.mark.parametrize("kind", ["normal", "codes", "finite", "wide", "mixed"])
def test_gemm_chunk_boundaries(fi_name, fa_name, kind):
    fi, fa = FORMATS[fi_name], FORMATS[fa_name]
    rng = np.random.default_rng(seed(fi_name, fa_name, kind))
    for k in (1, 2, 15, 16, 17, 63, 64, 65, 129):
        a, b = operands(fi, (3, k), kind, rng, fa), operands(fi, (k, 5), kind, rng, fa)
        for chunk in (0, 16, 64):
            check_twin(fi, fa, a, b, chunk=chunk)


@pytest.mark.parametrize("fi_name,fa_name", PAIRS)
@pytest.mark.parametrize("kind", ["normal", "wide", "mixed"])
def test_gemm_k_split(fi_name, fa_name, kind):
    """K = 2 * ks + 3: two full pieces and a short one; chunk counting restarts per piece."""
    fi, fa = FORMATS[fi_name], FORMATS[fa_name]
    rng = np.random.default_rng(seed(fi_name, fa_name, kind, "split"))
    for ks, chunk in ((64, 64), (50, 64), (40, 16), (30, 0), (1, 0), (7, 3)):
        k = 2 * ks + 3
        a, b = operands(fi, (4, k), kind, rng, fa), operands(fi, (k, 3), kind, rng, fa)
        check_twin(fi, fa, a, b, chunk=chunk, k_split=ks)


def test_gemm_saturating_accumulator():
    fi, fa = FORMATS["fp8_e4m3"], FORMATS["fp16"].with_overflow("saturate")
    rng = np.random.default_rng(12)
    for kind in ("finite", "codes"):
        a, b = operands(fi, (6, 70), kind, rng), operands(fi, (70, 6), kind, rng)
        for chunk, ks in ((0, None), (16, None), (16, 30)):
            check_twin(fi, fa, a, b, chunk=chunk, k_split=ks)


def test_gemm_zero_and_specials():
    fi, fa = FORMATS["fp8_e5m2"], FORMATS["fp16"]
    code = {x: int(quantize(fi, [x])[0]) for x in (0.0, -0.0, 1.0, -1.0, 2.0 ** -16,
                                                   -(2.0 ** -16))}
    inf, ninf, nan = 0x7C, 0xFC, 0x7D
    a = np.array([[code[-0.0], code[0.0]],          # -0*1 + 0*1 = +0
                  [code[-0.0], code[-0.0]],         # -0*1 + -0*1 = +0 (acc starts at +0)
                  [inf, code[1.0]],                 # inf*1 + 1*1 = inf
                  [inf, code[1.0]],                 # inf*1 + 1*-inf = nan
                  [inf, code[0.0]],                 # inf*0 = nan
                  [code[-1.0], code[1.0]],          # x - x = +0
                  [nan, code[1.0]],
                  [code[2.0 ** -16], code[2.0 ** -16]]], np.uint64)   # 2**-32 underflows
    b = np.array([[code[1.0], code[1.0], code[1.0], code[1.0], code[0.0], code[1.0],
                   code[1.0], code[-(2.0 ** -16)]],
                  [code[1.0], code[1.0], code[1.0], ninf, code[1.0], code[1.0], code[1.0],
                   code[-(2.0 ** -16)]]], np.uint64)
    got = [int(reference_fp_gemm(fi, fa, a[i:i + 1], b[:, i:i + 1])[0, 0]) for i in range(8)]
    assert got == [0x0000, 0x0000, 0x7C00, 0x7E00, 0x7E00, 0x0000, 0x7E00, 0x8000]
    for chunk in (0, 1):
        check_twin(fi, fa, a, b, chunk=chunk)


def test_gemm_k_split_negative_zero():
    """A piece that ends as -0 (a negative product underflowing) is combined as -0:
    C = P1 = -0, then -0 + -0 = -0 (the first piece is not added to +0)."""
    fi, fa = FORMATS["fp8_e5m2"], FORMATS["fp16"]
    t = int(quantize(fi, [2.0 ** -16])[0])
    nt = int(quantize(fi, [-(2.0 ** -16)])[0])
    a = np.array([[t, t]], np.uint64)
    b = np.array([[nt], [nt]], np.uint64)
    assert reference_fp_gemm(fi, fa, a, b)[0, 0] == 0x8000
    assert reference_fp_gemm(fi, fa, a, b, k_split=1)[0, 0] == 0x8000
    assert reference_fp_gemm(fi, fa, a, b, chunk=1)[0, 0] == 0x0000   # outer = +0 + -0
    check_twin(fi, fa, a, b, k_split=1)


def test_gemm_empty_k():
    f = FORMATS["fp8_e4m3"]
    got = reference_fp_gemm(f, FORMATS["fp16"], np.zeros((2, 0), np.uint64),
                            np.zeros((0, 3), np.uint64), chunk=4, k_split=2)
    np.testing.assert_array_equal(got, np.zeros((2, 3), np.uint64))


# =============================================================================================
# 4. GEMM against the exact rational oracle
# =============================================================================================
@pytest.mark.parametrize("fi_name,fa_name", PAIRS)
def test_gemm_vs_exact_oracle(fi_name, fa_name):
    fi, fa = FORMATS[fi_name], FORMATS[fa_name]
    rng = np.random.default_rng(seed(fi_name, fa_name, "oracle"))
    for kind, k, chunk, ks in (("finite", 20, 0, None), ("codes", 12, 0, None),
                               ("mixed", 23, 8, 10), ("normal", 33, 16, None),
                               ("wide", 40, 0, None), ("wide", 41, 8, 13)):
        a, b = operands(fi, (3, k), kind, rng, fa), operands(fi, (k, 3), kind, rng, fa)
        got = reference_fp_gemm(fi, fa, a, b, chunk=chunk, k_split=ks)
        np.testing.assert_array_equal(got, oracle_gemm(fi, fa, a, b, chunk=chunk, k_split=ks))


def test_gemm_needs_exact_sum_dlfloat16():
    """acc = -2**-30, then a product exactly half-way between two dlfloat16 values:
    the exact sum lies just below the tie, so RNU rounds down. fl64(acc + p) is the tie itself
    (61 significant bits), so a plain float64 sum would round up."""
    f = FORMATS["dlfloat16"]
    one_half, x513 = 1.5 * 2.0 ** 15, (513 / 512) * 2.0 ** 15
    a = quantize(f, [[-(2.0 ** -15), one_half]])
    b = quantize(f, [[2.0 ** -15], [x513]])
    p = one_half * x513
    assert p == (769.5 / 512) * 2.0 ** 30 and -(2.0 ** -30) + p == p
    want = (61 << 9) | 257                     # (769 / 512) * 2**30
    assert int(encode_values(f, round_to_format(f, [p]))[0]) == want + 1   # the naive result
    assert int(reference_fp_gemm(f, f, a, b)[0, 0]) == want
    assert int(oracle_gemm(f, f, a, b)[0, 0]) == want
    check_twin(f, f, a, b)


@pytest.mark.parametrize("fi_name,fa_name", PAIRS)
def test_float64_exactness_claim(fi_name, fa_name):
    """Where float64_sum_is_exact says so, no TwoSum residual ever appears; the spans are
    stated in sim/fpref.py."""
    fi, fa = FORMATS[fi_name], FORMATS[fa_name]
    expected = {("fp8_e4m3", "fp16"): True, ("hfp8", "fp16"): True}
    assert fpref.float64_sum_is_exact(fi, fa) == expected.get((fi_name, fa_name), False)
    if not fpref.float64_sum_is_exact(fi, fa):
        return
    vi = decode_codes(fi, np.arange(1 << fi.width))
    vi = vi[np.isfinite(vi)]
    prods = np.unique(np.multiply.outer(vi, vi))
    va = decode_codes(fa, np.arange(1 << fa.width))
    va = np.sort(va[np.isfinite(va)])
    rng = np.random.default_rng(5)
    acc = np.concatenate([va[:200], va[-200:], va[np.abs(va).argsort()[:200]],
                          rng.choice(va, 400)])
    _, err = fpref._two_sum(acc[:, None], prods[None, :])
    assert not np.any(err)


def test_argument_errors():
    f, g = FORMATS["fp8_e4m3"], FORMATS["fp16"]
    ok = np.zeros((2, 2), np.uint64)
    with pytest.raises(ValueError, match=r"^input_format must be a FloatFormat, not 'fp8'$"):
        reference_fp_gemm("fp8", g, ok, ok)
    with pytest.raises(ValueError, match=r"^a_codes must be fp8_e4m3 codes in 0\.\.255, not 256$"):
        reference_fp_gemm(f, g, ok + 256, ok)
    with pytest.raises(ValueError, match=r"^a_codes and b_codes must have shapes"):
        reference_fp_gemm(f, g, ok, np.zeros((3, 2), np.uint64))
    with pytest.raises(ValueError, match=r"^chunk must be a non-negative integer, not -1$"):
        reference_fp_gemm(f, g, ok, ok, chunk=-1)
    with pytest.raises(ValueError, match=r"^k_split must be None or a positive integer, not 0$"):
        reference_fp_gemm(f, g, ok, ok, k_split=0)
