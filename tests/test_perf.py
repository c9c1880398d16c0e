"""The analytic performance model (`tessera.sim.perf`) against exact cycle counts.

Expected values never come from `predict`: they are the golden core's RUN cycles (the engine
twins, proven cycle-equal to the RTL by the core regressions), hand-derived schedules for the
directed cases, the host encoder's real stream lengths, the virtual board's line bytes and
time (`tessera.sim.framing.GoldenPipe`), and (marked slow) the Verilated RTL itself.
"""

import asyncio
import time
import warnings

import numpy as np
import pytest

from tessera.generators.config import load_config
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.layers import Conv2d, Dense, Flatten, MaxPool2d
from tessera.sim.lowering import run_layer
from tessera.sim.perf import TERMS, Link, predict, rle_row_entries
from helpers import derive

BOUND = 2.0     # per cent, every point


def golden_layer(cfg, layer, shape, *, mode=None, seed=0, epilogue=None, record=None):
    """(LayerStats, x codes, w codes) of ``layer`` run through the driver on the golden core;
    ``record``: a list that receives each RUN's fields."""
    x, w = cfg.engine.layer_operands(layer, list(shape), kind="random", seed=seed, mode=mode)
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    if record is not None:
        run = drv.run

        async def recording(**fields):
            record.append(dict(fields))
            return await run(**fields)
        drv.run = recording

    async def go():
        await drv.connect()
        kw = {"epilogue": epilogue} if epilogue else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return (await run_layer(drv, layer, x, w, raw=True, mode=mode, **kw))[1]
    return asyncio.run(go()), x, w


def feie_recorded(cfg, layer, shape, x, w):
    """``layer`` on the golden core, recording each RUN's fields with the entries per
    (row, column) position of the A stream the mapper wrote before it (unpacked from the
    words themselves): (LayerStats, [(fields, counts or None)])."""
    lay = cfg.engine.entry_layout()
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    runs, last_a = [], {}
    run, write = drv.run, drv.write

    async def rec_write(store, addr, data):
        if store == "a":
            last_a["words"] = np.asarray(data).reshape(-1)
        return await write(store, addr, data)

    async def rec_run(**f):
        cc = None
        if f["entries"]:
            _, col, _, row = lay.unpack(last_a["words"][:f["entries"]])
            cc = np.bincount(np.asarray(row, np.int64) * f["wp"] + np.asarray(col, np.int64),
                             minlength=f["rows"] * f["wp"])
        runs.append((dict(f), cc))
        return await run(**f)
    drv.write, drv.run = rec_write, rec_run

    async def go():
        await drv.connect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return (await run_layer(drv, layer, x, w, raw=True))[1]
    return asyncio.run(go()), runs


def feie_predict_sum(cfg, runs, counts=True):
    """`feie.predict` summed over recorded RUNs (with their position counts when
    ``counts``)."""
    from tessera.sim.engines import feie
    acc = 1 + cfg.pe.combiner().latency     # accumulating RUNs: the stored-word register
    return sum(feie.predict(rows=r["rows"], ow=r["ow"], wp=r["wp"], q=r["q"], k=r["k"],
                            stride=r["stride"], nonzeros=r["entries"],
                            dense=bool(r["flags"] & feie.FLAG_DENSE), pes=cfg.array.pes,
                            drain=cfg.array.drain,
                            col_counts=cc if counts and not r["flags"] & feie.FLAG_DENSE
                            else None) + (acc if r["flags"] & 1 else 0)
               for r, cc in runs)


