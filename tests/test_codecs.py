"""The value codec of every PE kind: `PEKind.encode`, `PEKind.decode`, `PEKind.acc_bound`.

Expected values come from references written here (Python integers, `fractions.Fraction`,
ml_dtypes and NumPy casts, hand formulas), never from the codec under test. Code spaces up
to 2**17 are swept exhaustively.
"""

import re
from fractions import Fraction

import numpy as np
import pytest

from tessera.generators.config import load_config, preset_names
from tessera.generators.kinds import PE_KINDS
from tessera.generators.kinds.base import PEKind


def _configs():
    """Every registered kind at its defaults, plus every distinct preset ``[pe]``."""
    out = {f"{name}-default": cls() for name, cls in PE_KINDS.items()}
    seen = {repr(k) for k in out.values()}
    for p in preset_names():
        pe = load_config(p).pe
        if repr(pe) not in seen:
            seen.add(repr(pe))
            out[f"{pe.name}-{p}"] = pe
    return out


CONFIGS = _configs()


def configs_of(*names):
    return [pytest.param(k, id=i) for i, k in CONFIGS.items() if k.name in names]


def one_line(err):
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def refuse(kind, values, pattern, **kw):
    with pytest.raises(ValueError) as err:
        kind.encode(values, **kw)
    msg = one_line(err)
    assert re.fullmatch(pattern, msg), msg
    return msg


def signed(c, bits):
    c = int(c)
    return c - (1 << bits) if c >> (bits - 1) else c


# -- every kind --------------------------------------------------------------------------------
def test_every_registered_kind_has_a_codec():
    for name, cls in PE_KINDS.items():
        kind = cls()
        mode = kind.modes[0] if kind.modes else None
        codes = kind.encode(np.zeros((2, 3)), operand="a", mode=mode)
        np.testing.assert_array_equal(kind.decode(codes, operand="a", mode=mode),
                                      np.zeros((2, 3)), err_msg=name)


@pytest.mark.parametrize("kind", configs_of(*[n for n in PE_KINDS if n not in ("fpec",)]))
def test_operand_codes_round_trip_through_values(kind):
    """The workload generator's codes, decoded to values, encode back to the same values (the
    ``fpec`` quantizer's codes are compensated, so they are not levels: see the fpec tests)."""
    rng = np.random.default_rng(7)
    for mode in kind.modes or (None,):
        a, b = kind.operands(3, 4, 8, kind="random", rng=rng, mode=mode)
        for op, codes in (("a", a), ("b", b)):
            if op == "b" and kind.name == "ternary":
                v = kind.decode(codes, operand="b")
                again = kind.encode(v, operand="b")
                np.testing.assert_array_equal(kind.decode(again, operand="b"), v)
                continue
            v = kind.decode(codes, operand=op, mode=mode)
            again = kind.encode(v, operand=op, mode=mode)
            assert again.dtype == np.uint64 and again.shape == codes.shape
            np.testing.assert_array_equal(kind.decode(again, operand=op, mode=mode), v)


@pytest.mark.parametrize("name", sorted(PE_KINDS))
def test_operand_must_be_a_or_b(name):
    kind = PE_KINDS[name]()
    with pytest.raises(ValueError, match=r"^operand: 'c' is unknown; allowed: 'a', 'b'$"):
        kind.encode([0], operand="c", mode=kind.modes[0] if kind.modes else None)


@pytest.mark.parametrize("name", sorted(PE_KINDS))
def test_a_string_is_not_a_number(name):
    kind = PE_KINDS[name]()
    refuse(kind, np.array([["x"]]), r"x\[0\]: 'x' is not a number; allowed: .+",
           operand="a", name="x", mode=kind.modes[0] if kind.modes else None)


# -- int ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", configs_of("int"))
def test_int_every_value_and_code(kind):
    for op, bits in (("a", kind.a_bits), ("b", kind.b_bits)):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        values = np.arange(lo, hi + 1)
        expected = np.array([v % (1 << bits) for v in values.tolist()], dtype=np.uint64)
        codes = kind.encode(values, operand=op)
        assert codes.dtype == np.uint64
        np.testing.assert_array_equal(codes, expected)
        np.testing.assert_array_equal(kind.encode(values.astype(np.float64), operand=op),
                                      expected)
        all_codes = np.arange(1 << bits, dtype=np.uint64)
        back = kind.decode(all_codes, operand=op)
        np.testing.assert_array_equal(back, [signed(c, bits) for c in all_codes.tolist()])
        np.testing.assert_array_equal(kind.encode(back, operand=op), all_codes)


