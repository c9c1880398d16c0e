# amaranth: UnusedElaboratable=no
"""SystolicArray (hdl/array/systolic.py) of IntMacPEs against the array twin (sim/array.py)."""

import numpy as np
import pytest

from tessera.hdl.arith.intmac import IntMacPE
from tessera.hdl.array.systolic import SystolicArray
from tessera.sim.array import IntArrayModel
from tessera.sim.intmac import to_codes
from tests.helpers import simulate


def run_tiles(rows, cols, tiles, period, acc_bits=32):
    """Feed tiles (a: K x rows, b: K x cols signed ints) every ``period`` cycles; collect rows."""
    dut = SystolicArray(rows=rows, cols=cols,
                        pe=lambda: IntMacPE(a_bits=8, b_bits=8, acc_bits=acc_bits))
    last_cycles, out = [], []
    total = len(tiles) * period + dut.drain_latency + rows + 5

    async def drive(ctx):
        cycle = 0
        for a, b in tiles:
            k = len(a)
            for j in range(period):
                if j < k:
                    for r in range(rows):
                        ctx.set(dut.a[r], int(a[j, r]))
                    for c in range(cols):
                        ctx.set(dut.b[c], int(b[j, c]))
                    ctx.set(dut.valid, 1)
                    ctx.set(dut.first, int(j == 0))
                    ctx.set(dut.last, int(j == k - 1))
                    if j == k - 1:
                        last_cycles.append(cycle)
                else:
                    ctx.set(dut.valid, 0)
                await ctx.tick()
                cycle += 1
        ctx.set(dut.valid, 0)

    async def collect(ctx):
        for cycle in range(total):
            if ctx.get(dut.out_valid):
                out.append((cycle, ctx.get(dut.out_row),
                            [ctx.get(dut.out_data[c]) for c in range(cols)]))
            await ctx.tick()

    simulate(dut, drive, collect)
    return dut, last_cycles, out


@pytest.mark.parametrize("rows,cols,k,period", [
    (1, 1, 1, 1), (2, 3, 3, 3), (4, 4, 4, 4), (4, 4, 9, 9), (3, 5, 5, 5), (5, 2, 7, 9),
    (4, 4, 2, 4),   # k < rows: the sequencer pads each tile to max(rows, cols) slots
])
def test_tiles_back_to_back(rows, cols, k, period):
    rng = np.random.default_rng(rows * 31 + cols * 7 + k)
    tiles = [(rng.integers(-128, 128, (k, rows)), rng.integers(-128, 128, (k, cols)))
             for _ in range(4)]
    tiles.append((np.full((k, rows), -128), np.full((k, cols), -128)))
    dut, last_cycles, out = run_tiles(rows, cols, tiles, period)
    model = IntArrayModel(a_bits=8, b_bits=8, acc_bits=32)
    assert len(out) == rows * len(tiles)
    for t, (a, b) in enumerate(tiles):
        want = model.tile(to_codes(a, 8), to_codes(b, 8))
        for r in range(rows):
            cycle, row, data = out[t * rows + r]
            assert cycle == last_cycles[t] + dut.drain_latency + r, "drain timing"
            assert row == r
            np.testing.assert_array_equal(to_codes(np.array(data), 32), want[r])


def test_twin_tile_against_matmul():
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (300, 6))
    b = rng.integers(-128, 128, (300, 7))
    got = IntArrayModel(a_bits=8, b_bits=8, acc_bits=32).tile(to_codes(a, 8), to_codes(b, 8))
    np.testing.assert_array_equal(got, to_codes(a.T @ b, 32))


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(rows=0, cols=2), ValueError, r"^rows must be an integer 1\.\.64, not 0$"),
    (dict(rows=2, cols=65), ValueError, r"^cols must be an integer 1\.\.64, not 65$"),
    (dict(rows=2, cols=2, pe=3), TypeError, r"^pe must be a callable returning a PE, not 3$"),
])
def test_parameter_errors(kw, exc, msg):
    kw.setdefault("pe", lambda: IntMacPE())
    with pytest.raises(exc, match=msg):
        SystolicArray(**kw)


def test_mixed_pe_signatures_rejected():
    widths = iter([32, 24, 32, 32])
    with pytest.raises(ValueError, match=r"^pe must return PEs of one signature and latency$"):
        SystolicArray(rows=2, cols=2, pe=lambda: IntMacPE(acc_bits=next(widths)))


def test_pe_subclass_without_latency_is_rejected():
    from amaranth import signed
    from tessera.hdl.array.pe import PE, PESignature
    with pytest.raises(TypeError, match=r"^PE subclass NoLatency must define `latency`$"):
        class NoLatency(PE):
            def __init__(self):
                super().__init__(PESignature(a_shape=signed(8), b_shape=signed(8),
                                             acc_shape=signed(16)))