def random_layers(rng, n, *, kmax=5, pes=7):
    out = []
    for i in range(n):
        if i % 3 == 0:
            layer = Dense(int(rng.integers(3, 200)), int(rng.integers(1, 30)))
            out.append((layer, (int(rng.integers(1, 9)), layer.in_features)))
            continue
        k = int(rng.choice([1, 3, 5]))
        s = int(rng.choice([1, 2]))
        if k > kmax or -(-k // s) > pes:
            k, s = min(3, kmax), 1
        cin = int(rng.integers(1, 10))
        dw = rng.random() < 0.25
        layer = Conv2d(cin, cin if dw else int(rng.integers(1, 14)), kernel=k, stride=s,
                       padding=int(rng.integers(0, k)), groups=cin if dw else 1)
        out.append((layer, (int(rng.integers(1, 3)), cin, int(rng.integers(max(k, 3), 9)),
                            int(rng.integers(max(k, 3), 9)))))
    return out


def epilogue_params(cfg, mode):
    for c in cfg.engine.layer_cases(quick=False):
        e = c.get("epilogue")
        if e and c.get("mode") in (None, mode):
            return {k: (v[0] if np.ndim(v) == 1 else v) for k, v in e.items()}
    return None


#: (name, preset, sections): every GEMM-engine PE kind and accumulate mode, the tree engine's
#: two encodings; shapes and depths varied so K splits and ragged blocks occur.
CONFIGS = [
    ("int-4x4", "int8-4x4", {}),
    ("int-2x5-small", "int8-4x4", {"array": {"rows": 2, "cols": 5},
                                   "memory": {"a_depth": 16, "b_depth": 24, "c_depth": 16}}),
    ("int-requant", "int8-requant", {"array": {"rows": 3, "cols": 2},
                                     "memory": {"a_depth": 40, "b_depth": 40, "c_depth": 32,
                                                "p_depth": 16}}),
    ("fp-step-chunk", "fp8", {"array": {"rows": 3, "cols": 2},
                              "memory": {"a_depth": 32, "b_depth": 32, "c_depth": 32}}),
    ("fp-exact-epi", "fp8", {"pe": {"accumulate": "exact", "chunk": 0, "stages": 5,
                                    "combine_stages": 4},
                             "memory": {"a_depth": 24, "b_depth": 24, "c_depth": 32,
                                        "p_depth": 16}}),
    ("dlfloat", "dlfloat", {"array": {"rows": 2, "cols": 2},
                            "memory": {"a_depth": 32, "b_depth": 32, "c_depth": 32}}),
    ("bitfusion", "bitfusion", {"array": {"rows": 2, "cols": 3},
                                "memory": {"a_depth": 24, "b_depth": 24, "c_depth": 32}}),
    ("multiprec-epi", "multiprec", {"array": {"rows": 3, "cols": 3},
                                    "memory": {"a_depth": 32, "b_depth": 32, "c_depth": 32,
                                               "p_depth": 16}}),
    ("fpec", "fpec", {}),
    ("biscaled-epi", "biscaled", {"memory": {"p_depth": 16}}),
    # the weight-stationary engine: K split, ragged M and N blocks, the epilogue, modes
    ("ws-int-3x2", "int8-4x4", {"array": {"rows": 3, "cols": 2, "dataflow": "ws"},
                                "memory": {"a_depth": 24, "b_depth": 30, "c_depth": 20}}),
    ("ws-requant", "int8-requant", {"array": {"rows": 4, "cols": 3, "dataflow": "ws"},
                                    "memory": {"a_depth": 40, "b_depth": 48, "c_depth": 32,
                                               "p_depth": 4}}),
    ("ws-bitfusion", "bitfusion", {"array": {"rows": 2, "cols": 3, "dataflow": "ws"},
                                   "memory": {"a_depth": 24, "b_depth": 24, "c_depth": 32}}),
    ("ws-fp-chunk", "fp8", {"array": {"rows": 3, "cols": 2, "dataflow": "ws"},
                            "memory": {"a_depth": 32, "b_depth": 32, "c_depth": 32}}),
    ("ws-fp-exact-epi", "fp8", {"array": {"dataflow": "ws"},
                                "pe": {"accumulate": "exact", "chunk": 0, "stages": 5},
                                "memory": {"a_depth": 24, "b_depth": 24, "c_depth": 32,
                                           "p_depth": 16}}),
    ("ws-multiprec-epi", "multiprec", {"array": {"rows": 3, "cols": 3, "dataflow": "ws"},
                                       "memory": {"a_depth": 32, "b_depth": 32,
                                                  "c_depth": 32, "p_depth": 16}}),
    ("ternary-dense-epi", "ternary", {"array": {"inputs": 8, "outputs": 3},
                                      "memory": {"a_depth": 24, "b_depth": 24, "c_depth": 32,
                                                 "p_depth": 16}}),
    ("ternary-rle", "ternary-rle", {"array": {"inputs": 4, "z_bits": 3, "scales": 32},
                                    "memory": {"a_depth": 32, "b_depth": 64, "c_depth": 32}}),
    ("ternary-rle-epi", "ternary-rle", {"memory": {"a_depth": 64, "b_depth": 256,
                                                   "c_depth": 64, "p_depth": 32}}),
]


@pytest.mark.parametrize("name,preset,sections", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_random_layers_against_golden(name, preset, sections):
    """Seeded random Dense/Conv2d layers (modes and epilogue where the core has them): the
    model's cycles and RUN count against the golden core's, within the bound (they are exact
    for these engines), the per-term breakdown summing to the total, and the host payload
    bytes equal to what the driver sent and received."""
    cfg = derive(preset, **sections)
    rng = np.random.default_rng(sum(map(ord, name)))
    modes = cfg.pe.regress_modes()
    has_epi = cfg.engine.epilogue() is not None
    for i, (layer, shape) in enumerate(random_layers(rng, 5)):
        mode = modes[i % len(modes)]
        epi = epilogue_params(cfg, mode) if has_epi and i % 2 else None
        st, x, w = golden_layer(cfg, layer, shape, mode=mode, seed=i, epilogue=epi)
        pr = predict(layer, cfg, input_shape=shape, mode=mode, epilogue=epi is not None,
                     x=x, w=w)
        err = 100.0 * abs(pr.cycles - st.cycles) / st.cycles
        assert err <= BOUND, (name, layer, shape, mode, st.cycles, pr.cycles)
        assert pr.runs == st.runs, (name, layer, shape)
        assert sum(pr.terms.values()) == pr.cycles
        assert set(pr.terms) == set(TERMS)
        assert (pr.bytes_to_core, pr.bytes_from_core) == (st.bytes_out, st.bytes_in)


def test_feie_plan_matches_the_mapper():
    """FEIE: the model sums the engine's own `predict` over the RUNs the mapper issues, each
    fed the entries per position of its A stream, so its total must equal `feie.predict`
    applied to the RUN fields the real mapper sent and the entries it wrote (unpacked from
    the A words), and the RUN count match; and the closed form stays within 2 % of the
    golden core's exact cycles on these layers."""
    from tessera.sim.engines import feie
    cases = []
    for seed, arr in ((21, {}), (22, {"drain": 2, "zero_skip": False})):
        cfg = derive("feie", array=arr, memory={"a_depth": 128, "b_depth": 16, "c_depth": 32})
        rng = np.random.default_rng(seed)
        cases += [(cfg, lay) for lay in random_layers(rng, 4, kmax=cfg.array.kmax,
                                                        pes=cfg.array.pes)]
    for i, (cfg, (layer, shape)) in enumerate(cases):
        x, w = cfg.engine.layer_operands(layer, list(shape), kind="random", seed=i)
        st, runs = feie_recorded(cfg, layer, shape, x, w)
        pr = predict(layer, cfg, input_shape=shape, x=x)
        assert pr.runs == st.runs == len(runs)
        assert pr.cycles == feie_predict_sum(cfg, runs), (layer, shape)
        assert (pr.bytes_to_core, pr.bytes_from_core) == (st.bytes_out, st.bytes_in)
        assert abs(pr.cycles - st.cycles) <= 0.02 * st.cycles, (layer, shape)
    del feie


def test_directed_gemm_hand_count():
    """Dense 8 -> 4 on a batch of 4 on the 4x4 int core: one RUN of one tile, k = 8 words,
    II 1, PE latency 2. By the schedule: 17 check cycles + 1, the last pair issued at cycle
    7, then 1 (read) + 1 (operand register) + 2 (PE) + 4 (skew) + 1 (output register) + 4
    (drain) + 1 (write), busy one cycle later: 18 + 7 + 14 = 39."""
    cfg = load_config("int8-4x4")
    layer = Dense(8, 4)
    pr = predict(layer, cfg, input_shape=(4, 8))
    assert pr.cycles == 39
    assert pr.terms == {"check": 18, "compute": 8, "bubbles": 0, "fill_drain": 13,
                        "combiner": 0, "epilogue": 0}
    assert golden_layer(cfg, layer, (4, 8))[0].cycles == 39


def test_directed_short_k_and_split_k():
    """Short K: 3 tiles of k = 2 words on a 4x4 array take max(k, R, C) = 4 cycles each (the
    bubbles term: 2 per tile after the first); a K split over three accumulating RUNs pays
    the combiner latency on the two later ones (an FP16 adder: combine_stages)."""
    cfg = load_config("int8-4x4")
    layer = Dense(2, 12)                          # M 4, N 12 -> 3 n-tiles, k 2
    pr = predict(layer, cfg, input_shape=(4, 2))
    assert pr.terms["bubbles"] == 2 * (4 - 2)
    assert pr.cycles == golden_layer(cfg, layer, (4, 2))[0].cycles
    fp = derive("fp8", memory={"a_depth": 16, "b_depth": 16, "c_depth": 16},
                pe={"combine_stages": 3})
    layer = Dense(40, 4)                          # K 40 words in chunks of 16, 16, 8
    pr = predict(layer, fp, input_shape=(4, 40))
    assert pr.runs == 3
    assert pr.terms["combiner"] == 2 * (1 + 3)           # stored-word register + adder
    assert pr.cycles == golden_layer(fp, layer, (4, 40))[0].cycles


def test_directed_modes_change_ii():
    """multiprec: II 4 at 8x8 bits, 1 at 4x4, so the compute term is 4x; bitfusion: the mode
    packs 1, 2 or 4 elements per lane, so K in words (and compute) shrinks."""
    mp = derive("multiprec", array={"rows": 2, "cols": 2})
    layer = Dense(64, 2)
    c8 = predict(layer, mp, input_shape=(2, 64), mode="a8s_w8s").terms["compute"]
    c4 = predict(layer, mp, input_shape=(2, 64), mode="a4s_w4s").terms["compute"]
    assert (c8, c4) == (4 * 64, 64)
    bf = derive("bitfusion", array={"rows": 2, "cols": 2})
    words = [predict(layer, bf, input_shape=(2, 64), mode=m).terms["compute"]
             for m in ("a8s_w8s", "a4s_w4s", "a2s_w2s")]
    assert words == [64, 16, 4]
    for m in ("a8s_w8s", "a4s_w4s"):
        assert predict(layer, bf, input_shape=(2, 64), mode=m).cycles == \
            golden_layer(bf, layer, (2, 64), mode=m)[0].cycles


def test_rle_row_entries_equal_the_encoder():
    """The vector count of run-length entries per row equals the host encoder's stream length
    (`hw_encode` with every row padded to ``lanes`` entries), dense to very sparse."""
    from tessera.sim.ternary import hw_encode
    rng = np.random.default_rng(3)
    for rows, cols, density, z_bits, lanes in [(5, 37, 0.6, 6, 4), (9, 200, 0.05, 3, 16),
                                               (3, 500, 0.002, 2, 2), (7, 8, 0.0, 6, 4),
                                               (4, 64, 1.0, 1, 8), (6, 130, 0.1, 4, 1)]:
        m = rng.random((rows, cols)) < density
        codes = np.where(m, np.where(rng.random((rows, cols)) < 0.5, 1, 3), 0)
        got = int(rle_row_entries(codes, lanes=lanes, z_bits=z_bits).sum())
        assert got == len(hw_encode(codes, z_bits, min_row_entries=lanes)), \
            (rows, cols, density, z_bits, lanes)


def test_rle_sparsity_follows_the_weights():
    """Run-length cycles follow the non-zero weights: sparser weights, fewer cycles, and the
    golden core agrees at each sparsity."""
    from tessera.sim.engines.tree import TernaryB
    cfg = load_config("ternary-rle")
    layer = Dense(256, 8)
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (32, 256)).astype(np.uint64)
    last = None
    for density in (0.9, 0.5, 0.1):
        codes = np.where(rng.random((256, 8)) < density, 1, 0).astype(np.uint8)
        w = TernaryB(codes, np.full(8, 256), np.full(8, 256))
        pr = predict(layer, cfg, input_shape=(32, 256), w=w)
        drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)

        async def go():
            await drv.connect()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return (await run_layer(drv, layer, x, w, raw=True))[1]
        assert pr.cycles == asyncio.run(go()).cycles
        assert last is None or pr.cycles < last
        last = pr.cycles


