# amaranth: UnusedElaboratable=no
"""TernaryTree/TernaryDot (hdl/arith/ternary_tree.py) against the twin (sim/ternary_tree.py),
and the twin against an independent reference (decoded {-1, 0, +1} weights, matmuls, Python ints).
"""

import itertools
import re

import numpy as np
import pytest
from amaranth import Value
from amaranth.back import rtlil, verilog

from tessera.hdl.arith.ternary_tree import TernaryDot, TernaryTree
from tessera.sim import ternary_tree as tt
from helpers import simulate


#: Code -> weight, written out independently of the twin: 0b00 = 0, 0b01 = +1, 0b10 = 0 (unused),
#: 0b11 = -1.
DECODE = np.array([0, 1, 0, -1])


def ref_sums(a, codes):
    """Reference class sums via matmuls with the decoded weights' positive and negative parts."""
    wt = DECODE[codes]
    return a @ (wt == 1).astype(np.int64).T, a @ (wt == -1).astype(np.int64).T


def ref_dot(a_words, w_words, wp, wn, acc_bits):
    """Reference dot product with Python ints: sum of a * weight, scaled per class, then wrapped."""
    sp = sum(int(x) for x, c in zip(np.ravel(a_words), np.ravel(w_words)) if DECODE[c] == 1)
    sn = sum(int(x) for x, c in zip(np.ravel(a_words), np.ravel(w_words)) if DECODE[c] == -1)
    v = (int(wp) * sp - int(wn) * sn) % (1 << acc_bits)
    return v - (1 << acc_bits) if v >> (acc_bits - 1) else v


def pack(values, bits):
    return sum(int(v) << (i * bits) for i, v in enumerate(values))


# -- twin against the independent reference ------------------------------------------------------
def test_twin_exhaustive_4_inputs_4_bit():
    """Every 4-bit activation vector (16**4) x every code pattern (4**4, i.e. the 3**4 ternary
    patterns plus those using the unused code 0b10)."""
    acts = np.array(list(itertools.product(range(16), repeat=4)))
    codes = np.array(list(itertools.product(range(4), repeat=4)))
    want_p, want_n = ref_sums(acts, codes)
    # The signed dot product is the difference of the class sums.
    np.testing.assert_array_equal(want_p - want_n, acts @ DECODE[codes].T)
    for k, pattern in enumerate(codes):
        sp, sn = tt.tree_sums(acts, pattern)
        np.testing.assert_array_equal(sp, want_p[:, k])
        np.testing.assert_array_equal(sn, want_n[:, k])


@pytest.mark.parametrize("inputs", [1, 2, 7, 64, 255, 256])
def test_twin_random_8_bit(inputs):
    rng = np.random.default_rng(inputs)
    a = rng.integers(0, 256, (500, inputs))
    w = rng.integers(0, 4, (500, inputs))
    w[0], a[0] = 0b01, 255
    w[1], a[1] = 0b11, 255
    sp, sn = tt.tree_sums(a, w)
    # Row k of the twin against entry (k, k) of the all-rows x all-patterns reference matmul.
    rp, rn = ref_sums(a, w)
    np.testing.assert_array_equal(sp, np.diagonal(rp))
    np.testing.assert_array_equal(sn, np.diagonal(rn))
    assert sp[0] == sn[1] == 255 * inputs < 1 << tt.sum_bits(inputs, 8)
    assert 255 * inputs >= 1 << (tt.sum_bits(inputs, 8) - 1)


def test_sum_bits():
    assert [tt.sum_bits(n, b) for n, b in [(1, 1), (2, 1), (3, 1), (4, 8), (16, 8), (256, 16)]] \
        == [1, 2, 2, 10, 12, 24]
    assert tt.accum_bits(32) == 32


