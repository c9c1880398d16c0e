"""The FEIE engine's RTL (Amaranth simulator, whole core) against its twin (golden core) and
an independent direct convolution: bit for bit and cycle for cycle, dense and skipping."""

import asyncio

import numpy as np

from tessera.generators.assemble import build_core
from tessera.generators.config import config_from_dict
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.engines.feie import FeieLowering
from tessera.sim.layers import Conv2d, conv2d_direct
from tessera.sim.pysim import run_with_driver

CFG = config_from_dict({"array": {"kind": "feie", "tiles": 2, "pes": 3, "kmax": 3},
                        "pe": {"kind": "int", "a_bits": 8, "b_bits": 8, "acc_bits": 24},
                        "memory": {"a_depth": 256, "b_depth": 32, "c_depth": 64}})


def _both(layer, x, w, dense):
    async def body(drv):
        await drv.connect()
        return await FeieLowering(CFG, dense=dense).run(drv, layer, x, w)
    rtl = run_with_driver(build_core(CFG), lambda t: body(TesseraDriver(t, CFG)))
    gold = asyncio.run(body(TesseraDriver(GoldenTransport(GoldenCore(CFG)), CFG)))
    return rtl, gold


def _check(layer, x, wt, dense):
    (r, rs), (g, gs) = _both(layer, (x & 255).astype(np.uint64), (wt & 255).astype(np.uint64),
                             dense)
    ref = (conv2d_direct(x, wt, layer).astype(np.int64) & 0xFFFFFF).astype(np.uint64)
    assert np.array_equal(r, ref) and np.array_equal(g, ref)
    assert rs.run_cycles == gs.run_cycles
    return rs.run_cycles


def test_seed_example_through_the_core():
    """Two rows of 8 pixels, a 1x3 filter: the zero-skipping RUN is 6 cycles shorter than the
    dense one (16 -> 10 broadcasts), outputs equal, Psum6 and Psum7 = 0."""
    layer = Conv2d(1, 1, kernel=(1, 3))
    x = np.arange(1, 17).reshape(1, 1, 2, 8)
    xz = x.copy()
    xz.flat[5:11] = 0
    w = np.array([2, -3, 5]).reshape(1, 1, 1, 3)
    dense = _check(layer, xz, w, True)
    skip = _check(layer, xz, w, False)
    assert dense[0] - skip[0] == 6      # the 6 zero pixels cost nothing
    assert dense == [1 + 1 + 16 + 1 + 2]  # check, fill, 16 broadcasts, last word, write
    assert _check(layer, x, w, True) == dense


def test_random_layers_rtl_equals_twin():
    rng = np.random.default_rng(1)
    for _ in range(10):
        k = int(rng.integers(1, 4))
        s = int(rng.integers(1, 3))
        p = int(rng.integers(0, k))
        c, o = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        kh = int(rng.integers(1, 4))
        layer = Conv2d(c, o, kernel=(kh, k), stride=s, padding=(0, p))
        h, w = int(rng.integers(kh, 6)), int(rng.integers(k, 9))
        x = rng.integers(-128, 128, size=(1, c, h, w))
        x[rng.random(x.shape) < rng.choice([0.0, 0.5, 0.8, 0.95, 1.0])] = 0
        wt = rng.integers(-128, 128, size=layer.weight_shape)
        _check(layer, x, wt, bool(rng.integers(0, 2)))