def test_network_in_milliseconds_with_link():
    """A network (host layers included) answers in milliseconds, per layer; the link adds
    line bytes and seconds, and compute seconds are cycles over the clock."""
    cfg = load_config("icebreaker")
    net = [(Conv2d(1, 8, kernel=3, padding=1), (50, 1, 8, 8)),
           (Conv2d(8, 16, kernel=3, padding=1), (50, 8, 8, 8)),
           (MaxPool2d(2), (50, 16, 8, 8)), (Flatten(), (50, 16, 4, 4)),
           (Dense(256, 10), (50, 256))]
    predict(net, cfg)
    t0 = time.perf_counter()
    pr = predict(net, cfg, link=Link.for_config(cfg))
    assert time.perf_counter() - t0 < 0.25
    assert [p.where for p in pr.layers] == ["core", "core", "host", "host", "core"]
    assert pr.cycles == sum(p.cycles for p in pr.layers) > 0
    assert pr.compute_s == pytest.approx(pr.cycles / 12e6)
    assert pr.link_s > pr.compute_s                    # 115200 baud: the link dominates
    assert pr.seconds == pytest.approx(pr.link_s + pr.compute_s)
    assert pr.link_cycles == pytest.approx(pr.link_s * 12e6)
    # one bank per store: nothing overlaps (tests/test_perf_overlap.py has the banked cores)
    assert pr.overlapped_layers == 0 and pr.seconds == pytest.approx(pr.sequential_s, rel=1e-12)
    assert pr.serial_link_s == pytest.approx(pr.link_s)


