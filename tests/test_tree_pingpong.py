"""Ping-pong (overlapped) RUNs of the tree engine's mappers on banked stores.

`DenseMapper.gemm` and `RleMapper.gemm` run through `tessera.sim.pingpong.PingPong` when
every store they write (A, W, S, and P with the epilogue) and every result store has two banks
and the driver allows it. Expected values never come from the mapper or `predict`: results
from an independent reference (the layer's direct convolution, `layer_reference`, and the
epilogue's exact-rational reference), RUN cycles from the same layer on a core of one bank
per store, bytes from what the driver sent and received on the golden core, and the time from
a timeline replayed from the driver's own messages (`overlap_replay.timeline`).
"""

import asyncio
import time
import warnings

import numpy as np
import pytest

from tessera.hdl.ctrl.protocol import Op
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.layers import Conv2d, Dense
from tessera.sim.lowering import requant_params, run_layer
from tessera.sim.perf import Link, predict
from helpers import derive
from overlap_replay import drive, sent, timeline
from test_perf_overlap import LINKS     # the GEMM overlap check's links

#: Small stores: layers need several n-groups, row blocks (ragged) and K chunks.
DENSE_MEM = {"a_depth": 16, "b_depth": 16, "c_depth": 16}
RLE_MEM = {"a_depth": 16, "b_depth": 32, "c_depth": 16}
DENSE_ARRAY = {"inputs": 4, "outputs": 3}
RLE_ARRAY = {"inputs": 4, "z_bits": 3, "scales": 32}
#: Epilogue scales that spread the outputs over the codes (run-length: wider scales).
EPILOGUE = {"dense": {"scale": 4e-5}, "rle": {"scale": 1e-6}}


def _banks(stores, n=2):
    return {f"{s}_banks": n for s in stores}


def variants():
    """(name, banked config, the same with one bank per store, epilogue params or None)."""
    out = []
    for name, preset, array, mem in (("dense", "ternary", DENSE_ARRAY, DENSE_MEM),
                                     ("rle", "ternary-rle", RLE_ARRAY, RLE_MEM)):
        out.append((name, derive(preset, array=array, memory={**mem, **_banks("awsc")}),
                    derive(preset, array=array, memory=mem), None))
        epi_mem = {**mem, "p_depth": 4}
        out.append((name + "-epi",
                    derive(preset, array=array, memory={**epi_mem, **_banks("awscpr")}),
                    derive(preset, array=array, memory=epi_mem), EPILOGUE[name]))
    return out


VARIANTS = {v[0]: v for v in variants()}

#: One RUN; ragged n-groups and row blocks; two and three K chunks (a middle one: the
#: dense engine's K is in words of 4 inputs); a convolution; a grouped convolution (one GEMM
#: per group).
LAYERS = [
    (Dense(8, 4), (3, 8)),
    (Dense(21, 9), (45, 21)),
    (Dense(70, 7), (19, 70)),
    (Dense(150, 5), (9, 150)),
    (Conv2d(3, 5, kernel=3, padding=1), (1, 3, 6, 5)),
    (Conv2d(4, 4, kernel=3, padding=1, groups=4), (1, 4, 5, 5)),
]

class _Overlap:
    overlap = True


def _operands(cfg, layer, shape, seed):
    return cfg.engine.layer_operands(layer, list(shape), kind="random", seed=seed)


def _golden(cfg, layer, shape, epilogue, *, seed, overlap=True):
    """(result codes, LayerStats) of ``layer`` through the driver on the golden core, with
    the operands `overlap_replay.drive` draws for ``seed``."""
    x, w = _operands(cfg, layer, shape, seed)
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg, overlap=overlap)

    async def go():
        await drv.connect()
        kw = {"epilogue": epilogue} if epilogue else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return await run_layer(drv, layer, x, w, raw=True, **kw)
    return asyncio.run(go())


def _reference(cfg, layer, shape, epilogue, *, seed, k_split):
    """The independent reference: the layer's direct convolution of the codes, then (with
    the epilogue) the epilogue's exact-rational reference."""
    x, w = _operands(cfg, layer, shape, seed)
    acc = cfg.engine.layer_reference(layer, x, w, k_split=k_split)
    if epilogue is None:
        return acc
    o = acc.shape[1]
    return cfg.engine.epilogue().reference_codes(
        acc, requant_params(cfg.engine, epilogue, None, o))