def test_int8_refusals_name_tensor_index_value_and_range():
    kind = PE_KINDS["int"](a_bits=8, b_bits=8, acc_bits=32)
    allowed = r"allowed: integers -128\.\.127 \(signed 8-bit\)"
    refuse(kind, [1, 300], rf"a\[1\]: 300 is out of range; {allowed}", operand="a")
    refuse(kind, [0.5], rf"w\[0\]: 0\.5 is not an integer; {allowed}", operand="b", name="w")
    refuse(kind, [-128, 127, -129], rf"a\[2\]: -129 is out of range; {allowed}", operand="a")
    refuse(kind, [128.0], rf"a\[0\]: 128\.0 is out of range; {allowed}", operand="a")
    refuse(kind, [np.nan], rf"a\[0\]: nan is not an integer; {allowed}", operand="a")
    refuse(kind, [-np.inf], rf"a\[0\]: -inf is not an integer; {allowed}", operand="a")
    refuse(kind, [Fraction(1, 3)], rf"a\[0\]: 1/3 is not an integer; {allowed}", operand="a")
    refuse(kind, [Fraction(2 ** 60 + 1, 2 ** 60)],       # float64 would make it 1.0
           rf"a\[0\]: {2 ** 60 + 1}/{2 ** 60} is not an integer; {allowed}", operand="a")
    # The flat (C order) index of a 2-D tensor; the first bad value wins.
    x = np.zeros((3, 4))
    x[1, 2], x[2, 0] = 0.25, 1000
    refuse(kind, x, rf"x\[6\]: 0\.25 is not an integer; {allowed}", operand="a", name="x")


def test_int_decode_of_results_is_signed_acc_bits():
    kind = PE_KINDS["int"](acc_bits=24)
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 1 << 24, 1000).astype(np.uint64)
    out = kind.decode(codes)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [signed(c, 24) for c in codes.tolist()])


@pytest.mark.parametrize("kind", configs_of("int", "bitfusion", "multiprec"))
def test_values_in_values_out_int_family(kind):
    """encode -> reference -> decode is the exact product of the values, wrapped."""
    rng = np.random.default_rng(3)
    for mode in kind.modes or (None,):
        pm = kind.precision(mode) if kind.modes else None
        ra = pm.a_range if pm else (-(1 << (kind.a_bits - 1)), (1 << (kind.a_bits - 1)) - 1)
        rb = pm.b_range if pm else (-(1 << (kind.b_bits - 1)), (1 << (kind.b_bits - 1)) - 1)
        k = kind.layout(mode).k_per_word * 2
        x = rng.integers(ra[0], ra[1] + 1, (3, k))
        w = rng.integers(rb[0], rb[1] + 1, (k, 2))
        got = kind.decode(kind.reference(kind.encode(x, operand="a", mode=mode),
                                         kind.encode(w, operand="b", mode=mode), mode=mode),
                          mode=mode)
        exact = [[sum(int(x[i, j]) * int(w[j, c]) for j in range(k)) for c in range(2)]
                 for i in range(3)]
        bits = kind.acc_bits
        np.testing.assert_array_equal(got, [[signed(v % (1 << bits), bits) for v in r]
                                            for r in exact])


# -- bitfusion, multiprec ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", configs_of("bitfusion", "multiprec"))
def test_mode_kinds_every_value_every_mode(kind):
    for mode in kind.modes:
        m = re.fullmatch(r"a(\d)([su])_w(\d)([su])", mode)
        for op, bits, sign in (("a", int(m[1]), m[2]), ("b", int(m[3]), m[4])):
            lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if sign == "s"
                      else (0, (1 << bits) - 1))
            values = np.arange(lo, hi + 1)
            codes = kind.encode(values, operand=op, mode=mode)
            np.testing.assert_array_equal(codes, [v % (1 << bits) for v in values.tolist()])
            np.testing.assert_array_equal(kind.decode(codes, operand=op, mode=mode), values)
            what = rf"{'signed' if sign == 's' else 'unsigned'} {bits}-bit in mode {mode}"
            allowed = rf"allowed: integers {lo}\.\.{hi} \({what}\)"
            refuse(kind, [lo, hi + 1], rf"{op}\[1\]: {hi + 1} is out of range; {allowed}",
                   operand=op, mode=mode)
            refuse(kind, [lo - 1], rf"{op}\[0\]: {lo - 1} is out of range; {allowed}",
                   operand=op, mode=mode)
            refuse(kind, [0.5], rf"{op}\[0\]: 0\.5 is not an integer; {allowed}",
                   operand=op, mode=mode)


def test_mode_kind_without_mode_uses_the_default_mode():
    bf = PE_KINDS["bitfusion"]()
    refuse(bf, [2], r"a\[0\]: 2 is out of range; allowed: integers -2\.\.1 "
                    r"\(signed 2-bit in mode a2s_w2s\)", operand="a")
    mp = PE_KINDS["multiprec"]()
    np.testing.assert_array_equal(mp.encode([-128], operand="b"), [128])
    with pytest.raises(ValueError, match=r"^mode 'a9s_w9s' is unknown"):
        mp.encode([0], operand="a", mode="a9s_w9s")