@pytest.mark.parametrize("preset,baud", [("icebreaker", 115200), ("icebreaker", 3_000_000),
                                         ("ternary-rle", 115200), ("ternary-rle", 1_200_000)])
def test_link_time_against_the_virtual_board(preset, baud):
    """Line bytes and seconds over the framed link equal the virtual board's (the board's
    framer twin on a modelled 8N1 line, `GoldenPipe`), which times RUNs at the core clock and
    the board top's own turnaround (at the presets' rates it is a few per cent)."""
    from tessera.sim.framing import FramedTransport, GoldenBoard, GoldenPipe
    cfg = load_config(preset)
    clk = cfg.core.clock_mhz * 1e6
    layer, shape = Conv2d(4, 6, kernel=3, padding=1), (2, 4, 6, 6)
    x, w = cfg.engine.layer_operands(layer, list(shape), seed=4)
    pipe = GoldenPipe(GoldenBoard(GoldenCore(cfg)), baud=baud, clk_hz=clk)
    t = FramedTransport(pipe)
    drv = TesseraDriver(t, cfg)

    async def go():
        await t.open()
        await drv.connect()
        w0, t0 = pipe.wire_to_board + pipe.wire_to_host, pipe.now()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await run_layer(drv, layer, x, w, raw=True)
        return pipe.wire_to_board + pipe.wire_to_host - w0, pipe.now() - t0
    wire, secs = asyncio.run(go())
    pr = predict(layer, cfg, input_shape=shape, x=x, w=w,
                 link=Link(baud=baud, max_payload=t.max_payload, window=t.info.rx_buffer,
                           clock_hz=clk))
    assert pr.layers[0].wire_bytes == wire
    assert pr.seconds == pytest.approx(secs, rel=1e-3)


