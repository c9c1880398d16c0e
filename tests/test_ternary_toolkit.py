"""The ternary host toolkit (sim/ternary.py) against the spec (intfamily.md section 7) and
against oracles written here from the spec's definitions, independently of the module."""

import json
import math
import re
from fractions import Fraction

import numpy as np
import pytest

from tessera.sim import ternary as tt


# The spec's 3 x 5 example, W^T rows [0 Wp Wp 0 Wn], [Wn 0 0 Wp 0], [Wp Wn 0 Wn Wn].
P, N, Z = 0b01, 0b11, 0b00
SPEC_WT = np.array([[Z, P, P, Z, N],
                    [N, Z, Z, P, Z],
                    [P, N, Z, N, N]], dtype=np.uint8)


def random_codes(rng, rows, cols, sparsity):
    """A rows x cols code matrix; each weight is zero with probability ``sparsity``."""
    nz = rng.random((rows, cols)) >= sparsity
    sign = rng.random((rows, cols)) < 0.5
    return np.where(nz, np.where(sign, P, N), Z).astype(np.uint8)


# --- oracles --------------------------------------------------------------------------------

def oracle_q(value, k):
    """floor((2**k - 1) * clip(value, 0, 1) + 1/2) with Fractions."""
    a = min(max(Fraction(value), Fraction(0)), Fraction(1))
    return math.floor((2 ** k - 1) * a + Fraction(1, 2))