# -- fpmac -------------------------------------------------------------------------------------
#: Independent facts about the named formats (docs/float.md, OCP FP8, IEEE 754, DLFloat):
#: field widths, bias, specials, rounding, max finite, canonical NaN, Inf and -0 present.
FP = {
    "fp8_e4m3": (4, 3, 7, "fn", "rne", 448.0, 0x7F, False, True),
    "fp8_e5m2": (5, 2, 15, "ieee", "rne", 57344.0, 0x7E, True, True),
    "hfp8": (4, 3, 11, "fnuz", "rne", 30.0, 0x80, False, False),
    "hfp8_ibm": (4, 3, 11, "merged", "rne", 28.0, 0x7F, False, False),
    "fp16": (5, 10, 15, "ieee", "rne", 65504.0, 0x7E00, True, True),
    "bf16": (8, 7, 127, "ieee", "rne", float.fromhex("0x1.fep127"), 0x7FC0, True, True),
    "dlfloat16": (6, 9, 31, "merged", "rnu", float(2 ** 32 * Fraction(1022, 512)), 0x7FFF,
                  False, False),
    "fp32": (8, 23, 127, "ieee", "rne", float(np.finfo(np.float32).max), 0x7FC00000, True,
             True),
}
SMALL_FP = [f for f in FP if f != "fp32"]


def fp_kind(fmt):
    return PE_KINDS["fpmac"](input_format=fmt, acc_format="fp32")


def ref_value(fmt, code):
    """Exact value of a code, from the field definitions: Fraction, 'nan', 'inf', '-inf'."""
    e_bits, m_bits, bias, specials, *_ = FP[fmt]
    w = 1 + e_bits + m_bits
    s, e, f = code >> (w - 1), (code >> m_bits) & ((1 << e_bits) - 1), code & ((1 << m_bits) - 1)
    top = (1 << e_bits) - 1
    if specials == "ieee" and e == top:
        return "nan" if f else ("-inf" if s else "inf")
    if specials in ("fn", "merged") and e == top and f == (1 << m_bits) - 1:
        return "nan"
    if specials == "fnuz" and code == 1 << (w - 1):
        return "nan"
    if specials == "merged":
        mag = Fraction(0) if e == 0 and f == 0 else Fraction(2) ** (e - bias) * (
            1 + Fraction(f, 1 << m_bits))
    elif e == 0:
        mag = Fraction(2) ** (1 - bias) * Fraction(f, 1 << m_bits)
    else:
        mag = Fraction(2) ** (e - bias) * (1 + Fraction(f, 1 << m_bits))
    return -mag if s else mag


@pytest.mark.parametrize("fmt", SMALL_FP)
def test_fp_every_code_decodes_and_encodes_back(fmt):
    kind = fp_kind(fmt)
    e_bits, m_bits, _, specials, _, _, nan, _, neg_zero = FP[fmt]
    w = 1 + e_bits + m_bits
    codes = np.arange(1 << w, dtype=np.uint64)
    values = kind.decode(codes, operand="a")
    assert values.dtype == np.float64
    again = kind.encode(values, operand="b")
    for c, v, c2 in zip(codes.tolist(), values.tolist(), again.tolist()):
        ref = ref_value(fmt, c)
        if ref == "nan":
            assert np.isnan(v) and c2 == nan, (hex(c), v, hex(c2))
        elif isinstance(ref, str):
            assert v == float(ref) and c2 == c
        else:
            assert Fraction(v) == ref, (hex(c), v, ref)
            if ref == 0:
                assert np.signbit(v) == bool(neg_zero and c >> (w - 1)), hex(c)
                assert c2 == (c if neg_zero else 0), (hex(c), hex(c2))
            else:
                assert c2 == c, (hex(c), hex(c2))


_TABLES = {}


def _positive_table(fmt):
    """``(value, code)`` of every finite non-negative code, sorted by value."""
    if fmt not in _TABLES:
        e_bits, m_bits = FP[fmt][:2]
        t = [(v, c) for c in range(1 << (e_bits + m_bits))
             if not isinstance(v := ref_value(fmt, c), str)]
        t.sort()
        _TABLES[fmt] = t
    return _TABLES[fmt]


