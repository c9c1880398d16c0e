# amaranth: UnusedElaboratable=no
"""WSArray (hdl/array/ws.py) against its twin (sim/ws_array.py) cycle for cycle, and the twin
against NumPy's matmul."""

import itertools
import re

import numpy as np
import pytest

from tessera.hdl.array.ws import WSArray
from tessera.sim.ws_array import (WSArrayTwin, gemm_results, gemm_schedule, idle, reference)
from tests.helpers import simulate


CTRL = ("valid", "first", "last", "swap", "w_valid")


def run_rtl(dut, cycles, tail):
    """Drive ``cycles`` (then ``tail`` idle cycles) into ``dut``; ``result`` and
    ``result_valid`` of every cycle, as the twin returns them."""
    R, C = dut.rows, dut.cols
    n = len(cycles) + tail
    res = np.zeros((n, C), dtype=np.int64)
    rv = np.zeros((n, C), dtype=np.int64)
    rest = idle(R, C)

    async def bench(ctx):
        for t in range(n):
            x = cycles[t] if t < len(cycles) else rest
            for r in range(R):
                ctx.set(dut.a[r], int(x["a"][r]))
            for c in range(C):
                ctx.set(dut.w_in[c], int(x["w_in"][c]))
            for k in CTRL:
                ctx.set(getattr(dut, k), int(x[k]))
            v = ctx.get(dut.result_valid)
            for c in range(C):
                res[t, c] = ctx.get(dut.result[c])
                rv[t, c] = (v >> c) & 1
            await ctx.tick()

    simulate(dut, bench)
    return res, rv


def check(params, cycles):
    """RTL = twin in every cycle; returns the twin's outputs."""
    dut = WSArray(**params)
    twin = WSArrayTwin(**params)
    tail = twin.latency + dut.cols
    want = twin.run(cycles, tail)
    got = run_rtl(dut, cycles, tail)
    for name, w, g in zip(("result", "result_valid"), want, got):
        bad = np.argwhere(w != g)
        assert not len(bad), f"{name} differs first in cycle {bad[0][0]}, column {bad[0][1]}"
    return want


def operands(rng, shape, bits, corners=False):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = rng.integers(lo, hi + 1, shape)
    if corners:                       # whole rows of the extremes and zeros
        for i, v in zip(range(0, shape[0], 3), itertools.cycle((lo, hi, 0))):
            x[i] = v
    return x