def test_twin_dot_against_python_ints():
    rng = np.random.default_rng(7)
    for acc_bits, scale_bits in [(16, 8), (32, 8), (64, 32), (8, 2)]:
        for _ in range(60):
            inputs, words = int(rng.integers(1, 40)), int(rng.integers(1, 20))
            a = rng.integers(0, 1 << 16, (words, inputs))
            w = rng.integers(0, 4, (words, inputs))
            wp, wn = (int(x) for x in rng.integers(0, 1 << scale_bits, 2, dtype=np.uint64))
            assert tt.dot(a, w, wp, wn, acc_bits) == ref_dot(a, w, wp, wn, acc_bits)
    # The largest products: 256 x 0xffff activations, 32-bit scales, wrapped to 64 bits.
    a = np.full((3, 256), 0xffff)
    for w in (np.full((3, 256), 0b01), np.full((3, 256), 0b11)):
        got = tt.dot(a, w, 2**32 - 1, 2**32 - 1, 64)
        assert got == ref_dot(a, w, 2**32 - 1, 2**32 - 1, 64)


def test_twin_dot_vectorized_and_long():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 8, (10, 5, 3))
    w = rng.integers(0, 4, (10, 5, 3))
    wp, wn = rng.integers(0, 256, 10), rng.integers(0, 256, 10)
    got = tt.dot(a, w, wp, wn, 16)
    np.testing.assert_array_equal(got, [ref_dot(a[i], w[i], wp[i], wn[i], 16) for i in range(10)])
    # 2**17 + 5 one-input words of 1: the class sum is exact past 2**16 words.
    n = (1 << 17) + 5
    ones = np.ones((n, 1), dtype=np.int64)
    assert tt.dot(ones, ones, 1, 0, 32) == n
    assert tt.dot(ones, ones, 1, 0, 16) == 5


def test_twin_rejects_bad_codes():
    with pytest.raises(ValueError, match=r"^w must hold 2-bit weight codes 0\.\.3$"):
        tt.tree_sums([1, 2], [1, 4])
    with pytest.raises(ValueError, match=r"^a must hold unsigned activation codes \(>= 0\)$"):
        tt.tree_sums([-1, 2], [1, 1])


# -- TernaryTree in the Amaranth simulator -------------------------------------------------------
def run_tree(dut, words):
    """Stream ``words`` = [(valid, a, w, tag), ...] one per cycle; return per-cycle outputs.

    Returns a list with, for each cycle, (out_valid, sp, sn, out_tag) as seen in that cycle,
    covering ``len(words) + latency + 2`` cycles.
    """
    a_port, w_port = Value.cast(dut.a), Value.cast(dut.w)
    seen = []
    idle = (0, [0] * dut.inputs, [0] * dut.inputs, 0)

    async def bench(ctx):
        for valid, a, w, tag in words + [idle] * (dut.latency + 2):
            ctx.set(dut.valid, valid)
            ctx.set(a_port, pack(a, dut.act_bits))
            ctx.set(w_port, pack(w, 2))
            ctx.set(dut.tag, tag)
            seen.append((ctx.get(dut.out_valid), ctx.get(dut.sp), ctx.get(dut.sn),
                         ctx.get(dut.out_tag)))
            await ctx.tick()

    simulate(dut, bench)
    return seen


def check_tree(dut, words):
    """Run ``words`` through ``dut``; check out_valid timing, sums (vs the twin) and tags."""
    seen = run_tree(dut, words)
    lat = dut.latency
    valid_cycles = [t for t, s in enumerate(seen) if s[0]]
    assert valid_cycles == [t + lat for t, word in enumerate(words) if word[0]]
    a = np.array([word[1] for word in words])
    w = np.array([word[2] for word in words])
    sp, sn = tt.tree_sums(a, w)
    for t, (valid, _, _, tag) in enumerate(words):
        if valid:
            assert seen[t + lat][1:] == (sp[t], sn[t], tag), f"word {t}"


@pytest.mark.parametrize("inputs,latency", [(2, 1), (3, 2)])
def test_tree_exhaustive_small(inputs, latency):
    """All 3-bit activation vectors x all 4**inputs code patterns (0b10 included), back to
    back: initiation interval 1, the exact latency and the tag on every word."""
    dut = TernaryTree(inputs=inputs, act_bits=3, tag_bits=16)
    assert dut.latency == latency and dut.sum_bits == (inputs * 7).bit_length()
    words = [(1, list(a), list(w), k & 0xffff) for k, (a, w) in enumerate(itertools.product(
        itertools.product(range(8), repeat=inputs), itertools.product(range(4), repeat=inputs)))]
    check_tree(dut, words)