@pytest.mark.parametrize("fmt", SMALL_FP)
def test_fp_rounding_against_exact_nearest(fmt):
    """Between every two neighbouring values v0 < v1 (codes c0, c1): the midpoint is a tie
    (the even code, or c1 when ties go away from zero), a point 2**-40 below it rounds to
    c0 and one above to c1; both signs (a negative zero only where the format has one)."""
    kind = fp_kind(fmt)
    e_bits, m_bits, _, specials, rnd, _, _, _, neg_zero = FP[fmt]
    sign = 1 << (e_bits + m_bits)
    table = _positive_table(fmt)
    start = 1 if specials == "merged" else 0       # no subnormals: flushing, tested below
    xs, want = [], []
    for (v0, c0), (v1, c1) in zip(table[start:], table[start + 1:]):
        mid = (v0 + v1) / 2
        tie = (c0 if c0 % 2 == 0 else c1) if rnd == "rne" else c1
        for x, c in ((mid, tie), (mid * (1 - Fraction(1, 2 ** 40)), c0),
                     (mid * (1 + Fraction(1, 2 ** 40)), c1)):
            if float(x) == x:
                xs += [float(x), -float(x)]
                want += [c, (c | sign) if (c or neg_zero) else 0]
    got = kind.encode(np.array(xs), operand="a")
    bad = [(x, hex(g), hex(e)) for x, g, e in zip(xs, got.tolist(), want) if g != e]
    assert len(xs) > 6 * (len(table) - 2) * 0.9 and not bad, bad[:5]


ML = {"fp8_e4m3": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2", "bf16": "bfloat16",
      "fp16": None}


@pytest.mark.parametrize("fmt", sorted(ML))
def test_fp_rounding_against_ml_dtypes(fmt):
    """Random values of every magnitude (float32-exact, so ml_dtypes' own path through float32
    rounds once) against ml_dtypes' casts."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = getattr(ml_dtypes, ML[fmt]) if ML[fmt] else np.float16
    kind = fp_kind(fmt)
    top = FP[fmt][5]
    rng = np.random.default_rng(11)
    tiny = float(ml_dtypes.finfo(dt).smallest_subnormal if ML[fmt] else
                 np.finfo(np.float16).smallest_subnormal)
    x = np.exp(rng.uniform(np.log(tiny / 4), np.log(top), 20000)).astype(np.float32)
    x = np.concatenate([x, -x, [0.0, -0.0]]).astype(np.float64)
    x = x[np.abs(x) <= top]
    got = kind.encode(x, operand="a")
    ref = x.astype(np.float32).astype(dt).view(np.uint16 if dt(0).itemsize == 2 else np.uint8)
    np.testing.assert_array_equal(got, ref.astype(np.uint64))


def test_fp32_rounding_against_numpy_float32():
    kind = fp_kind("fp32")
    rng = np.random.default_rng(5)
    x = rng.standard_normal(20000) * np.exp(rng.uniform(-100, 80, 20000))
    x = np.concatenate([x, [np.finfo(np.float32).max, 1e-45, -3e-46]])
    got = kind.encode(x, operand="a")
    np.testing.assert_array_equal(got, x.astype(np.float32).view(np.uint32).astype(np.uint64))


def test_dlfloat16_underflow_examples_of_the_spec():
    """spec/float.md 1.3: no subnormals; 2**-31 -> 0x0000, 2**-31 * (1 + 2**-10) -> 0x0001
    (a tie, rounded away from zero), 2**-32 * 1.9999 -> 0x0000."""
    kind = fp_kind("dlfloat16")
    got = kind.encode([2.0 ** -31, 2.0 ** -31 * (1 + 2.0 ** -10), 2.0 ** -32 * 1.9999],
                      operand="a")
    np.testing.assert_array_equal(got, [0x0000, 0x0001, 0x0000])


@pytest.mark.parametrize("fmt", list(FP))
def test_fp_range_inf_and_nan(fmt):
    kind = fp_kind(fmt)
    *_, top, nan, has_inf, _ = FP[fmt]
    w = 1 + FP[fmt][0] + FP[fmt][1]
    np.testing.assert_array_equal(kind.decode(kind.encode([top, -top], operand="a"),
                                              operand="a"), [top, -top])
    beyond = top * (1 + 2.0 ** -30)
    top_text = re.escape(str(int(top)) if top < 2 ** 53 else repr(top))
    allowed = (rf"allowed: finite values with \|x\| <= {top_text}"
               rf"{', [+]-inf' if has_inf else ''}, nan \({fmt}, rounded to nearest, ties "
               rf"{'to even' if FP[fmt][4] == 'rne' else 'away from zero'}\)")
    refuse(kind, [0.0, -beyond], rf"a\[1\]: {re.escape(repr(-beyond))} is beyond the "
                                 rf"largest finite {fmt} magnitude; {allowed}", operand="a")
    if has_inf:
        np.testing.assert_array_equal(kind.encode([np.inf, -np.inf], operand="a"),
                                      [(((1 << FP[fmt][0]) - 1) << FP[fmt][1]) | s
                                       for s in (0, 1 << (w - 1))])
    else:
        refuse(kind, [np.inf], rf"a\[0\]: inf is infinite and {fmt} has no Inf; {allowed}",
               operand="a")
    np.testing.assert_array_equal(kind.encode([np.nan], operand="a"), [nan])


def test_fp8_e4m3_refusals_pinned():
    kind = fp_kind("fp8_e4m3")
    allowed = (r"allowed: finite values with \|x\| <= 448, nan \(fp8_e4m3, rounded to "
               r"nearest, ties to even\)")
    refuse(kind, [1, 449], rf"b\[1\]: 449 is beyond the largest finite fp8_e4m3 "
                             rf"magnitude; {allowed}", operand="b")
    refuse(kind, [-np.inf], rf"x\[0\]: -inf is infinite and fp8_e4m3 has no Inf; {allowed}",
           operand="a", name="x")
    refuse(kind, [Fraction(1, 2), Fraction(1, 3)],
           rf"a\[1\]: 1/3 is not exactly representable as a float64 \(rounded twice\); "
           rf"{allowed}", operand="a")
    np.testing.assert_array_equal(kind.encode([Fraction(3, 8)], operand="a"), [0x2C])
    # e4m3 has a NaN code (S.1111.111): NaN is a value it holds.
    np.testing.assert_array_equal(kind.encode([np.nan, 447.0, 420.0], operand="a"),
                                  [0x7F, 0x7E, 0x7D])


def test_fp_decode_of_results_is_the_accumulator_format():
    kind = PE_KINDS["fpmac"](input_format="fp8_e4m3", acc_format="fp16")
    codes = np.arange(1 << 16, dtype=np.uint64)
    got = kind.decode(codes)
    want = codes.astype(np.uint16).view(np.float16).astype(np.float64)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float64


# -- fpec --------------------------------------------------------------------------------------
FPEC_MORE = [pytest.param(PE_KINDS["fpec"](a_int_bits=5, a_frac_bits=-2, emb_bits=2),
                          id="fpec-emb2-negfrac"),
             pytest.param(PE_KINDS["fpec"](emb_bits=1, acc_bits=20), id="fpec-emb1")]


def fpec_ref_value(kind, op, code):
    """Value of an element code from the field layout of sim/fpec.py's docstring."""
    ib, fb = ((kind.a_int_bits, kind.a_frac_bits) if op == "a"
              else (kind.b_int_bits, kind.b_frac_bits))
    w, m = 1 + ib + fb, kind.emb_bits
    q = signed(code & ((1 << w) - 1), w)
    lsb = Fraction(2) ** -fb
    if not (code >> w) & 1:                       # not-EZB clear: EZB, no compensation
        return q * lsb
    s, mag = (1, 1) if m == 0 else (m + 2, (1 << m) + ((code >> (w + 2)) & ((1 << m) - 1)) + 1)
    est = mag * lsb / (1 << s)
    return q * lsb + (-est if (code >> (w + 1)) & 1 else est)