def _predict(cfg, layer, shape, epilogue, *, seed, **kw):
    _, w = _operands(cfg, layer, shape, seed)
    return predict(layer, cfg, input_shape=shape, epilogue=epilogue is not None, w=w, **kw)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_results_and_cycles_equal_one_bank_and_the_reference(name):
    """Ping-pong on the banked core: results equal the one-bank core's and the independent
    reference, each RUN's cycles the one-bank core's; the layers do split K, cut N into
    groups and M into blocks (several READs, accumulating RUNs)."""
    _, banked, single, epi = VARIANTS[name]
    assert banked.engine.mapper().overlaps(_Overlap(), epilogue=epi is not None)
    assert not single.engine.mapper().overlaps(_Overlap(), epilogue=epi is not None)
    split = spread = 0
    for li, (layer, shape) in enumerate(LAYERS):
        out, st = _golden(banked, layer, shape, epi, seed=li)
        out1, st1 = _golden(single, layer, shape, epi, seed=li)
        ref = _reference(banked, layer, shape, epi, seed=li, k_split=st.k_split)
        np.testing.assert_array_equal(out, out1, err_msg=str(layer))
        np.testing.assert_array_equal(out, ref, err_msg=str(layer))
        assert st.run_cycles == st1.run_cycles and st.runs == len(st.run_cycles)
        split += st.k_split < layer.gemm_k()
        spread = max(spread, len(np.unique(out)))
    assert split >= 2 and spread > 20


@pytest.mark.parametrize("name", list(VARIANTS))
def test_bytes_equal_the_driver(name):
    """``predict``'s bytes equal the driver's exactly (ping-pong, the banked core with a
    driver that does not overlap, and one bank); ping-pong sends one STATUS per RUN (the
    previous RUN's cycles, then the wait's one poll per GEMM) and reads every block."""
    _, banked, single, epi = VARIANTS[name]
    for li, (layer, shape) in enumerate(LAYERS):
        for cfg, overlap in ((banked, True), (banked, False), (single, True)):
            msgs, st = drive(cfg, layer, shape, epilogue=epi, overlap=overlap, seed=li)
            pr = _predict(cfg, layer, shape, epi, seed=li, overlap=overlap)
            assert (pr.bytes_to_core, pr.bytes_from_core) == sent(msgs) \
                == (st.bytes_out, st.bytes_in), (name, layer, overlap)
            assert pr.runs == st.runs and pr.cycles == st.cycles
            assert pr.layers[0].overlapped == (cfg is banked and overlap)
            assert sum(m[0] == Op.STATUS for m in msgs) == st.runs
            polls = sum(m[0] == Op.STATUS and m[4] for m in msgs)
            assert polls == (len(st.gemms) if cfg is banked and overlap else st.runs)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_seconds_equal_the_replayed_timeline(name):
    """``seconds`` equals the timeline of the driver's own messages on every link, for the
    ping-pong and the sequential schedule, and lies between ``serial + max(compute, the rest
    of the link)`` and ``compute + link``; on some points strictly inside (the overlap
    matters, and neither the link nor the array is free)."""
    _, banked, single, epi = VARIANTS[name]
    between = 0
    for li, (layer, shape) in enumerate(LAYERS):
        pp, _ = drive(banked, layer, shape, epilogue=epi, seed=li)
        seq, _ = drive(single, layer, shape, epilogue=epi, seed=li)
        for link in LINKS:
            clk = link.clock_hz or banked.core.clock_mhz * 1e6
            lp = _predict(banked, layer, shape, epi, seed=li, link=link).layers[0]
            ls = _predict(single, layer, shape, epi, seed=li, link=link).layers[0]
            assert lp.overlapped and not ls.overlapped
            assert lp.seconds == pytest.approx(timeline(pp, link, clk), rel=1e-9), \
                (layer, link)
            assert ls.seconds == pytest.approx(
                timeline(seq, link, clk, answer_at_start=False), rel=1e-9)
            assert lp.sequential_s == pytest.approx(ls.seconds, rel=1e-12)
            eps = 1e-12 * lp.sequential_s
            assert lp.seconds <= lp.sequential_s + eps
            assert lp.seconds >= lp.serial_link_s \
                + max(lp.compute_s, lp.link_s - lp.serial_link_s) - eps
            assert 0 < lp.serial_link_s < lp.link_s or lp.runs == 1
            if lp.seconds < lp.sequential_s - eps and \
                    lp.seconds > max(lp.compute_s, lp.link_s) + eps:
                between += 1
    assert between >= 5


