"""Weight residency in the host driver (``TesseraDriver(resident=True)``): only the words that
differ from what the driver already wrote cross the link; results stay bit-exact."""

import asyncio

import numpy as np
import pytest

from tessera.generators.assemble import build_core
from tessera.generators.config import load_config
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.digits import load_split
from tessera.sim.driver import TesseraDriver
from tessera.sim.pysim import run_with_driver


class Counting:
    """A transport that counts the bytes sent."""

    def __init__(self, inner):
        self.inner, self.sent = inner, 0

    async def send(self, data):
        self.sent += len(data)
        await self.inner.send(data)

    async def recv(self, n):
        return await self.inner.recv(n)

    async def idle(self, cycles):
        await self.inner.idle(cycles)


def test_only_changed_words_are_sent_and_the_store_holds_every_word():
    """On the RTL: a first write sends everything; rewriting the same words sends nothing;
    changing a few words sends one WRITE from the first to the last of them; reading back
    gives the whole new
    contents; a result store is always written in full; connect() forgets the mirror."""
    cfg = load_config("int8-4x4")
    rng = np.random.default_rng(3)
    w0 = rng.integers(0, 256, (40, 4)).astype(np.uint64)
    w1 = w0.copy()
    w1[[3, 4, 20, 39]] ^= 1

    async def body(t):
        ct = Counting(t)
        drv = TesseraDriver(ct, cfg, resident=True)
        await drv.connect()
        out = []
        for w in (w0, w0, w1):
            before = ct.sent
            await drv.write("b", 5, w)
            out.append(ct.sent - before)
        back = await drv.read("b", 5, 40)
        before = ct.sent
        await drv.write("c", 0, np.zeros((3, 4), dtype=np.uint64))
        await drv.write("c", 0, np.zeros((3, 4), dtype=np.uint64))
        out.append(ct.sent - before)
        await drv.connect()
        before = ct.sent
        await drv.write("b", 5, w1)
        out.append(ct.sent - before)
        return out, back, drv.elided_words
    (full, again, changed, result, after), back, elided = run_with_driver(build_core(cfg), body)
    assert full == 6 + 40 * 4 and again == 0
    # words 3, 4, 20 and 39 changed: one WRITE of words 3..39
    assert changed == 6 + 37 * 4
    np.testing.assert_array_equal(back, w1)
    assert result == 2 * (6 + 3 * 16)                 # C words: 4 lanes of 32 bits
    assert after == 6 + 40 * 4
    assert elided == 40 + 3


def test_a_network_with_resident_weights_is_bit_exact_and_sends_less():
    """The digits MLP on the golden core in batches of 10: the same outputs with and without
    residency, and fewer bytes to the core: the weights of the second and later batches stay
    on chip where the other layer did not overwrite them (both layers' B tiles start at word 0
    and the first layer's K is split over RUNs on this core, so most of them are rewritten)."""
    from tessera.sim.digits import train_mlp
    from tessera.sim.ptq import FloatModel, quantize
    from tessera.sim.qnet import run_network
    cfg = load_config("icebreaker")
    xtr, _, xte, _ = load_split()
    q = quantize(FloatModel.from_net(train_mlp()), cfg.pe, xtr[:200])
    sent, outs = {}, {}
    for resident in (False, True):
        ct = Counting(GoldenTransport(GoldenCore(cfg)))
        drv = TesseraDriver(ct, cfg, resident=resident)
        res = asyncio.run(run_network(drv, q, xte[:40], batch=10))
        sent[resident], outs[resident] = ct.sent, res.outputs
    for a, b in zip(outs[False], outs[True]):
        np.testing.assert_array_equal(a, b)
    assert sent[True] < 0.95 * sent[False], sent


def test_weights_get_their_own_regions_when_all_fit():
    """Placement: on the default core (B of 1024 words) the digits MLP's two layers get
    regions [0, 512) and [512, 640) (K 64 words x 8 and x 2 column tiles); on the iCEBreaker
    (B of 512) the first layer's 1024 words do not fit, so nothing is placed; a driver that
    is not resident places nothing."""
    from tessera.sim.digits import train_mlp
    from tessera.sim.ptq import FloatModel, quantize
    from tessera.sim.qnet import weight_regions
    xtr, _, _, _ = load_split()
    for preset, want in (("int8-8x8", {1: (0, 512), 2: (512, 128)}), ("icebreaker", {})):
        cfg = load_config(preset)
        q = quantize(FloatModel.from_net(train_mlp()), cfg.pe, xtr[:100])
        drv = TesseraDriver(None, cfg, resident=True)
        assert weight_regions(drv, q, 50, cfg.engine.epilogue()) == want, preset
        assert weight_regions(TesseraDriver(None, cfg), q, 50, None) == {}


# Slow (a Verilator build): placement is checked on the golden core above in the default suite.
@pytest.mark.slow
def test_placed_weights_on_the_rtl_are_bit_exact_and_cross_once():
    """The digits MLP on the default core's Verilated RTL with resident weights in their own
    regions of B (RUNs with b_base 512): outputs equal the independent reference, and the
    second and later batches send no weight word at all."""
    from tessera.sim.digits import train_mlp
    from tessera.sim.ptq import FloatModel, quantize
    from tessera.sim.qnet import reference_network, run_network
    from tessera.sim.vsim import VerilatorCore
    cfg = load_config("int8-8x8")
    xtr, _, xte, _ = load_split()
    q = quantize(FloatModel.from_net(train_mlp()), cfg.pe, xtr[:200])
    with VerilatorCore(cfg) as core:
        drv = TesseraDriver(core.transport, cfg, resident=True)
        res = asyncio.run(run_network(drv, q, xte[:30], batch=10))
        elided = drv.elided_words
    ref = reference_network(q, cfg.pe, xte[:30])
    for a, b in zip(res.outputs, ref.outputs):
        np.testing.assert_array_equal(a, b)
    assert elided >= 2 * (512 + 128)          # batches 2 and 3 rewrote no weight word