@pytest.mark.parametrize("kind", configs_of("fpec") + FPEC_MORE)
def test_fpec_every_level_and_code(kind):
    for op, ib, fb in (("a", kind.a_int_bits, kind.a_frac_bits),
                       ("b", kind.b_int_bits, kind.b_frac_bits)):
        w = 1 + ib + fb
        levels = [q * Fraction(2) ** -fb for q in range(-(1 << (w - 1)), 1 << (w - 1))]
        codes = kind.encode(np.array([float(v) for v in levels]), operand=op)
        np.testing.assert_array_equal(
            codes, [q % (1 << w) for q in range(-(1 << (w - 1)), 1 << (w - 1))])
        all_codes = np.arange(1 << (w + 2 + kind.emb_bits), dtype=np.uint64)
        values = kind.decode(all_codes, operand=op)
        ref = [fpec_ref_value(kind, op, c) for c in all_codes.tolist()]
        assert [Fraction(v) for v in values.tolist()] == ref
        for c, v in zip(all_codes.tolist(), values.tolist()):
            if (c >> w) & 1 and op == "b":       # compensated weight: not a level, refused
                with pytest.raises(ValueError, match=r"is not a multiple of the LSB"):
                    kind.encode([v], operand=op)
            elif (c >> w) & 1:                    # compensated activation (the epilogue's
                got = kind.encode([v], operand=op)    # outputs): a code of the same value
                assert Fraction(kind.decode(got, operand=op).tolist()[0]) == Fraction(v)
                assert (int(got[0]) >> w) & 1 == 1  # not-EZB set: compensated
            else:                                 # EZB: canonical code, EDB/EMB cleared
                assert int(kind.encode([v], operand=op)[0]) == c & ((1 << w) - 1)