def oracle_stream_walk(entries, cols):
    """(pos after each entry, landing row of each entry, w2, z) from the spec's decoding rule."""
    pos, out = -1, []
    for v in [int(e) for e in entries]:
        w2, z = v & 3, v >> 2
        if w2 != 0b10:
            pos += z + 1
        out.append((pos, max(pos, 0) // cols, w2, z))
    return out


def oracle_decode(entries, rows, cols):
    m = [[Z] * cols for _ in range(rows)]
    for pos, _, w2, _ in oracle_stream_walk(entries, cols):
        if w2 in (P, N):
            m[pos // cols][pos % cols] = w2
    return np.array(m, dtype=np.uint8)


def oracle_entry_counts(wt, zmax, min_row_entries):
    """Counts of non-PAD entries and of PADs: one entry per non-zero, one at the last position,
    floor(G / (zmax + 1)) fillers per gap of G zeros (the fewest possible, as an entry advances at
    most zmax + 1), placed every zmax + 1 positions; then PADs topping up each row's landing
    count."""
    rows, cols = wt.shape
    flat = wt.reshape(-1)
    last = rows * cols - 1
    targets = [i for i in range(flat.size) if flat[i] != Z]
    if not targets or targets[-1] != last:
        targets.append(last)
    positions, prev = [], -1
    for t in targets:
        gap = t - prev - 1
        positions += [prev + (zmax + 1) * j for j in range(1, gap // (zmax + 1) + 1)]
        positions.append(t)
        prev = t
    landing = [0] * rows
    for p in positions:
        landing[p // cols] += 1
    pads = sum(max(0, min_row_entries - c) for c in landing)
    return len(positions), pads


# --- weight codes ---------------------------------------------------------------------------

def test_code_values():
    assert (tt.ZERO, tt.POS, tt.NEG, tt.PAD) == (0b00, 0b01, 0b11, 0b10)


def test_check_codes_names_first_bad_index():
    bad = SPEC_WT.copy()
    bad[1, 2] = 0b10
    bad[2, 4] = 7
    with pytest.raises(ValueError, match=r"^weight code at flat index 7 is 2 \(0b10\); allowed "
                                         r"codes are 0b00 \(0\), 0b01 \(\+Wp\) or 0b11 \(-Wn\)$"):
        tt.check_codes(bad)
    with pytest.raises(ValueError, match=r"^weight code at flat index 2 is -1 "):
        tt.check_codes([0, 3, -1])
    with pytest.raises(ValueError, match=r"^weight codes must be an array of integers"):
        tt.check_codes([0.0, 1.0])
    np.testing.assert_array_equal(tt.check_codes(SPEC_WT), SPEC_WT)


def test_signs_round_trip():
    signs = tt.codes_to_signs(SPEC_WT)
    np.testing.assert_array_equal(signs, [[0, 1, 1, 0, -1], [-1, 0, 0, 1, 0], [1, -1, 0, -1, -1]])
    np.testing.assert_array_equal(tt.signs_to_codes(signs), SPEC_WT)
    with pytest.raises(ValueError, match=r"^sign at flat index 1 is 2; allowed signs are -1, 0"):
        tt.signs_to_codes([1, 2, 0])
    with pytest.raises(ValueError, match=r"^weight code at flat index 0 is 2 "):
        tt.codes_to_signs([2])


# --- DeepChip reference format --------------------------------------------------------------

def test_spec_example_rle():
    indices, signs, distances = tt.rle_encode(SPEC_WT)
    assert indices.tolist() == [1, 2, 4, 5, 8, 10, 11, 13, 14]
    assert signs.tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 1]
    assert distances.tolist() == [1, 1, 2, 1, 3, 2, 1, 2, 1]
    np.testing.assert_array_equal(tt.rle_decode(signs, distances, (3, 5)), SPEC_WT)


def test_spec_example_rows_and_slide_typo():
    rows = tt.rle_rows([0, 0, 1, 1, 0, 0, 1, 1, 1], [1, 1, 2, 1, 3, 2, 1, 2, 1], (3, 5))
    assert rows == [([1, 2], [4]), ([3], [0]), ([0], [1, 3, 4])]
    # The slide prints row 2's I_n as (1 3 5); column 5 does not exist in a 5-column matrix.
    assert rows[2][1] != [1, 3, 5]


def test_rle_nonzero_at_index_zero_and_empty():
    wt = np.array([[N, Z], [Z, P]], dtype=np.uint8)
    i, s, d = tt.rle_encode(wt)
    assert (i.tolist(), s.tolist(), d.tolist()) == ([0, 3], [1, 0], [0, 3])
    i, s, d = tt.rle_encode(np.zeros((2, 3), dtype=np.uint8))
    assert i.size == s.size == d.size == 0
    np.testing.assert_array_equal(tt.rle_decode([], [], (2, 3)), np.zeros((2, 3)))
    assert tt.rle_rows([], [], (2, 3)) == [([], []), ([], [])]


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (4, 9), (16, 33)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
def test_rle_round_trip(shape, sparsity):
    rng = np.random.default_rng(hash((shape, sparsity)) % 2 ** 32)
    wt = random_codes(rng, *shape, sparsity)
    indices, signs, distances = tt.rle_encode(wt)
    flat = wt.reshape(-1)
    expect = [i for i in range(flat.size) if flat[i] != Z]
    assert indices.tolist() == expect
    assert signs.tolist() == [1 if flat[i] == N else 0 for i in expect]
    assert np.cumsum(distances).tolist() == expect
    np.testing.assert_array_equal(tt.rle_decode(signs, distances, shape), wt)
    rows = tt.rle_rows(signs, distances, shape)
    for r in range(shape[0]):
        assert rows[r] == ([c for c in range(shape[1]) if wt[r, c] == P],
                           [c for c in range(shape[1]) if wt[r, c] == N])


def test_rle_decode_errors():
    with pytest.raises(ValueError, match=r"^distance 2 is 0; distances must be >= 1 after the "):
        tt.rle_decode([0, 0, 1], [1, 1, 0], (3, 5))
    with pytest.raises(ValueError, match=r"^distance 0 is -1; distances must be >= 0$"):
        tt.rle_decode([0], [-1], (3, 5))
    with pytest.raises(ValueError, match=r"^distance 1 reaches flat index 15, past the last index "
                                         r"14 of the 3x5 matrix$"):
        tt.rle_decode([0, 1], [10, 5], (3, 5))
    with pytest.raises(ValueError, match=r"^sign 1 is 2; signs are 0 \(\+Wp\) or 1 \(-Wn\)$"):
        tt.rle_decode([0, 2], [1, 1], (3, 5))
    with pytest.raises(ValueError, match=r"^signs and distances must have equal lengths, not 2 "):
        tt.rle_decode([0, 1], [1], (3, 5))
    with pytest.raises(ValueError, match=r"^weight code at flat index 1 is 2 "):
        tt.rle_encode([[0, 2]])
    # The last index itself is fine.
    assert tt.rle_decode([1], [14], (3, 5))[2, 4] == N


# --- hardware entry stream ------------------------------------------------------------------

def test_spec_example_hw_stream_by_hand():
    # z_bits = 2: zmax = 3, no gap longer than 2 zeros, last weight non-zero: no fillers.
    # entry = z << 2 | w2; positions 1 2 4 5 8 10 11 13 14 give z = 1 0 1 0 2 1 0 1 0.
    assert tt.hw_encode(SPEC_WT, 2).tolist() == [5, 1, 7, 3, 9, 5, 3, 7, 3]
    # z_bits = 1: zmax = 1, so the gap 6, 7 before index 8 needs a ZERO filler at 7 (z = 1).
    assert tt.hw_encode(SPEC_WT, 1).tolist() == [5, 1, 7, 3, 4, 1, 5, 3, 7, 3]
    # Last weight zero: the stream still ends at position 14 with a ZERO filler.
    wt = SPEC_WT.copy()
    wt[2, 3:] = Z
    assert tt.hw_encode(wt, 2).tolist() == [5, 1, 7, 3, 9, 5, 3, 2 << 2]
    # min_row_entries = 3 over z_bits = 2: rows land 3 (1 2 4), 2 (5 8) and 4 (10 11 13 14)
    # entries, so row 1 gets one PAD after its last entry (position 8); with 4, row 0 gets one
    # PAD after position 4 and row 1 two after position 8.
    assert tt.hw_encode(SPEC_WT, 2, min_row_entries=3).tolist() == [5, 1, 7, 3, 9, 2, 5, 3, 7,
                                                                     3]
    assert tt.hw_encode(SPEC_WT, 2, min_row_entries=4).tolist() == [5, 1, 7, 2, 3, 9, 2, 2, 5,
                                                                     3, 7, 3]


SHAPES = [(1, 1), (1, 6), (1, 40), (5, 1), (3, 2), (6, 5), (4, 31), (3, 64), (9, 100)]


@pytest.mark.parametrize("z_bits", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
def test_hw_round_trip_and_constraints(z_bits, shape, sparsity):
    rows, cols = shape
    rng = np.random.default_rng(1000 * z_bits + 10 * rows + cols + int(100 * sparsity))
    wt = random_codes(rng, rows, cols, sparsity)
    zmax = min(2 ** z_bits - 1, cols - 1)
    for min_row in (0, 1, 3, cols + 2):
        entries = tt.hw_encode(wt, z_bits, min_row_entries=min_row)
        assert all(0 <= int(e) < 2 ** (2 + z_bits) for e in entries)
        np.testing.assert_array_equal(oracle_decode(entries, rows, cols), wt)
        np.testing.assert_array_equal(tt.hw_decode(entries, rows, cols, z_bits), wt)
        walk = oracle_stream_walk(entries, cols)
        nonpad = [w for w in walk if w[2] != 0b10]
        assert nonpad[-1][0] == rows * cols - 1                 # ends at the last position
        assert all(z <= zmax for _, _, _, z in nonpad)          # every z <= zmax
        assert all(z == 0 for _, _, w2, z in walk if w2 == 0b10)
        advances = np.diff([-1] + [p for p, _, _, _ in nonpad])
        assert advances.min() >= 1 and advances.max() <= cols
        landing = [0] * rows
        for _, r, _, _ in walk:
            landing[r] += 1
        assert min(landing) >= max(min_row, 1)
        n_entries, n_pads = oracle_entry_counts(wt, zmax, min_row)
        assert len(nonpad) == n_entries                        # fillers only where needed
        assert len(walk) - len(nonpad) == n_pads                # PADs only where needed
        stats = tt.hw_stats(entries, z_bits, rows, cols)
        assert stats["row_entries"] == landing
        assert stats["nonzeros"] == int(np.count_nonzero(wt))
        assert stats["pos"] == int(np.sum(wt == P)) and stats["neg"] == int(np.sum(wt == N))
        assert stats["pads"] == n_pads
        assert stats["fillers"] == n_entries - stats["nonzeros"]
        assert stats["entries"] == len(entries)
        assert stats["bits"] == len(entries) * (2 + z_bits)
        _, signs, distances = tt.rle_encode(wt)
        np.testing.assert_array_equal(
            tt.deepchip_to_hw(signs, distances, rows, cols, z_bits, min_row_entries=min_row),
            entries)


def test_hw_pad_lands_in_row_of_previous_entry():
    # 2 x 4, z_bits = 1. Two PADs at the start (pos -1: row 0), a POS at 1, a PAD (row 0),
    # a filler at 3 (row 0), a NEG at 5 (row 1), a filler at 7 (row 1).
    entries = [0b10, 0b10, (1 << 2) | P, 0b10, (1 << 2) | Z, (1 << 2) | N, (1 << 2) | Z]
    stats = tt.hw_stats(entries, 1, 2, 4)
    assert stats["row_entries"] == [5, 2]
    m = tt.hw_decode(entries, 2, 4, 1)
    np.testing.assert_array_equal(m, [[Z, P, Z, Z], [Z, N, Z, Z]])
    # A PAD's z is ignored by the decoder.
    np.testing.assert_array_equal(tt.hw_decode([(1 << 2) | 0b10] + entries, 2, 4, 1), m)


def test_hw_entry_and_deepchip_spec_example():
    assert tt.hw_entry(tt.NEG, 5, 3) == 0b10111
    with pytest.raises(ValueError, match=r"^z must be an integer in 0\.\.7, not 8$"):
        tt.hw_entry(tt.POS, 8, 3)
    assert tt.deepchip_to_hw([0, 0, 1, 1, 0, 0, 1, 1, 1], [1, 1, 2, 1, 3, 2, 1, 2, 1], 3, 5,
                             1).tolist() == [5, 1, 7, 3, 4, 1, 5, 3, 7, 3]


def test_hw_decode_errors():
    with pytest.raises(ValueError, match=r"^entry 1 advances to flat position 5, past the last "
                                         r"position 4 of the 1x5 matrix$"):
        tt.hw_decode([(2 << 2) | P, (2 << 2) | N], 1, 5, 2)
    with pytest.raises(ValueError, match=r"^stream ends at flat position 3 \(entry 1\), not at "
                                         r"the last position 4 of the 1x5 matrix$"):
        tt.hw_decode([(2 << 2) | P, P, 0b10], 1, 5, 2)
    with pytest.raises(ValueError, match=r"^stream ends at flat position -1 \(the stream is "
                                         r"empty\), not at the last position 4"):
        tt.hw_decode([], 1, 5, 2)
    with pytest.raises(ValueError, match=r"^entry 0 is 16, not a 4-bit entry$"):
        tt.hw_decode([16], 1, 5, 2)
    with pytest.raises(ValueError, match=r"^weight code at flat index 2 is 2 "):
        tt.hw_encode([[0, 1, 2]], 2)
    with pytest.raises(ValueError, match=r"^z_bits must be an integer in 1\.\.30, not 0$"):
        tt.hw_encode(SPEC_WT, 0)
    with pytest.raises(ValueError, match=r"^min_row_entries must be an integer in 0\.\."):
        tt.hw_encode(SPEC_WT, 2, min_row_entries=-1)
    with pytest.raises(ValueError, match=r"^distance 1 is 0; "):
        tt.deepchip_to_hw([0, 0], [1, 0], 3, 5, 2)


# --- k-bit activation quantiser -------------------------------------------------------------

def test_quantizer_tie_goes_up():
    # k = 2, a = 1/6: 3 * 1/6 + 1/2 = 1 exactly -> q = 1 (half-up).
    assert tt.quantize_act(Fraction(1, 6), 2) == 1
    assert tt.quantize_act(np.array([Fraction(1, 6), Fraction(1, 2), Fraction(5, 6)],
                                    dtype=object), 2).tolist() == [1, 2, 3]
    # k = 1, a = 1/2: the one tie a float can hold exactly; numpy's half-to-even would give 0.
    assert tt.quantize_act(0.5, 1) == 1
    assert np.round(0.5) == 0
    assert tt.quantize_act_fixed(128, 8, 1) == 1


def test_quantize_act_fixed_exhaustive_12bit():
    x = np.arange(-2048, 2048, dtype=np.int64)          # every signed 12-bit code, frac_bits = 8
    for k in range(1, 9):
        expect = [oracle_q(Fraction(int(v), 256), k) for v in x]
        assert tt.quantize_act_fixed(x, 8, k).tolist() == expect


@pytest.mark.parametrize("frac_bits", [0, 1, 5, 16, 40, 60])
def test_quantize_act_fixed_random(frac_bits):
    rng = np.random.default_rng(frac_bits)
    x = rng.integers(-2 ** 62, 2 ** 62, size=500) >> max(0, 60 - frac_bits)
    for k in (1, 3, 8, 12, 16):
        expect = [oracle_q(Fraction(int(v), 2 ** frac_bits), k) for v in x]
        assert tt.quantize_act_fixed(x, frac_bits, k).tolist() == expect
    assert tt.quantize_act_fixed(np.array([2 ** 64 - 1], dtype=np.uint64), frac_bits, 4)[0] == 15


def test_quantize_act_floats_exact():
    rng = np.random.default_rng(7)
    for k in (1, 2, 5, 8, 16):
        m = 2 ** k - 1
        # Floats nearest the rounding boundaries (n + 1/2) / m and their neighbours, where the
        # exact value decides; plus random values inside and outside [0, 1].
        n = np.arange(m)
        mid = (n + 0.5) / m
        x = np.concatenate([mid, np.nextafter(mid, 0), np.nextafter(mid, 2),
                            rng.uniform(-0.5, 1.5, 2000), [0.0, -0.0, 1.0, 5e-324, -1e300,
                                                           np.inf, -np.inf]])
        expect = [oracle_q(Fraction(float(v)) if np.isfinite(v) else (1 if v > 0 else 0), k)
                  for v in x]
        assert tt.quantize_act(x, k).tolist() == expect
        x32 = x[np.abs(x) < 1e30].astype(np.float32)
        assert tt.quantize_act(x32, k).tolist() == [oracle_q(Fraction(float(v)), k) for v in x32]
    with pytest.raises(ValueError, match=r"^activation at flat index 1 is NaN$"):
        tt.quantize_act([0.1, np.nan], 4)
    with pytest.raises(ValueError, match=r"^k must be an integer in 1\.\.16, not 0$"):
        tt.quantize_act([0.1], 0)


def test_quantize_act_large_array():
    # 1e5 values: agree with float rounding wherever the value is far from a rounding boundary
    # (where float error cannot matter), and with the Fraction oracle on the rest.
    x = np.random.default_rng(3).uniform(-0.2, 1.2, 100_000)
    q = tt.quantize_act(x, 8)
    y = 255 * np.clip(x, 0, 1) + 0.5
    far = np.abs(y - np.round(y)) > 1e-6
    assert far.sum() > 99_000
    np.testing.assert_array_equal(q[far], np.floor(y[far]).astype(np.int64))
    assert q[~far].tolist() == [oracle_q(Fraction(float(v)), 8) for v in x[~far]]


def test_quantize_act_shapes_and_ints():
    x = np.array([[-3, 0], [1, 2]])
    assert tt.quantize_act(x, 3).tolist() == [[0, 0], [7, 7]]
    assert tt.quantize_act_fixed(x, 1, 3).tolist() == [[0, 0], [4, 7]]   # 7 * 1/2 + 1/2 = 4
    assert tt.quantize_act(0.75, 2) == 2                                  # 3 * 0.75 + 0.5 = 2.75


def test_dequantize_act():
    assert tt.dequantize_act(np.arange(8), 3, exact=True).tolist() == \
        [Fraction(i, 7) for i in range(8)]
    np.testing.assert_allclose(tt.dequantize_act(np.arange(4), 2), [0, 1 / 3, 2 / 3, 1])
    assert tt.dequantize_act(5, 3, exact=True) == Fraction(5, 7)
    with pytest.raises(ValueError, match=r"^activation code at flat index 1 is 4; 2-bit codes "
                                         r"are 0\.\.3$"):
        tt.dequantize_act([3, 4], 2)


# --- format descriptor ----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"act_bits": 0}, r"^TernaryFormat\.act_bits must be an integer in 1\.\.16, not 0$"),
    ({"act_bits": 17}, r"^TernaryFormat\.act_bits must be an integer in 1\.\.16, not 17$"),
    ({"act_bits": 8.0}, r"^TernaryFormat\.act_bits must be an integer in 1\.\.16, not 8\.0$"),
    ({"scale_bits": 1}, r"^TernaryFormat\.scale_bits must be an integer in 2\.\.32, not 1$"),
    ({"scale_bits": 33}, r"^TernaryFormat\.scale_bits must be an integer in 2\.\.32, not 33$"),
    ({"scale_bits": 8, "scale_frac": 9},
     r"^TernaryFormat\.scale_frac must be an integer in 0\.\.8, not 9$"),
    ({"scale_frac": -1}, r"^TernaryFormat\.scale_frac must be an integer in 0\.\.16, not -1$"),
    ({"per_channel": 1}, r"^TernaryFormat\.per_channel must be True or False, not 1$"),
])
def test_format_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tt.TernaryFormat(**kwargs)


def test_scale_round_trip_and_rounding():
    fmt = tt.TernaryFormat(scale_bits=8, scale_frac=4)
    for code in range(1, 256):
        value = fmt.decode_scale(code)
        assert value == Fraction(code, 16)
        assert fmt.encode_scale(value) == code
        assert fmt.encode_scale(float(value)) == code
        if code < 255:
            assert fmt.encode_scale(value + Fraction(1, 32)) == code + 1     # tie goes up
            assert fmt.encode_scale(value + Fraction(1, 33)) == code
    for x in (0.3, 1 / 3, 2.71828, 15.9):
        assert fmt.encode_scale(x) == math.floor(Fraction(x) * 16 + Fraction(1, 2))
    assert fmt.encode_scale(Fraction(1, 32)) == 1
    assert fmt.encode_scale(np.float32(0.3)) == math.floor(Fraction(float(np.float32(0.3))) * 16
                                                            + Fraction(1, 2))


def test_scale_range_errors():
    fmt = tt.TernaryFormat(scale_bits=8, scale_frac=4)
    with pytest.raises(ValueError, match=r"^scale 0\.03 is too small for 8 bits with 4 fraction "
                                         r"bits: the smallest representable scale is 1/16 = "
                                         r"0\.0625$"):
        fmt.encode_scale(0.03)
    with pytest.raises(ValueError, match=r"the largest representable scale is 255/16 = 15\.9375$"):
        fmt.encode_scale(Fraction(511, 32))
    assert fmt.encode_scale(Fraction(511, 32) - Fraction(1, 1000)) == 255
    for bad in (0, -1.0, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match=r"^scale must be a positive real number, not "):
            fmt.encode_scale(bad)
    with pytest.raises(ValueError, match=r"^scale code must be an integer in 1\.\.255, not 256$"):
        fmt.decode_scale(256)
    with pytest.raises(ValueError, match=r"^scale code must be an integer in 1\.\.255, not 0$"):
        fmt.decode_scale(0)


def test_scale_codes():
    layer = tt.TernaryFormat(scale_bits=8, scale_frac=4)
    wp, wn = layer.scale_codes(0.5, 1.25, 3)
    assert wp.tolist() == [8, 8, 8] and wn.tolist() == [20, 20, 20]
    wp, wn = layer.scale_codes([0.5, 0.5], np.array([2.0, 2.0]), 2)
    assert wp.tolist() == [8, 8] and wn.tolist() == [32, 32]
    with pytest.raises(ValueError, match=r"^Wn must be one value per layer \(per_channel is "
                                         r"False\), but entry 1 is 2\.5 and entry 0 is 2\.0$"):
        layer.scale_codes(0.5, [2.0, 2.5], 2)
    with pytest.raises(ValueError, match=r"^Wp must be one value per layer "):
        layer.scale_codes([0.5, 0.501], 1.0, 2)      # differ, although both round to code 8
    chan = tt.TernaryFormat(scale_bits=8, scale_frac=4, per_channel=True)
    wp, wn = chan.scale_codes([0.5, 1.0, 1.5], 0.25, 3)
    assert wp.tolist() == [8, 16, 24] and wn.tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match=r"^Wp must have 1 or 3 entries, not 2$"):
        chan.scale_codes([0.5, 1.0], 0.25, 3)


def test_format_manifest():
    fmt = tt.TernaryFormat(act_bits=4, scale_bits=12, scale_frac=6, per_channel=True)
    d = json.loads(json.dumps(fmt.as_dict()))
    assert d["kind"] == "ternary"
    assert d["codes"] == {"0b00": "0", "0b01": "+Wp", "0b11": "-Wn", "0b10": "unused (rejected)"}
    assert d["act"]["bits"] == 4 and d["act"]["max"] == 15 and d["act"]["signed"] is False
    assert d["scale"]["bits"] == 12 and d["scale"]["frac"] == 6
    assert Fraction(d["scale"]["max"]) == Fraction(4095, 64)
    assert d["per_channel"] is True
    assert re.search(r"Wp\*S_p - Wn\*S_n", d["convention"])


# --- TTQ ------------------------------------------------------------------------------------

def oracle_ttq(w, t, per_channel):
    """Plain per-column recomputation of TTQ thresholds, codes and scales (w is K x N)."""
    k, n = w.shape
    layer_max = max(abs(float(v)) for v in w.reshape(-1))
    codes = np.zeros((k, n), dtype=np.uint8)
    deltas, wps, wns = [], [], []
    cols = [list(range(n))] if not per_channel else [[j] for j in range(n)]
    for group in cols:
        vals = [float(w[i, j]) for j in group for i in range(k)]
        delta = t * (max(abs(v) for v in vals) if per_channel else layer_max)
        pos = [v for v in vals if v > delta]
        neg = [-v for v in vals if v < -delta]
        wp = sum(pos) / len(pos) if pos else None
        wn = sum(neg) / len(neg) if neg else None
        wp, wn = (wp if wp is not None else (wn if wn is not None else 1.0),
                  wn if wn is not None else (wp if wp is not None else 1.0))
        for j in group:
            for i in range(k):
                v = float(w[i, j])
                codes[i, j] = P if v > delta else (N if v < -delta else Z)
        deltas += [delta] * len(group)
        wps += [wp] * len(group)
        wns += [wn] * len(group)
    return codes, np.array(wps), np.array(wns), np.array(deltas)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("t", [0.0, 0.05, 0.3, 0.7, 1.0])
def test_ternarize_against_oracle(per_channel, t):
    rng = np.random.default_rng(int(t * 100) + per_channel)
    w = rng.normal(size=(23, 7)) * rng.uniform(0.1, 3.0, size=7)
    w[:, 3] = 0.0                                       # all-zero channel
    w[:, 5] = np.abs(w[:, 5])                           # no negative weights
    res = tt.ternarize(w, t, per_channel=per_channel)
    codes, wp, wn, delta = oracle_ttq(w, t, per_channel)
    np.testing.assert_array_equal(res.codes, codes)
    np.testing.assert_allclose(res.wp, wp, rtol=1e-12)
    np.testing.assert_allclose(res.wn, wn, rtol=1e-12)
    np.testing.assert_allclose(res.threshold, delta, rtol=0)
    assert res.codes.dtype == np.uint8 and res.wp.shape == res.wn.shape == (7,)
    dense = res.dense()
    np.testing.assert_allclose(dense, np.where(codes == P, wp, np.where(codes == N, -wn, 0.0)))
    # The transposed layout with axis=0 gives the transposed result.
    res_t = tt.ternarize(w.T, t, per_channel=per_channel, axis=0)
    np.testing.assert_array_equal(res_t.codes, codes.T)
    np.testing.assert_allclose(res_t.wp, wp, rtol=1e-12)
    np.testing.assert_allclose(res_t.dense(), dense.T)


def test_ternarize_empty_classes():
    w = np.array([[0.5, 0.0], [0.1, 0.0], [0.9, 0.0]])
    res = tt.ternarize(w, 0.2, per_channel=True)
    # Channel 0: no negatives -> Wn = Wp = mean(0.5, 0.9); channel 1: all zero -> both 1.0.
    np.testing.assert_allclose(res.wp, [0.7, 1.0])
    np.testing.assert_allclose(res.wn, [0.7, 1.0])
    assert res.codes.tolist() == [[P, Z], [Z, Z], [P, Z]]
    res = tt.ternarize(w, 1.0)                          # t = 1: nothing exceeds max|w|
    assert not res.codes.any()
    np.testing.assert_array_equal(res.wp, [1.0, 1.0])


def test_ternarize_validation():
    for bad in (-0.1, 1.5, float("nan"), True, "0.1"):
        with pytest.raises(ValueError, match=r"^t must be a real number in \[0, 1\], not "):
            tt.ternarize(np.ones((2, 2)), bad)
    with pytest.raises(ValueError, match=r"^weights must be a non-empty 2-D real matrix"):
        tt.ternarize(np.ones(4))
    with pytest.raises(ValueError, match=r"^weights must be finite$"):
        tt.ternarize(np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match=r"^axis must be 0, 1, -1 or -2, not 2$"):
        tt.ternarize(np.ones((2, 2)), axis=2)
