"""Ping-pong (overlapped) scheduling of the FEIE convolution mapper on banked stores.

With A, W and C of two banks and a driver that allows overlap, `FeieLowering.conv` runs its
RUNs through `tessera.sim.pingpong.PingPong`: each RUN is sent while the one before executes,
its W words and activation entries go to the banks that RUN does not read, and a block's
results are read from its C bank while the next block computes. Checked here on the golden
core (results, per-RUN cycles, bytes, the time `predict` gives against a timeline replayed
from the driver's own messages) and once on the Verilated RTL.

Expected values never come from `predict`: results from an independent direct convolution
(numpy, tap by tap), cycles from the one-bank core's sequential schedule, bytes and time from
the driver's recorded messages (`overlap_replay`).
"""

import asyncio

import numpy as np
import pytest

from tessera.hdl.ctrl.protocol import Op
from tessera.sim.driver import TesseraDriver
from tessera.sim.engines.feie import plan_conv
from tessera.sim.engines.feie_perf import feie_row_nonzeros
from tessera.sim.layers import Conv2d, Dense
from tessera.sim.perf import Link, predict
from helpers import derive
from overlap_replay import drive, recording_driver, sent, timeline
from test_perf_overlap import LINKS     # the GEMM overlap check's links

#: Small stores: a padded row of 10 pixels leaves 6 sub-positions per RUN (A holds 64
#: entries), so a 3-channel 3x3 convolution takes two chunks (the second accumulates), a few
#: output rows per block and, over 10 output channels, several tiles of channels.
SMALL = {"a_depth": 64, "b_depth": 16, "c_depth": 16}
BANKS = {"a_banks": 2, "w_banks": 2, "c_banks": 2}
PRESETS = ["feie", "icebreaker-zascas", "zascas"]

#: Relative bound of `predict`'s ping-pong seconds against the replayed timeline: each RUN's
#: cycles come from `feie.predict`, which does not count done-queue stalls (the perf model's
#: FEIE error, benchmarks/results/perf_model.md, is at most 0.40 %); only RUNs whose cycles
#: exceed the host's work carry that error into the time.
TOL = 0.02

LAYERS = [
    (Conv2d(3, 10, kernel=3, padding=1), (1, 3, 8, 8)),       # blocks x 2 chunks x tiles
    (Conv2d(2, 3, kernel=3, stride=2, padding=1), (2, 2, 9, 9)),  # stride 2, two images
    (Conv2d(4, 4, kernel=3, padding=1, groups=4), (2, 4, 5, 5)),  # depthwise: 4 conv calls
    (Dense(21, 9), (11, 21)),                                  # a 1x1 convolution
]


OVERLAP = type("OverlapDriver", (), {"overlap": True})


def cores(preset, **memory):
    """(the preset with small banked stores, the same with one bank per store)."""
    return (derive(preset, memory={**SMALL, **BANKS, **memory}),
            derive(preset, memory=SMALL))