def test_fpec_refusals_pinned():
    kind = PE_KINDS["fpec"]()                     # a: 3.2, b: 1.4
    a_allowed = (r"allowed: multiples of 0\.25 in -8\.\.7\.75 \(levels of signed fixed point, "
                 r"2 fraction bits\)")
    refuse(kind, [0.25, 0.3], rf"a\[1\]: 0\.3 is not a multiple of the LSB 0\.25; "
                              rf"{a_allowed}", operand="a")
    refuse(kind, [8], rf"a\[0\]: 8 is out of range; {a_allowed}", operand="a")
    refuse(kind, [-8.25], rf"a\[0\]: -8\.25 is out of range; {a_allowed}", operand="a")
    refuse(kind, [np.nan], rf"a\[0\]: nan is not a finite number; {a_allowed}", operand="a")
    refuse(kind, [Fraction(1, 4), Fraction(1, 4) + Fraction(1, 2 ** 70)],
           rf"a\[1\]: {2 ** 68 + 1}/{2 ** 70} is not a multiple of the LSB 0\.25; {a_allowed}",
           operand="a")
    refuse(kind, [2.0], r"w\[0\]: 2\.0 is out of range; allowed: multiples of 0\.0625 in "
                        r"-2\.\.1\.9375 \(levels of signed fixed point, 4 fraction bits\)",
           operand="b", name="w")


@pytest.mark.parametrize("kind", configs_of("fpec") + FPEC_MORE)
def test_fpec_values_in_values_out(kind):
    rng = np.random.default_rng(2)
    fa, fb = Fraction(2) ** -kind.a_frac_bits, Fraction(2) ** -kind.b_frac_bits
    qa = rng.integers(-(1 << (kind.a_w - 1)), 1 << (kind.a_w - 1), (3, 5))
    qb = rng.integers(-(1 << (kind.b_w - 1)), 1 << (kind.b_w - 1), (5, 2))
    x = np.vectorize(lambda q: float(q * fa))(qa)
    y = np.vectorize(lambda q: float(q * fb))(qb)
    got = kind.decode(kind.reference(kind.encode(x, operand="a"), kind.encode(y, operand="b")))
    exact = [[sum(int(qa[i, j]) * fa * int(qb[j, c]) * fb for j in range(5)) for c in range(2)]
             for i in range(3)]
    assert [[Fraction(v) for v in r] for r in got.tolist()] == exact


@pytest.mark.parametrize("kind", configs_of("fpec") + FPEC_MORE)
def test_fpec_acc_bound_is_the_worst_product_of_any_codes(kind):
    from tessera.sim.fpec import fpec_dot_codes
    ca = np.arange(1 << kind.a_format.bits, dtype=np.uint64)
    cb = np.arange(1 << kind.b_format.bits, dtype=np.uint64)
    _, p, c = fpec_dot_codes(kind.a_format, kind.b_format, ca[:, None, None],
                             cb[None, :, None])
    worst = int(np.abs((p << kind.s) + c).max())
    m = {0: 1, 1: 4, 2: 8}[kind.emb_bits]          # 2**m + (2**m - 1) + 1 with EMB bits
    hand = (2 ** (kind.a_w - 1) * 2 ** (kind.b_w - 1) * 2 ** kind.s
            + m * (2 ** (kind.a_w - 1) + 2 ** (kind.b_w - 1)))
    assert worst == hand
    assert kind.acc_bound(7) == (7 * hand, 2 ** (kind.acc_bits - 1) - 1)


# -- biscaled ----------------------------------------------------------------------------------
BISCALED_MORE = [pytest.param(PE_KINDS["biscaled"](a_bits=5, a_fine_frac_bits=0,
                                                   a_wide_frac_bits=-2, b_bits=8,
                                                   b_fine_frac_bits=6, b_wide_frac_bits=1,
                                                   acc_bits=40), id="biscaled-neg")]


def bs_fmt(kind, op):
    return ((kind.a_bits, kind.a_fine_frac_bits, kind.a_wide_frac_bits) if op == "a"
            else (kind.b_bits, kind.b_fine_frac_bits, kind.b_wide_frac_bits))


@pytest.mark.parametrize("kind", configs_of("biscaled") + BISCALED_MORE)
def test_biscaled_every_code(kind):
    for op in ("a", "b"):
        bits, fine, wide = bs_fmt(kind, op)
        lanes = np.arange(1 << (bits + 1), dtype=np.uint64)
        values = kind.decode(lanes, operand=op)
        ref = []
        for c in lanes.tolist():
            q = signed(c & ((1 << bits) - 1), bits)
            ref.append(q * Fraction(2) ** -(wide if c >> bits else fine))
        assert [Fraction(v) for v in values.tolist()] == ref
        again = kind.encode(values, operand=op)
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        for c, v, c2 in zip(lanes.tolist(), ref, again.tolist()):
            u = v * 2 ** fine                      # scale-fine level, if an integer in range
            fine_ok = u.denominator == 1 and lo <= u <= hi
            assert c2 == (int(u) % (1 << bits) if fine_ok else c), (c, v, c2)