def test_qnet_against_golden():
    """A quantized network (on-chip epilogue on the first layer, a host Flatten, a plain last
    layer) at batch 7: per-layer cycles equal `run_network`'s on the golden core."""
    from tessera.sim.qnet import QLayer, QNet, run_network
    cfg = load_config("int8-requant")
    rng = np.random.default_rng(0)
    layers = [QLayer(Conv2d(1, 4, kernel=3, padding=1), w=rng.integers(-20, 20, (4, 1, 3, 3)),
                     bias=np.zeros(4),
                     epilogue={"scale": 0.01, "zero_point": 0, "activation": "relu"}),
              QLayer(Flatten()),
              QLayer(Dense(144, 5), w=rng.integers(-20, 20, (144, 5)), bias=np.zeros(5),
                     out_scale=np.ones(5))]
    qnet = QNet("t", cfg.pe.to_dict(), {"scale": 1 / 64, "zero_point": 0, "lo": -128,
                                         "hi": 127}, (1, 6, 6), layers)
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)

    async def go():
        await drv.connect()
        return await run_network(drv, qnet, rng.random((7, 1, 6, 6)))
    res = asyncio.run(go())
    pr = predict(qnet, cfg, batch=7)
    assert [p.cycles for p in pr.layers] == [r.total("cycles") for r in res.records]
    assert [p.epilogue for p in pr.layers] == [True, False, False]


