"""cocotb 2 testbench for the floating-point units (`tessera.hdl.arith.fpmul` ... `tessera.hdl.arith.fpmac`).

Driven by ``tests/test_fp_rtl.py``: the unit's Verilog top is built with Verilator, and the
vectors come from the ``.npz`` file named by the environment variable ``FPUNIT_VECTORS``:

* ``mode``: ``"pipe"`` for the fixed-latency units (one vector per cycle, ``result`` of vector
  ``i`` sampled ``latency`` cycles later) or ``"mac"`` for `FPMac` (a PE: a per-cycle stream
  of ``a, b, valid, first, last[, rand]``; ``result`` sampled whenever ``result_valid`` is high,
  which must happen exactly ``latency`` cycles after each ``last`` pair).
* ``latency``: the unit's latency.
* ``in_<port>``: per-cycle values of each input port.
* ``expected``: expected ``result`` codes from the NumPy twin (`tessera.sim.fp`), computed on the pytest
  side.

The observed codes are written to ``FPUNIT_RESULTS`` (``.npy``) when that variable is set, so the
pytest side can report mismatches with decoded values.

Inputs are driven and outputs sampled on the falling clock edge (outputs are then stable, and
writing outside the ReadOnly phase is allowed).
"""

import os

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


def _load():
    data = np.load(os.environ["FPUNIT_VECTORS"])
    mode = str(data["mode"])
    latency = int(data["latency"])
    inputs = {k[3:]: data[k].astype(np.int64).tolist() for k in data.files if k.startswith("in_")}
    return mode, latency, inputs, data["expected"].astype(np.int64)


async def _reset(dut):
    Clock(dut.clk, 10, unit="ns").start(start_high=False)
    dut.rst.value = 1
    for handle_name in ("valid", "first", "last"):
        if hasattr(dut, handle_name):
            getattr(dut, handle_name).value = 0
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


def _report(got, expected):
    out = os.environ.get("FPUNIT_RESULTS")
    if out:
        np.save(out, np.asarray(got, dtype=np.int64))
    got = np.asarray(got, dtype=np.int64)
    assert got.shape == expected.shape, f"got {got.shape[0]} results, expected {expected.shape[0]}"
    bad = np.nonzero(got != expected)[0]
    assert bad.size == 0, (f"{bad.size} of {got.size} results differ; first: " + ", ".join(
        f"#{i}: got {got[i]:#x} expected {expected[i]:#x}" for i in bad[:8]))


@cocotb.test()
async def fpunit_vectors(dut):
    """Drive every vector, compare every result with the twin's code."""
    mode, latency, inputs, expected = _load()
    await _reset(dut)
    handles = [(getattr(dut, name), values) for name, values in inputs.items()]
    n = len(handles[0][1])
    result = dut.result
    got = []
    if mode == "pipe":
        for cycle in range(n + latency):
            if cycle >= latency:
                got.append(int(result.value))
            if cycle < n:
                for h, values in handles:
                    h.value = values[cycle]
            await FallingEdge(dut.clk)
        _report(got, expected)
        return

    assert mode == "mac", f"unknown mode {mode!r}"
    result_valid = dut.result_valid
    lasts = [i for i in range(n) if inputs["valid"][i] and inputs["last"][i]]
    seen = []
    for cycle in range(n + latency + 2):
        if int(result_valid.value):
            seen.append(cycle)
            got.append(int(result.value))
        if cycle < n:
            for h, values in handles:
                h.value = values[cycle]
        else:
            dut.valid.value = 0
        await FallingEdge(dut.clk)
    # the pair driven in iteration c is captured by the next rising edge; after `latency`
    # rising edges result_valid is visible in iteration c + latency
    assert seen == [i + latency for i in lasts], (
        f"result_valid at cycles {seen[:8]}..., expected {[i + latency for i in lasts][:8]}...")
    _report(got, expected)