def test_biscaled_refusals_pinned():
    kind = PE_KINDS["biscaled"]()                 # a: 6 bits, fine 3, wide 0
    allowed = (r"allowed: multiples of 0\.125 in -4\.\.3\.875 \(scale-fine\) or of 1 in "
               r"-32\.\.31 \(scale-wide\)")
    refuse(kind, [0.0625], rf"a\[0\]: 0\.0625 is not a multiple of the scale-fine LSB 0\.125; "
                           rf"{allowed}", operand="a")
    refuse(kind, [4.0, 4.5], rf"a\[1\]: 4\.5 is beyond scale-fine and not a multiple of the "
                             rf"scale-wide LSB 1; {allowed}", operand="a")
    refuse(kind, [32], rf"a\[0\]: 32 is out of range; {allowed}", operand="a")
    refuse(kind, [-33], rf"a\[0\]: -33 is out of range; {allowed}", operand="a")
    refuse(kind, [np.inf], rf"a\[0\]: inf is not a finite number; {allowed}", operand="a")


@pytest.mark.parametrize("kind", configs_of("biscaled") + BISCALED_MORE)
def test_biscaled_values_in_values_out_and_acc_bound(kind):
    rng = np.random.default_rng(4)
    vals = {}
    for op in ("a", "b"):
        bits, fine, wide = bs_fmt(kind, op)
        lanes = rng.integers(0, 1 << (bits + 1), (3, 6) if op == "a" else (6, 2))
        vals[op] = np.vectorize(lambda c: signed(int(c) & ((1 << bits) - 1), bits)
                                * Fraction(2) ** -(wide if int(c) >> bits else fine),
                                otypes=[object])(lanes)
    got = kind.decode(kind.reference(kind.encode(vals["a"].astype(float), operand="a"),
                                     kind.encode(vals["b"].astype(float), operand="b")))
    assert [[Fraction(v) for v in r] for r in got.tolist()] == (vals["a"] @ vals["b"]).tolist()
    (ab, af, aw), (bb, bf, bw) = bs_fmt(kind, "a"), bs_fmt(kind, "b")
    worst = (2 ** (ab - 1) * Fraction(2) ** -aw * 2 ** (bb - 1) * Fraction(2) ** -bw
             * Fraction(2) ** (af + bf))          # in result units 2**-(fine_a + fine_b)
    assert worst.denominator == 1
    assert kind.acc_bound(5) == (5 * int(worst), 2 ** (kind.acc_bits - 1) - 1)


# -- ternary -----------------------------------------------------------------------------------
TERNARY_MORE = [pytest.param(PE_KINDS["ternary"](per_channel=False), id="ternary-layer"),
                pytest.param(PE_KINDS["ternary"](act_bits=12, scale_bits=6, scale_frac=6),
                             id="ternary-frac-all")]


@pytest.mark.parametrize("kind", configs_of("ternary") + TERNARY_MORE)
def test_ternary_activations(kind):
    values = np.arange(1 << kind.act_bits)
    codes = kind.encode(values, operand="a")
    np.testing.assert_array_equal(codes, values)
    np.testing.assert_array_equal(kind.decode(codes, operand="a"), values)
    top = (1 << kind.act_bits) - 1
    allowed = rf"allowed: integers 0\.\.{top} \(unsigned {kind.act_bits}-bit\)"
    refuse(kind, [top + 1], rf"a\[0\]: {top + 1} is out of range; {allowed}", operand="a")
    refuse(kind, [-1], rf"a\[0\]: -1 is out of range; {allowed}", operand="a")
    refuse(kind, [0.5], rf"a\[0\]: 0\.5 is not an integer; {allowed}", operand="a")


@pytest.mark.parametrize("kind", configs_of("ternary") + TERNARY_MORE)
def test_ternary_weights_round_trip(kind):
    from tessera.sim.engines.tree import TernaryB
    rng = np.random.default_rng(9)
    k, n = 6, 5
    smax = (1 << kind.scale_bits) - 1
    codes = rng.choice(np.array([0b00, 0b01, 0b11]), (k, n))
    codes[0], codes[1] = 0b01, 0b11               # every column uses both scales
    wp, wn = rng.integers(1, smax + 1, n), rng.integers(1, smax + 1, n)
    wp[0], wn[0] = smax, 1
    if not kind.per_channel:
        wp[:], wn[:] = wp[0], wn[0]
    b = TernaryB(codes, wp, wn)
    unit = Fraction(1, 1 << kind.scale_frac)
    dense = [[(wp[j] * unit if c == 1 else -wn[j] * unit if c == 3 else 0)
              for j, c in enumerate(row)] for row in codes.tolist()]
    values = kind.decode(b, operand="b")
    assert [[Fraction(v) for v in r] for r in values.tolist()] == dense
    again = kind.encode(values, operand="b")
    np.testing.assert_array_equal(again.codes, codes)
    np.testing.assert_array_equal(again.wp, wp)
    np.testing.assert_array_equal(again.wn, wn)
    # Values in, values out: the exact products, as Fractions.
    a = rng.integers(0, 1 << kind.act_bits, (2, k))
    got = kind.decode(kind.reference(kind.encode(a, operand="a"), again))
    exact = [[sum(int(a[i, r]) * dense[r][j] for r in range(k)) for j in range(n)]
             for i in range(2)]
    assert got.tolist() == exact