@pytest.mark.parametrize("name", list(VARIANTS))
def test_one_store_of_one_bank_does_not_overlap(name):
    """Any one store the mapper touches at one bank (or a driver without ``overlap``): the
    sequential schedule (every STATUS is a wait's poll), the same results, ``seconds`` is
    compute plus link."""
    _, banked, _, epi = VARIANTS[name]
    preset = "ternary" if name.startswith("dense") else "ternary-rle"
    array = DENSE_ARRAY if name.startswith("dense") else RLE_ARRAY
    mem = {**(DENSE_MEM if name.startswith("dense") else RLE_MEM),
           **({"p_depth": 4} if epi else {})}
    stores = "awscpr" if epi else "awsc"
    layer, shape = LAYERS[1]
    want, _ = _golden(banked, layer, shape, epi, seed=1)
    for one in stores:
        cfg = derive(preset, array=array, memory={**mem, **_banks(stores), f"{one}_banks": 1})
        assert not cfg.engine.mapper().overlaps(_Overlap(), epilogue=epi is not None), one
        msgs, st = drive(cfg, layer, shape, epilogue=epi, seed=1)
        assert all(m[4] for m in msgs if m[0] == Op.STATUS), one
        out, _ = _golden(cfg, layer, shape, epi, seed=1)
        np.testing.assert_array_equal(out, want)
        lp = _predict(cfg, layer, shape, epi, seed=1, link=Link(baud=3e6)).layers[0]
        assert not lp.overlapped and lp.seconds == pytest.approx(lp.compute_s + lp.link_s)
    if epi is None:        # without the epilogue P need not have two banks (no P here)
        assert banked.engine.mapper().overlaps(_Overlap())
    off = _predict(banked, layer, shape, epi, seed=1, link=Link(baud=3e6), overlap=False)
    assert not off.layers[0].overlapped


def test_large_layers_answer_in_milliseconds():
    """The closed form does not walk the RUNs: large layers (thousands of RUNs) on the two
    presets with banked stores answer in milliseconds, overlapped."""
    for preset, layer, shape in (("ternary", Dense(2048, 1024), (256, 2048)),
                                 ("ternary-rle", Dense(2048, 1024), (256, 2048)),
                                 ("ternary-rle", Conv2d(64, 128, kernel=3, padding=1),
                                  (1, 64, 32, 32))):
        banked = derive(preset, memory=_banks("awsc"))
        link = Link(baud=3e6)
        predict(layer, banked, input_shape=shape, link=link)
        t0 = time.perf_counter()
        pr = predict(layer, banked, input_shape=shape, link=link)
        took = time.perf_counter() - t0
        assert pr.layers[0].overlapped and pr.runs > 1000
        assert pr.seconds < pr.sequential_s
        assert took < 0.3, (preset, layer, took)


def test_rtl_dense_pingpong_equals_golden():
    """A banked dense tree core's Verilated RTL runs a Dense layer ping-pong through the
    driver (several n-groups, row blocks and K chunks): results and every RUN's cycles
    equal the golden core's, and the reference."""
    from tessera.sim.vsim import VerilatorCore
    _, banked, _, _ = VARIANTS["dense"]
    layer, shape = Dense(70, 7), (19, 70)
    x, w = _operands(banked, layer, shape, 2)
    with VerilatorCore(banked, progress=lambda *a: None) as core:
        drv = TesseraDriver(core.transport, banked)
        assert banked.engine.mapper().overlaps(drv)

        async def go():
            await drv.connect()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return await run_layer(drv, layer, x, w, raw=True)
        out, st = asyncio.run(go())
    gold, gst = _golden(banked, layer, shape, None, seed=2)
    np.testing.assert_array_equal(out, gold)
    np.testing.assert_array_equal(out, _reference(banked, layer, shape, None, seed=2,
                                                  k_split=st.k_split))
    assert st.run_cycles == gst.run_cycles and st.runs > 20
