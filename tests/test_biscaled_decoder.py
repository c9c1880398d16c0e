# amaranth: UnusedElaboratable=no
"""The BiScaled selector decoder (hdl/arith/biscaled_decoder.py) against the storage twin
(`BiScaledTensor.selector`), under idle and back-pressure patterns."""

import numpy as np
import pytest

from tessera.hdl.arith.biscaled_decoder import BiScaledSelectorDecoder
from tessera.sim.biscaled import BiScaledFormat, index_words
from tests.helpers import simulate


@pytest.mark.parametrize("block,n,p_wide,pattern", [
    (8, 203, 0.2, "none"), (8, 203, 0.9, "random"), (4, 97, 1.0, "random"),
    (64, 300, 0.02, "random"), (2, 41, 0.5, "none")])
def test_decoder_matches_storage_twin(block, n, p_wide, pattern):
    rng = np.random.default_rng(block * 1000 + n)
    f = BiScaledFormat(6, 3, 0, block=block)
    codes = rng.integers(0, 64, n).astype(np.uint64)
    sw = (rng.random(n) < p_wide).astype(np.int64)
    st = f.store(codes, sw)
    words = index_words(st)
    dut = BiScaledSelectorDecoder(code_bits=6, block=block)
    got = []
    stall = (lambda: rng.random() < 0.3) if pattern == "random" else (lambda: False)

    async def put(ctx, port, items):
        for v in items:
            while stall():
                ctx.set(port.valid, 0)
                await ctx.tick()
            ctx.set(port.valid, 1)
            ctx.set(port.payload, int(v))
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def put_codes(ctx):
        await put(ctx, dut.i, codes)

    async def put_idx(ctx):
        await put(ctx, dut.idx, words)

    async def get(ctx):
        while len(got) < n:
            ready = not stall()
            ctx.set(dut.o.ready, int(ready))
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if ready and valid:
                got.append((int(payload.code), int(payload.sw)))
    simulate(dut, put_codes, put_idx, get)
    np.testing.assert_array_equal([g[0] for g in got], codes)
    np.testing.assert_array_equal([g[1] for g in got], st.selector())
    np.testing.assert_array_equal(st.selector(), sw)


def test_parameter_checks():
    with pytest.raises(ValueError, match=r"^block must be a power of two 2\.\.4096, not 48$"):
        BiScaledSelectorDecoder(block=48)


def test_tessera_unit_biscaled_decoder(tmp_path):
    from tessera.generators.units import generate_unit
    man = generate_unit("biscaled_decoder", {"block": 16}, tmp_path / "u")
    names = {p["name"] for p in man["ports"]}
    assert {"i__payload", "idx__payload", "o__payload", "o__ready"} <= names
