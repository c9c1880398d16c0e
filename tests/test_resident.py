"""Weight residency in the host driver (``TesseraDriver(resident=True)``): only the words that
differ from what the driver already wrote cross the link; results stay bit-exact."""

import asyncio

import numpy as np

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