@pytest.mark.parametrize("inputs,latency", [(1, 1), (5, 3), (16, 4), (64, 6)])
def test_tree_random_8_bit(inputs, latency):
    rng = np.random.default_rng(100 + inputs)
    dut = TernaryTree(inputs=inputs, act_bits=8, tag_bits=5)
    assert dut.latency == latency
    full = [255] * inputs
    words = [(1, full, [0b01] * inputs, 1), (1, full, [0b11] * inputs, 2),
             (1, full, [0b10] * inputs, 3), (1, full, [0b01, 0b11] * (inputs // 2) + [0b01]
                                             * (inputs % 2), 4)]
    for k in range(800):
        # About one cycle in five is a bubble (valid low, random data that must be ignored).
        words.append((int(rng.random() > 0.2), [int(x) for x in rng.integers(0, 256, inputs)],
                      [int(x) for x in rng.integers(0, 4, inputs)], k & 31))
    check_tree(dut, words)
    seen = run_tree(TernaryTree(inputs=inputs, act_bits=8), words[:2])
    assert seen[latency][1] == seen[latency + 1][2] == 255 * inputs
    assert seen[latency][3] == 0  # tag_bits=0: out_tag is constant 0


def test_tree_level_widths_are_minimal():
    """Node registers hold exactly bit_length(leaves * 255) bits (inputs=5: levels 3)."""
    text = verilog.convert(TernaryTree(inputs=5, act_bits=8), name="t", emit_src=False)
    widths = {name: int(hi) + 1 for hi, name in
              re.findall(r"^\s*(?:reg|wire) \[(\d+):0\] ([pn]_l\d_\d)\b", text, re.M)}
    want = {"l0_0": 9, "l0_1": 9, "l0_2": 8, "l1_0": 10, "l1_1": 8, "l2_0": 11}
    assert widths == {f"{c}_{k}": v for c in "pn" for k, v in want.items()}


# -- TernaryDot in the Amaranth simulator --------------------------------------------------------
def run_dot(dut, dots, *, rng=None, bubble=0.0, scale_noise=False):
    """Stream dot products back to back; check result_valid timing; return the results.

    ``dots`` is a list of (a_words, w_words, wp, wn). With ``bubble`` > 0 idle cycles (valid
    low, random data) are inserted with that probability before each word. With
    ``scale_noise`` wp/wn are random on every word but the last (they are sampled with it).
    """
    a_port, w_port = Value.cast(dut.a), Value.cast(dut.w)
    smax = (1 << dut.scale_bits) - 1
    cycles = []  # (valid, first, last, a, w, wp, wn)
    last_cycles = []
    for a_words, w_words, wp, wn in dots:
        n = len(a_words)
        for j in range(n):
            while rng is not None and rng.random() < bubble:
                cycles.append((0, int(rng.integers(2)), int(rng.integers(2)),
                               rng.integers(0, 1 << dut.act_bits, dut.inputs),
                               rng.integers(0, 4, dut.inputs),
                               int(rng.integers(smax + 1)), int(rng.integers(smax + 1))))
            sw = (wp, wn) if j == n - 1 or not scale_noise else \
                (int(rng.integers(smax + 1)), int(rng.integers(smax + 1)))
            if j == n - 1:
                last_cycles.append(len(cycles))
            cycles.append((1, int(j == 0), int(j == n - 1), a_words[j], w_words[j], *sw))
    results, valid_cycles = [], []

    async def bench(ctx):
        for t in range(len(cycles) + dut.latency + 2):
            if t < len(cycles):
                valid, first, last, a, w, wp, wn = cycles[t]
            else:
                valid = first = last = wp = wn = 0
                a = w = [0] * dut.inputs
            ctx.set(dut.valid, valid)
            ctx.set(dut.first, first)
            ctx.set(dut.last, last)
            ctx.set(a_port, pack(a, dut.act_bits))
            ctx.set(w_port, pack(w, 2))
            ctx.set(dut.wp, wp)
            ctx.set(dut.wn, wn)
            if ctx.get(dut.result_valid):
                results.append(ctx.get(dut.result))
                valid_cycles.append(t)
            await ctx.tick()

    simulate(dut, bench)
    assert valid_cycles == [t + dut.latency for t in last_cycles], \
        "result_valid does not follow each last word by exactly `latency` cycles"
    return results


def random_dots(rng, n, inputs, act_bits, scale_bits, max_words=6):
    amax, smax = (1 << act_bits) - 1, (1 << scale_bits) - 1
    dots = []
    for _ in range(n):
        words = int(rng.integers(1, max_words + 1))
        dots.append((rng.integers(0, amax + 1, (words, inputs)),
                     rng.integers(0, 4, (words, inputs)),
                     int(rng.integers(smax + 1)), int(rng.integers(smax + 1))))
    # Extremes: full-scale activations in one class with the largest scale, one word and many.
    full = np.full((9, inputs), amax)
    dots += [(full, np.full((9, inputs), 0b01), smax, smax),
             (full[:1], np.full((1, inputs), 0b11), smax, smax),
             (full, np.full((9, inputs), 0b11), 0, smax),
             (full[:3], np.full((3, inputs), 0b10), smax, smax)]
    return dots


def check_dot(dut, dots, **kw):
    got = run_dot(dut, dots, **kw)
    want = [int(tt.dot(a, w, wp, wn, dut.acc_bits)) for a, w, wp, wn in dots]
    np.testing.assert_array_equal(got, want)
    # The twin, in turn, against Python ints.
    assert want == [ref_dot(a, w, wp, wn, dut.acc_bits) for a, w, wp, wn in dots]
    return got


@pytest.mark.parametrize("inputs,act_bits,acc_bits,scale_bits,latency", [
    (16, 8, 16, 8, 7),    # 16-bit results: wp * S_p of up to 2**20 wraps
    (5, 8, 32, 8, 6),
    (1, 4, 8, 2, 4),
    (3, 16, 64, 32, 5),   # the widest scales and results
])
def test_dot_back_to_back(inputs, act_bits, acc_bits, scale_bits, latency):
    rng = np.random.default_rng(inputs * 1000 + acc_bits)
    dut = TernaryDot(inputs=inputs, act_bits=act_bits, acc_bits=acc_bits, scale_bits=scale_bits)
    assert (dut.latency, dut.ii) == (latency, 1)
    dots = random_dots(rng, 150, inputs, act_bits, scale_bits)
    got = check_dot(dut, dots)
    if acc_bits == 16:
        # The test must exercise the wrap: some result differs from the unwrapped value.
        assert any(r != ref_dot(a, w, wp, wn, 80) for r, (a, w, wp, wn) in zip(got, dots))


def test_dot_bubbles_and_scale_sampled_with_last_word():
    rng = np.random.default_rng(11)
    dut = TernaryDot(inputs=6, act_bits=8, acc_bits=16, scale_bits=8)
    check_dot(dut, random_dots(rng, 150, 6, 8, 8), rng=rng, bubble=0.3, scale_noise=True)


def test_dot_exact_after_65536_words():
    """2**17 + 5 words with S_p = 1 each: the accumulators (accum_bits = acc_bits) keep the
    whole sum, 3 * (2**17 + 5) in the 32-bit result (issue 20: they used to be sum_bits + 16 =
    17 bits wide and wrapped to 5)."""
    dut = TernaryDot(inputs=1, act_bits=1, acc_bits=32, scale_bits=2)
    assert dut.accum_bits == 32
    n = (1 << 17) + 5
    seen = []

    async def bench(ctx):
        ctx.set(dut.valid, 1)
        ctx.set(dut.a, [1])
        ctx.set(dut.w, [0b01])
        ctx.set(dut.wp, 3)
        ctx.set(dut.first, 1)
        await ctx.tick()
        ctx.set(dut.first, 0)
        await ctx.tick().repeat(n - 2)
        ctx.set(dut.last, 1)
        await ctx.tick()
        ctx.set(dut.valid, 0)
        for _ in range(dut.latency + 1):
            seen.append((ctx.get(dut.result_valid), ctx.get(dut.result)))
            await ctx.tick()

    simulate(dut, bench)
    ones = np.ones((n, 1), dtype=np.int64)
    want = int(tt.dot(ones, ones, 3, 0, 32))
    assert want == 3 * n
    assert seen[dut.latency - 1] == (1, want)
    assert [v for v, _ in seen] == [int(k == dut.latency - 1) for k in range(dut.latency + 1)]


# -- structure ----------------------------------------------------------------------------------
def mul_cells(design):
    return len(re.findall(r"^\s*cell \$mul\b", rtlil.convert(design), re.M))


def mul_operators(design):
    """``*`` operators in the Verilog, ignoring ``(* attr *)``, comments and ``@*``."""
    text = verilog.convert(design, name="top", emit_src=False)
    return len(re.findall(r"\*", re.sub(r"\(\*.*?\*\)|/\*.*?\*/|@\*", "", text)))


def test_no_multiplier_in_tree_two_in_dot():
    assert mul_cells(TernaryTree(inputs=16, act_bits=8, tag_bits=3)) == 0
    assert mul_cells(TernaryTree(inputs=1, act_bits=16)) == 0
    assert mul_operators(TernaryTree(inputs=16, act_bits=8)) == 0
    assert mul_cells(TernaryDot(inputs=16, act_bits=8)) == 2
    assert mul_cells(TernaryDot(inputs=1, act_bits=1, acc_bits=64, scale_bits=32)) == 2
    assert mul_operators(TernaryDot(inputs=16, act_bits=8)) == 2


@pytest.mark.parametrize("name,design", [
    ("ternary_tree", lambda: TernaryTree(inputs=16, act_bits=8, tag_bits=4)),
    ("ternary_dot", lambda: TernaryDot(inputs=16, act_bits=8)),
])
def test_verilator_lint(tmp_path, name, design):
    from tessera.sim.verilator import lint
    path = tmp_path / f"{name}.v"
    path.write_text(verilog.convert(design(), name=name, emit_src=False))
    res = lint([path], name)
    assert res.ok, res.summary()


@pytest.mark.parametrize("cls,kw,msg", [
    (TernaryTree, dict(inputs=0, act_bits=8), r"^inputs must be an integer 1\.\.256, not 0$"),
    (TernaryTree, dict(inputs=257, act_bits=8), r"^inputs must be an integer 1\.\.256, not 257$"),
    (TernaryTree, dict(inputs=4, act_bits=17), r"^act_bits must be an integer 1\.\.16, not 17$"),
    (TernaryTree, dict(inputs=4, act_bits=True),
     r"^act_bits must be an integer 1\.\.16, not True$"),
    (TernaryTree, dict(inputs=4, act_bits=8, tag_bits=65),
     r"^tag_bits must be an integer 0\.\.64, not 65$"),
    (TernaryTree, dict(inputs="4", act_bits=8), r"^inputs must be an integer 1\.\.256, not '4'$"),
    (TernaryDot, dict(inputs=4, act_bits=0), r"^act_bits must be an integer 1\.\.16, not 0$"),
    (TernaryDot, dict(inputs=4, act_bits=8, acc_bits=7),
     r"^acc_bits must be an integer 8\.\.64, not 7$"),
    (TernaryDot, dict(inputs=4, act_bits=8, acc_bits=65),
     r"^acc_bits must be an integer 8\.\.64, not 65$"),
    (TernaryDot, dict(inputs=4, act_bits=8, scale_bits=1),
     r"^scale_bits must be an integer 2\.\.32, not 1$"),
    (TernaryDot, dict(inputs=4, act_bits=8, scale_bits=33),
     r"^scale_bits must be an integer 2\.\.32, not 33$"),
])
def test_parameter_errors(cls, kw, msg):
    with pytest.raises(ValueError, match=msg):
        cls(**kw)