def operands(layer, shape, seed):
    """Signed int8 activations about 60 % zero (input channel 2 of a Conv2d entirely zero,
    so its sub-position chunk's RUNs have no entries) and weights (Conv2d O x C x KH x KW,
    Dense K x N)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=shape)
    x[rng.random(shape) < 0.6] = 0
    if isinstance(layer, Conv2d) and shape[1] > 2 and layer.groups == 1:
        x[:, 2] = 0
    w = rng.integers(-128, 128, size=layer.weight_shape)
    return x, w


def codes(v):
    return (np.asarray(v) & 255).astype(np.uint64)


def direct(layer, x, w, acc_bits):
    """The layer on signed ints, tap by tap over the zero-padded input (not the engine's
    schedule), wrapped to ``acc_bits`` codes."""
    x, w = np.asarray(x, np.int64), np.asarray(w, np.int64)
    if isinstance(layer, Dense):
        out = x @ w
    else:
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        n, o, oh, ow = layer.out_shape(x.shape)
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        cg, og = w.shape[1], o // layer.groups
        out = np.zeros((n, o, oh, ow), dtype=np.int64)
        for oc in range(o):
            for c in range(cg):
                ch = (oc // og) * cg + c
                for i in range(kh):
                    for j in range(kw):
                        out[:, oc] += w[oc, c, i, j] * xp[:, ch, i:i + sh * (oh - 1) + 1:sh,
                                                          j:j + sw * (ow - 1) + 1:sw]
    return (out & ((1 << acc_bits) - 1)).astype(np.uint64)


def record(cfg, layer, x, w, *, overlap=True):
    """``layer`` on codes through the driver on the golden core: (messages as
    `overlap_replay.Recorder` keeps them, result codes, `LayerStats`)."""
    rec, drv = recording_driver(cfg, overlap=overlap)

    async def go():
        await drv.connect()
        rec.msgs.clear()
        return await cfg.engine.mapper().run(drv, layer, codes(x), codes(w))
    out, st = asyncio.run(go())
    return rec.msgs, out, st


def polls(msgs):
    """STATUS polls of the driver's wait(): one per RUN sequentially, one per conv call
    (the last RUN) ping-pong."""
    return sum(m[0] == Op.STATUS and m[4] for m in msgs)


def conv_calls(layer):
    return layer.groups if isinstance(layer, Conv2d) else 1


def test_the_layers_need_blocks_chunks_and_tiles():
    """The first layer on the small stores really is several blocks of output rows, two
    sub-position chunks (RUNs of the second have no entries: channel 2 is zero) and several
    tiles of output channels, on every FEIE preset."""
    layer, shape = LAYERS[0]
    x, _ = operands(layer, shape, 0)
    for preset in PRESETS:
        cfg, _ = cores(preset)
        nz = feie_row_nonzeros(x, layer, 6, per_column=True)
        ev = list(plan_conv(cfg, shape, layer, nz))
        runs = [e for e in ev if e[0] == "run"]
        assert sum(e[0] == "read" for e in ev) > 1, preset
        assert {e[2] for e in runs} == {6, 3} and any(e[3] == 0 for e in runs), preset
        assert runs[0][1] == -(-10 // cfg.array.tiles) > 1, preset


@pytest.mark.parametrize("preset", PRESETS)
def test_results_and_cycles_equal_the_one_bank_core(preset):
    """(a) The ping-pong results equal the one-bank core's and a direct convolution; (b)
    each RUN's cycles equal the one-bank core's; the banked core really overlapped (one
    wait() poll per conv call) and the one-bank core did not (one per RUN)."""
    banked, single = cores(preset)
    assert banked.engine.mapper().overlaps(OVERLAP)
    assert not single.engine.mapper().overlaps(OVERLAP)
    assert not banked.engine.mapper().overlaps(type("D", (), {"overlap": False}))
    for li, (layer, shape) in enumerate(LAYERS):
        x, w = operands(layer, shape, li)
        pm, out, st = record(banked, layer, x, w)
        sm, out_s, st_s = record(single, layer, x, w)
        ref = direct(layer, x, w, banked.pe.result_bits)
        assert np.array_equal(out, ref), (preset, layer)
        assert np.array_equal(out_s, ref), (preset, layer)
        assert st.run_cycles == st_s.run_cycles and st.runs == st_s.runs > 1, (preset, layer)
        assert polls(pm) == conv_calls(layer) and polls(sm) == st.runs
        assert sum(m[0] == Op.STATUS for m in pm) == st.runs
        # the same messages in another order: as many bytes each way
        assert sent(pm) == sent(sm)


@pytest.mark.parametrize("preset", PRESETS)
def test_bytes_equal_the_driver(preset):
    """(c) `predict`'s bytes equal the driver's exactly: ping-pong on the banked core, the
    banked core with a driver that does not overlap, and the one-bank core."""
    banked, single = cores(preset)
    for li, (layer, shape) in enumerate(LAYERS):
        x, w = operands(layer, shape, li)
        for cfg, overlap in ((banked, True), (banked, False), (single, True)):
            msgs, _, st = record(cfg, layer, x, w, overlap=overlap)
            pr = predict(layer, cfg, input_shape=shape, x=codes(x), overlap=overlap)
            assert (pr.bytes_to_core, pr.bytes_from_core) == sent(msgs), \
                (preset, layer, overlap)
            assert pr.runs == st.runs
            assert pr.layers[0].overlapped == (cfg is banked and overlap)
        # the driver's own random operands (dense activations) through overlap_replay.drive
        msgs, st = drive(banked, layer, shape, seed=li)
        xr, _ = banked.engine.layer_operands(layer, list(shape), kind="random", seed=li)
        pr = predict(layer, banked, input_shape=shape, x=xr)
        assert (pr.bytes_to_core, pr.bytes_from_core) == sent(msgs) and pr.runs == st.runs


@pytest.mark.parametrize("preset", PRESETS)
def test_seconds_against_the_replayed_timeline(preset):
    """(d) ``seconds`` is within `TOL` of the timeline of the driver's real message order,
    over links from 115200 baud (the link dominates) to a core clocked slowly (the RUNs
    dominate), and within the bounds (with `TOL`): at most ``compute + link``, at least
    ``max(compute, link)`` and ``serial + max(compute, the rest of the link)``; on some
    points strictly between the bounds. The one-bank core's seconds equal its sequential
    timeline (the model's cycles are the golden core's there, up to `TOL`)."""
    banked, single = cores(preset)
    between = 0
    for li, (layer, shape) in enumerate(LAYERS):
        x, w = operands(layer, shape, li)
        pm, _, _ = record(banked, layer, x, w)
        sm, _, _ = record(single, layer, x, w)
        for link in LINKS:
            clk = link.clock_hz or banked.core.clock_mhz * 1e6
            pr = predict(layer, banked, input_shape=shape, x=codes(x), link=link)
            ps = predict(layer, single, input_shape=shape, x=codes(x), link=link)
            lp = pr.layers[0]
            assert lp.overlapped and not ps.layers[0].overlapped
            assert lp.seconds == pytest.approx(timeline(pm, link, clk), rel=TOL), (layer, link)
            assert ps.seconds == pytest.approx(
                timeline(sm, link, clk, answer_at_start=False), rel=TOL)
            assert lp.sequential_s == pytest.approx(ps.seconds, rel=1e-12)
            eps = TOL * lp.sequential_s
            assert lp.seconds <= lp.sequential_s + eps
            assert lp.seconds >= max(lp.compute_s, lp.link_s) - eps
            assert lp.seconds >= lp.serial_link_s \
                + max(lp.compute_s, lp.link_s - lp.serial_link_s) - eps
            assert 0 < lp.serial_link_s < lp.link_s
            if lp.seconds < lp.sequential_s - eps and \
                    lp.seconds > max(lp.compute_s, lp.link_s) + eps:
                between += 1
    assert between >= 3      # the overlap matters on some points, and neither side is free


def test_seconds_on_a_large_layer_answer_fast():
    """A layer of thousands of RUNs: the ping-pong time is closed form over the RUNs the
    model derives (milliseconds), at most the sequential time, at least the compute."""
    cfg, _ = cores("zascas")
    layer, shape = Conv2d(16, 32, kernel=3, padding=1), (4, 16, 32, 32)
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=shape).astype(np.uint64)
    x[rng.random(shape) < 0.5] = 0
    pr = predict(layer, cfg, input_shape=shape, x=x, link=Link(baud=3e6))
    lp = pr.layers[0]
    assert pr.runs > 1000 and lp.overlapped and pr.model_s < 2.0
    assert lp.compute_s <= lp.seconds <= lp.sequential_s


@pytest.mark.parametrize("store", ["a", "w", "c"])
def test_a_store_of_one_bank_does_not_overlap(store):
    """(e) A, W or C of one bank: no ping-pong (the mapper, `predict` and the driver's
    messages: one wait() poll per RUN), the results and cycles unchanged, ``seconds`` the
    sequential figure."""
    cfg, single = cores("feie", **{f"{store}_banks": 1})
    assert not cfg.engine.mapper().overlaps(OVERLAP)
    layer, shape = LAYERS[0]
    x, w = operands(layer, shape, 0)
    msgs, out, st = record(cfg, layer, x, w)
    _, out_s, st_s = record(single, layer, x, w)
    assert polls(msgs) == st.runs
    assert np.array_equal(out, out_s) and st.run_cycles == st_s.run_cycles
    pr = predict(layer, cfg, input_shape=shape, x=codes(x), link=Link(baud=3e6))
    assert not pr.layers[0].overlapped
    assert pr.seconds == pytest.approx(pr.layers[0].compute_s + pr.layers[0].link_s)


class _Counting:
    """Transport wrapper counting the opcodes sent."""

    def __init__(self, inner):
        self.inner, self.ops = inner, []

    async def send(self, data):
        self.ops.append(bytes(data)[0])
        await self.inner.send(data)

    async def recv(self, n):
        return await self.inner.recv(n)

    async def idle(self, cycles):
        return await self.inner.idle(cycles)


def test_ping_pong_on_the_verilated_rtl_equals_golden():
    """(f) A banked FEIE core's Verilated RTL runs a convolution of several blocks, chunks
    and tiles ping-pong through the driver: results equal the golden core's and the direct
    convolution, each RUN's cycles the golden core's (and the one-bank schedule's)."""
    from tessera.sim.vsim import VerilatorCore
    cfg, single = cores("feie")
    layer, shape = LAYERS[0]
    x, w = operands(layer, shape, 0)

    async def body(t):
        drv = TesseraDriver(t, cfg)
        await drv.connect()
        return await cfg.engine.mapper().run(drv, layer, codes(x), codes(w))
    with VerilatorCore(cfg, progress=lambda m: None) as core:
        tr = _Counting(core.transport)
        out, st = asyncio.run(body(tr))
    _, gout, gst = record(cfg, layer, x, w)
    _, _, sst = record(single, layer, x, w)
    assert np.array_equal(out, gout) and np.array_equal(out, direct(layer, x, w,
                                                                   cfg.pe.result_bits))
    assert st.run_cycles == gst.run_cycles == sst.run_cycles and st.runs > 10
    # ping-pong: no STATUS between the first two RUNs (the second is sent while the first
    # executes), then exactly one (the previous RUN's cycles) after each later RUN
    runs_at = [i for i, op in enumerate(tr.ops) if op == Op.RUN]
    assert len(runs_at) == st.runs
    between = [tr.ops[i:j].count(Op.STATUS) for i, j in zip(runs_at, runs_at[1:])]
    assert between == [0] + [1] * (st.runs - 2)