# -- RTL = twin = matmul ------------------------------------------------------------------------
@pytest.mark.parametrize("rows,cols,bits,depth,m,k", [
    (1, 1, 8, 1, 3, 5),
    (2, 3, 8, 2, 4, 7),        # D = R: tiles of R vectors, weight bursts back to back
    (3, 2, 8, 5, 10, 9),       # D > R
    (4, 4, 8, 4, 8, 16),
    (4, 4, 8, 2, 6, 12),       # D < R: idle cycles pad each tile to R
    (8, 8, 8, 8, 16, 24),
    (3, 2, 16, 3, 6, 9),
    (4, 4, 16, 4, 4, 12),
])
def test_gemm_rtl_equals_twin_and_matmul(rows, cols, bits, depth, m, k):
    """Several K tiles per output block, back to back (a swap on every tile's first vector,
    the next tile's burst under it), seeded operands with rows of the extremes and zeros."""
    rng = np.random.default_rng(rows * 100 + cols * 10 + bits + depth)
    a = operands(rng, (m, k), bits, corners=True)
    w = operands(rng, (k, cols), bits, corners=True)
    acc_bits = 2 * bits + 8
    params = dict(rows=rows, cols=cols, a_bits=bits, b_bits=bits, acc_bits=acc_bits,
                  acc_depth=depth)
    cycles = gemm_schedule(a, w, rows=rows, acc_depth=depth)
    res, rv = check(params, cycles)
    np.testing.assert_array_equal(gemm_results(res, rv, m), reference(a, w, acc_bits))
    # the documented timing: block b's first vector in cycle t0 = rows + b J P, its output
    # row i of column c in cycle t0 + (J - 1) P + i + rows + 3 + c
    J, P = -(-k // rows), max(depth, rows)
    for c in range(cols):
        want = [rows + b * J * P + (J - 1) * P + i + rows + 3 + c
                for b in range(-(-m // depth)) for i in range(depth)]
        assert np.flatnonzero(rv[:, c]).tolist() == want


def test_most_negative_everywhere_wraps_the_accumulators():
    """(-128) x (-128) in every PE over 6 K tiles of an 8x8 array: the 19-bit psum is exact
    (8 * 2**14 = 2**17), the 19-bit accumulator (the least allowed) wraps."""
    rows = cols = 8
    a = np.full((8, 48), -128)
    w = np.full((48, cols), -128)
    params = dict(rows=rows, cols=cols, a_bits=8, b_bits=8, acc_bits=19, acc_depth=8)
    res, rv = check(params, gemm_schedule(a, w, rows=rows, acc_depth=8))
    got = gemm_results(res, rv, 8)
    np.testing.assert_array_equal(got, reference(a, w, 19))
    # 6 tiles x 8 x 2**14 = 3 * 2**18 = 2**18 (mod 2**19), i.e. -2**18 as a signed 19-bit sum
    assert (got == -(1 << 18)).all()


def test_all_max_and_zero_tiles_16_bit():
    """16-bit extremes: the max x max, min x min and zero tiles, acc_bits 48."""
    rows, cols = 4, 3
    lo, hi = -(1 << 15), (1 << 15) - 1
    a = np.array([[hi] * 8, [lo] * 8, [0] * 8, [hi, lo] * 4])
    w = np.array([[hi, lo, 0]] * 8)
    params = dict(rows=rows, cols=cols, a_bits=16, b_bits=16, acc_bits=34, acc_depth=4)
    res, rv = check(params, gemm_schedule(a, w, rows=rows, acc_depth=4))
    np.testing.assert_array_equal(gemm_results(res, rv, 4), reference(a, w, 34))


@pytest.mark.parametrize("rows,cols", [(2, 2), (3, 1)])
def test_exhaustive_2bit(rows, cols):
    """Every 2-bit weight tile against every 2-bit activation vector: 2**12 operand
    combinations for 2x2 and for 3x1, one vector per cycle, each its own sum (first and last),
    a swap on each tile's first vector with the next tile's burst under the current tile; the
    accumulator has the least width allowed (2 + 2 + ceil(log2(rows)) bits), which holds every
    dot product exactly."""
    vals = (-2, -1, 0, 1)
    vecs = list(itertools.product(vals, repeat=rows))
    tiles = [np.array(t).reshape(rows, cols)
             for t in itertools.product(vals, repeat=rows * cols)]
    cycles = [idle(rows, cols) for _ in range(rows + len(tiles) * len(vecs))]
    for n, t in enumerate(tiles):
        t0 = rows + n * len(vecs)
        for i in range(rows):
            cycles[t0 - (rows if n == 0 else len(vecs)) + i].update(
                w_valid=1, w_in=[int(v) for v in t[rows - 1 - i]])
        for i, v in enumerate(vecs):
            cycles[t0 + i].update(a=list(v), valid=1, first=1, last=1, swap=int(i == 0))
    acc_bits = 4 + (rows - 1).bit_length()
    params = dict(rows=rows, cols=cols, a_bits=2, b_bits=2, acc_bits=acc_bits, acc_depth=1)
    res, rv = check(params, cycles)
    want = np.concatenate([np.array(vecs) @ t for t in tiles])
    np.testing.assert_array_equal(gemm_results(res, rv, len(want)), want)


def test_gaps_and_early_bursts():
    """Idle cycles between tiles, ``valid`` low inside a tile, a burst with gaps, and a swap
    with no new burst (re-activates the same tile): RTL = twin."""
    rows, cols = 3, 2
    rng = np.random.default_rng(11)
    cycles = gemm_schedule(operands(rng, (4, 9), 8), operands(rng, (9, cols), 8), rows=rows,
                           acc_depth=4, gap=3)
    extra = [idle(rows, cols) for _ in range(12)]
    for t in (0, 2, 5):                               # a burst with gaps
        extra[t].update(w_valid=1, w_in=[int(v) for v in rng.integers(-128, 128, cols)])
    for t in range(7, 12):                            # vectors, some invalid, swaps
        extra[t].update(a=[int(v) for v in rng.integers(-128, 128, rows)],
                        valid=int(t != 9), first=int(t == 7), last=int(t in (8, 11)),
                        swap=int(t in (7, 10)))
    check(dict(rows=rows, cols=cols, acc_depth=1), cycles + extra)


# -- the twin -----------------------------------------------------------------------------------
def test_twin_against_matmul_long_k():
    rng = np.random.default_rng(3)
    a = operands(rng, (20, 300), 8)
    w = operands(rng, (300, 5), 8)
    twin = WSArrayTwin(rows=6, cols=5, acc_bits=24, acc_depth=7)
    res, rv = twin.run(gemm_schedule(a, w, rows=6, acc_depth=7))
    np.testing.assert_array_equal(gemm_results(res, rv, 20), reference(a, w, 24))


def test_twin_rejects_swap_during_burst():
    cycles = [idle(2, 1) for _ in range(4)]
    cycles[0].update(w_valid=1)
    cycles[1].update(swap=1)
    with pytest.raises(ValueError, match=r"^cycle 1: swap while a weight burst is under way"):
        WSArrayTwin(rows=2, cols=1).run(cycles)


# -- parameters ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,msg", [
    (dict(rows=0, cols=1), "rows must be an integer 1..32, not 0"),
    (dict(rows=33, cols=1), "rows must be an integer 1..32, not 33"),
    (dict(rows=2, cols=True), "cols must be an integer 1..32, not True"),
    (dict(rows=2, cols=2, a_bits=17), "a_bits must be an integer 2..16, not 17"),
    (dict(rows=2, cols=2, b_bits=1), "b_bits must be an integer 2..16, not 1"),
    (dict(rows=8, cols=2, acc_bits=18),
     "acc_bits must be an integer 19..48 (a_bits + b_bits + ceil(log2(rows)) at least), not 18"),
    (dict(rows=8, cols=2, acc_bits=49), "acc_bits must be an integer 19..48"),
    (dict(rows=2, cols=2, acc_depth=0), "acc_depth must be an integer 1..64, not 0"),
    (dict(rows=2, cols=2, acc_depth="4"), "acc_depth must be an integer 1..64, not '4'"),
])
def test_bad_parameters(kwargs, msg):
    with pytest.raises(ValueError, match="^" + re.escape(msg)):
        WSArray(**kwargs)


def test_properties():
    dut = WSArray(rows=8, cols=4, acc_depth=8)
    assert (dut.latency, dut.psum_bits, dut.min_tile_vectors) == (11, 19, 8)


# -- generated Verilog --------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 8])
def test_verilog_lints_clean_8x8_int8(tmp_path, depth):
    """An int8 8x8 array (one accumulator, or rings of 8, per column): `verilator --lint-only
    -Wall` with the repo's documented waivers (tb/waivers.vlt) is clean."""
    from amaranth.back import verilog

    from tessera.sim.verilator import lint
    path = tmp_path / "ws_array.v"
    path.write_text(verilog.convert(WSArray(rows=8, cols=8, acc_depth=depth), name="ws_array",
                                    emit_src=False))
    res = lint([path], "ws_array")
    assert res.ok, res.summary()