def test_needs_an_input_shape():
    with pytest.raises(ValueError, match=r"^predict: Dense needs input_shape="):
        predict(Dense(4, 4), load_config("int8-4x4"))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["int8-4x4", "ternary-rle"])
def test_against_the_rtl(preset):
    """A few layers on the Verilated RTL (one build, cached): the model within the bound."""
    from tessera.sim.vsim import VerilatorCore
    cfg = load_config(preset)
    points = [(Dense(100, 9), (6, 100)), (Conv2d(3, 5, kernel=3, stride=2, padding=1),
                                          (1, 3, 9, 7))]
    with VerilatorCore(cfg) as core:
        drv = TesseraDriver(core.transport, cfg)
        asyncio.run(drv.connect())
        for i, (layer, shape) in enumerate(points):
            x, w = cfg.engine.layer_operands(layer, list(shape), seed=i)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, st = asyncio.run(run_layer(drv, layer, x, w, raw=True))
            pr = predict(layer, cfg, input_shape=shape, x=x, w=w)
            assert 100.0 * abs(pr.cycles - st.cycles) / st.cycles <= BOUND


def test_feie_density_without_operands():
    """Without activations the FEIE model assumes a density: at density 1 (the default) it
    gives `feie.predict` summed over the RUNs the mapper sends for an input with no zero
    pixel, its entries spread evenly over the columns an output reaches; with the
    activations it places them exactly (Dense: a 1x1 convolution over rows of 64, the last
    one short; Conv2d with stride and padding)."""
    cfg = derive("feie", memory={"a_depth": 256, "b_depth": 16, "c_depth": 32})
    for layer, shape in ((Dense(20, 6), (70, 20)),
                         (Conv2d(3, 5, kernel=3, stride=2, padding=1), (2, 3, 9, 7))):
        x = np.full(shape, 3, dtype=np.uint64)
        _, w = cfg.engine.layer_operands(layer, list(shape), seed=1)
        st, runs = feie_recorded(cfg, layer, shape, x, w)
        assert predict(layer, cfg, input_shape=shape).cycles == \
            feie_predict_sum(cfg, runs, counts=False), layer
        assert predict(layer, cfg, input_shape=shape, x=x).cycles == \
            feie_predict_sum(cfg, runs), layer
        assert predict(layer, cfg, input_shape=shape).runs == st.runs