def test_ternary_missing_scales_and_refusals():
    kind = PE_KINDS["ternary"]()                  # 16-bit scales, 8 fraction bits
    w = np.array([[0.5, 0.0, -0.25], [0.5, 0.0, 0.0]])
    b = kind.encode(w, operand="b")
    np.testing.assert_array_equal(b.codes, [[1, 0, 3], [1, 0, 0]])
    np.testing.assert_array_equal(b.wp, [128, 256, 64])     # no +: the other scale, or 1.0
    np.testing.assert_array_equal(b.wn, [128, 256, 64])
    allowed = (r"allowed: 0, \+Wp or -Wn, one Wp and one Wn per output channel \(column\), "
               r"multiples of 0\.00390625 in 0\.00390625\.\.255\.99609375")
    refuse(kind, np.array([[0.5, 1.0], [0.25, 1.0]]),
           rf"w\[2\]: 0\.25 is a second positive value in column 0 \(the first is 0\.5 at "
           rf"w\[0\]\); {allowed}", operand="b", name="w")
    refuse(kind, np.array([[-1.0], [-2.0]]),
           rf"b\[1\]: -2\.0 is a second negative value in column 0 \(the first is -1 at "
           rf"b\[0\]\); {allowed}", operand="b")
    refuse(kind, np.array([[0.3]]), rf"b\[0\]: 0\.3 is not a multiple of 2\*\*-8 = "
                                    rf"0\.00390625; {allowed}", operand="b")
    refuse(kind, np.array([[0.0, 256.0]]), rf"b\[1\]: 256\.0 is out of range; {allowed}",
           operand="b")
    with pytest.raises(ValueError, match=r"^b: shape \(3,\) is not K x N; allowed: a 2-D "):
        kind.encode(np.zeros(3), operand="b")
    layer = PE_KINDS["ternary"](per_channel=False)
    refuse(layer, np.array([[0.5, 0.25]]),
           r"b\[1\]: 0\.25 is a second positive value in the layer \(the first is 0\.5 at "
           r"b\[0\]\); allowed: 0, \+Wp or -Wn, one Wp and one Wn per layer \(pe\.per_channel "
           r"is false\), .+", operand="b")


# -- acc_bound ---------------------------------------------------------------------------------
def test_acc_bound_int8_into_24_bits():
    """The icebreaker preset: int8 x int8 into 24 bits. The largest product is (-128)**2
    (the brute force below), so K = 511 fits 2**23 - 1 and K = 512 does not."""
    kind = load_config("icebreaker").pe
    v = np.arange(-128, 128)
    assert int(np.abs(v[:, None] * v[None, :]).max()) == 16384
    assert kind.acc_bound(511) == (8372224, 8388607)
    assert kind.acc_bound(512) == (8388608, 8388607)
    assert PE_KINDS["int"](a_bits=4, b_bits=6, acc_bits=32).acc_bound(3) == (3 * 8 * 32,
                                                                            2 ** 31 - 1)


@pytest.mark.parametrize("kind", configs_of("bitfusion", "multiprec"))
def test_acc_bound_per_mode(kind):
    for mode in kind.modes:
        m = re.fullmatch(r"a(\d)([su])_w(\d)([su])", mode)
        amax = 2 ** (int(m[1]) - 1) if m[2] == "s" else 2 ** int(m[1]) - 1
        bmax = 2 ** (int(m[3]) - 1) if m[4] == "s" else 2 ** int(m[3]) - 1
        assert kind.acc_bound(1000, mode=mode) == (1000 * amax * bmax,
                                                   2 ** (kind.acc_bits - 1) - 1), mode


@pytest.mark.parametrize("kind", configs_of("ternary") + TERNARY_MORE)
def test_acc_bound_ternary(kind):
    bound, limit = kind.acc_bound(100)
    assert bound == 100 * (2 ** kind.act_bits - 1) * (2 ** kind.scale_bits - 1)
    assert limit == 2 ** (kind.acc_bits - 1) - 1


def test_acc_bound_is_none_for_float_accumulation_and_the_base():
    assert PE_KINDS["fpmac"]().acc_bound(10) is None
    assert PEKind.acc_bound(PE_KINDS["int"](), 10) is None
    with pytest.raises(ValueError, match=r"^k: 0 is not a positive integer; allowed: "):
        PE_KINDS["int"]().acc_bound(0)
