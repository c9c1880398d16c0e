"""COUNTERS: the core's cycle counters by cause, on the RTL (Amaranth simulation) of every
engine, against the golden core (same RUNs, counted from the engine twins) and against the
performance model's independent ``compute`` term; idle cycles against the testbench's own clock.
"""

import asyncio

import numpy as np
import pytest

from tessera.generators.assemble import build_core
from tessera.generators.config import ConfigError
from tessera.hdl.ctrl.protocol import COUNTERS_BYTES, Op
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import Counters, TesseraDriver
from tessera.sim.layers import Conv2d, Dense
from tessera.sim.perf import predict
from tessera.sim.pysim import run_with_driver
from helpers import derive


SMALL = {"a_depth": 64, "b_depth": 64, "c_depth": 64}

#: (name, config, layer, input shape, mode): every engine (GEMM at II 1 and at II 2 and 4,
#: the tree engine's dense and run-length weights, FEIE dense and zero-skipping), K split over
#: accumulating RUNs where the stores are small, short K (bubbles) on the 4x4 array.
CASES = [
    ("int-4x4", lambda: derive("int8-4x4", memory=SMALL), Dense(40, 6), (5, 40), None),
    ("int-4x4-short-k", lambda: derive("int8-4x4", memory=SMALL), Dense(2, 12), (4, 2), None),
    ("multiprec-ii4", lambda: derive("multiprec", array={"rows": 2, "cols": 2}, memory=SMALL),
     Dense(8, 3), (3, 8), "a8s_w8s"),
    ("tree-dense", lambda: derive("ternary", core={"counters": True},
                                  memory={"a_depth": 32, "b_depth": 32, "c_depth": 32}),
     Dense(8, 5), (3, 8), None),
    ("tree-rle", lambda: derive("ternary-rle", array={"inputs": 4},
                                memory={"a_depth": 64, "b_depth": 64, "c_depth": 32}),
     Dense(12, 6), (6, 12), None),
    ("feie", lambda: derive("feie", memory={"a_depth": 128, "b_depth": 16, "c_depth": 32}),
     Conv2d(2, 4, 3, padding=1), (1, 2, 5, 5), None),
]


async def layer_counters(drv, layer, x, w, mode):
    """COUNTERS deltas over one layer and the layer's outputs."""
    before = await drv.counters()
    y, _ = await drv.run_layer(layer, x, w, raw=True, mode=mode)
    return await drv.counters() - before, y


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_counters_match_golden_and_the_model(name):
    _, make, layer, shape, mode = next(c for c in CASES if c[0] == name)
    cfg = make()
    assert cfg.core.counters and cfg.core_info().has_counters
    x, w = cfg.engine.layer_operands(layer, list(shape), kind="random", seed=7, mode=mode)

    async def rtl(t):
        return await layer_counters(TesseraDriver(t, cfg, poll_cycles=8), layer, x, w, mode)
    got, y = run_with_driver(build_core(cfg), rtl)

    gold = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    want, y_gold = asyncio.run(layer_counters(gold, layer, x, w, mode))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_gold))
    # Inside the RUNs the RTL counts exactly what the twins say...
    assert (got.check, got.compute, got.other) == (want.check, want.compute, want.other), name
    assert want.idle == 0                          # the golden core has no clock
    # ... and the array-computing cycles are the performance model's compute term, which it
    # derives from the layer's shape (and non-zeros) alone.
    pr = predict(layer, cfg, input_shape=shape, x=x, w=w, mode=mode)
    assert got.compute == pr.terms["compute"], (name, got, pr.terms)
    # The RUNs' busy cycles are the model's (exact for the systolic and tree engines; FEIE's
    # closed form is within 2 %).
    assert abs(got.busy - pr.cycles) <= (0.02 * pr.cycles if name == "feie" else 0), name
    # The RUNs were not all idle time: the host waited on them, and they on the host.
    assert got.idle > 0 and got.compute > 0


def test_idle_counts_every_cycle_the_host_waits():
    """Between two COUNTERS readings every cycle lands in exactly one cause: waiting N more
    cycles between the readings adds exactly N idle cycles and nothing else."""
    cfg = derive("int8-4x4", memory=SMALL)

    async def body(t):
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        out = []
        for gap in (0, 37, 1000):
            a = await drv.counters()
            if gap:
                await t.idle(gap)
            out.append(await drv.counters() - a)
        return out
    d0, d37, d1000 = run_with_driver(build_core(cfg), body)
    assert d0.busy == d37.busy == d1000.busy == 0
    assert d37.idle - d0.idle == 37 and d1000.idle - d0.idle == 1000


def test_rejected_run_counts_as_check_only_and_counters_snapshot():
    """A RUN the check rejects costs its check cycles, all counted as ``check``; the response
    is one snapshot (21 bytes: status and five u32)."""
    cfg = derive("int8-4x4", memory=SMALL)
    twin = cfg.engine.twin()

    async def body(t):
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        a = await drv.counters()
        await t.send(bytes([Op.RUN, cfg.engine.code, 0, 0]) + cfg.engine.args().pack(
            m_tiles=0, n_tiles=1, k=1, a_base=0, b_base=0, c_base=0, flags=0))
        (code,) = await t.recv(1)
        await t.idle(40)
        b = await drv.counters()
        await t.send(bytes([Op.COUNTERS]))
        raw = await t.recv(COUNTERS_BYTES)
        return code, b - a, raw
    code, d, raw = run_with_driver(build_core(cfg), body)
    assert code != 0
    assert (d.check, d.compute, d.other) == (twin.check_cycles, 0, 0)
    assert len(raw) == COUNTERS_BYTES == 21 and raw[0] == 0


def test_without_counters_the_opcode_is_unknown_and_the_driver_says_so():
    cfg = derive("int8-4x4", core={"counters": False}, memory=SMALL)
    assert not cfg.core_info().has_counters

    async def body(t):
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        await t.send(bytes([Op.COUNTERS]))
        (code,) = await t.recv(1)
        try:
            await drv.counters()
        except RuntimeError as e:
            return code, str(e)
    code, msg = run_with_driver(build_core(cfg), body)
    assert code == 1                                  # Err.OPCODE
    assert "core.counters = false" in msg
    gold = GoldenCore(cfg)
    assert gold.feed(bytes([Op.COUNTERS])) == bytes([1])


def test_config_key_is_checked():
    with pytest.raises(ConfigError, match=r"core\.counters: .* is not a boolean; allowed: true"):
        derive("int8-4x4", core={"counters": "yes"})


def test_counters_difference_and_breakdown():
    a = Counters(idle=2**32 - 5, check=10, compute=100, other=20, data=1)
    b = Counters(idle=5, check=27, compute=164, other=33, data=8)
    d = b - a
    assert d == Counters(idle=10, check=17, compute=64, other=13, data=7)
    rows = d.breakdown()
    assert [r[0] for r in rows] == ["array computing", "fill, drain, bubbles", "argument check",
                                    "waiting for data", "waiting on the host"]
    assert sum(r[1] for r in rows) == d.total == 111
    assert abs(sum(r[2] for r in rows) - 1) < 1e-12
