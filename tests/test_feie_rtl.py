"""The FEIE engine's RTL (Amaranth simulator, whole core) against its twin (golden core) and
an independent direct convolution (`einsum_conv`, below): bit for bit and cycle for cycle,
dense and skipping, over random shapes, strides 1 and 2, paddings, filter widths 1..7,
sparsities, tiles 1..16 and result words of 1 or 2 outputs per PE."""

import asyncio

import numpy as np
import pytest

from tessera.generators.assemble import build_core
from tessera.generators.config import config_from_dict
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.engines.feie import FeieLowering
from tessera.sim.layers import Conv2d
from tessera.sim.pysim import run_with_driver


def einsum_conv(x, w, stride, pad):
    """Cross-correlation of int arrays x (N x C x H x W) and w (O x C x KH x KW) over the
    zero-padded input: one einsum over the sliding windows (not the engine's schedule)."""
    (sh, sw), (ph, pw) = stride, pad
    xp = np.pad(np.asarray(x, np.int64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::sh, ::sw]                      # N x C x OH x OW x KH x KW
    return np.einsum("ncyxij,ocij->noyx", win, np.asarray(w, np.int64))


def _cfg(tiles=2, pes=3, kmax=3, drain=1, acc_bits=24, a=256, w=32, c=64):
    return config_from_dict({"array": {"kind": "feie", "tiles": tiles, "pes": pes,
                                       "kmax": kmax, "drain": drain},
                             "pe": {"kind": "int", "a_bits": 8, "b_bits": 8,
                                    "acc_bits": acc_bits},
                             "memory": {"a_depth": a, "b_depth": w, "c_depth": c}})


def _both(cfg, cases):
    """Each (layer, x codes, w codes, dense) through the RTL core and the golden core."""
    async def body(drv):
        await drv.connect()
        return [await FeieLowering(cfg, dense=dense).run(drv, layer, x, w)
                for layer, x, w, dense in cases]
    rtl = run_with_driver(build_core(cfg), lambda t: body(TesseraDriver(t, cfg)))
    gold = asyncio.run(body(TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)))
    return rtl, gold


def _check(cfg, cases):
    """RTL = twin = einsum, bit for bit, and RTL cycles = twin cycles, per RUN."""
    acc = cfg.pe.result_bits
    coded = [(layer, (x & 255).astype(np.uint64), (wt & 255).astype(np.uint64), dense)
             for layer, x, wt, dense in cases]
    rtl, gold = _both(cfg, coded)
    cycles = []
    for (layer, x, wt, _), (r, rs), (g, gs) in zip(cases, rtl, gold):
        ref = einsum_conv(x, wt, layer.stride, layer.padding)
        ref = (ref & ((1 << acc) - 1)).astype(np.uint64)
        assert np.array_equal(g, ref), layer
        assert np.array_equal(r, ref), layer
        assert rs.run_cycles == gs.run_cycles, layer
        cycles.append(rs.run_cycles)
    return cycles


def test_seed_example_through_the_core():
    """Two rows of 8 pixels, a 1x3 filter: 16 broadcasts dense, 10 with X6..X11 zero, outputs
    equal, Psum6 and Psum7 = 0; the RUN adds 5 cycles to the broadcasts (check, fill, the
    last result word, the output stage's write)."""
    layer = Conv2d(1, 1, kernel=(1, 3))
    x = np.arange(1, 17).reshape(1, 1, 2, 8)
    xz = x.copy()
    xz.flat[5:11] = 0
    w = np.array([2, -3, 5]).reshape(1, 1, 1, 3)
    dense, skip, full = _check(_cfg(), [(layer, xz, w, True), (layer, xz, w, False),
                                        (layer, x, w, True)])
    assert dense == [1 + 1 + 16 + 1 + 2] == full
    assert skip == [1 + 1 + 10 + 1 + 2]
    assert einsum_conv(xz, w, (1, 1), (0, 0)).reshape(-1)[5:7].tolist() == [0, 0]


def _random_case(rng, cfg, small=True):
    a = cfg.array
    s = int(rng.integers(1, 3))
    k = int(rng.integers(1, min(a.kmax, a.pes * s) + 1))
    kh = int(rng.integers(1, 4 if small else 8))
    pw, ph = int(rng.integers(0, k)), int(rng.integers(0, kh))
    c, o = int(rng.integers(1, 4)), int(rng.integers(1, 2 * a.tiles + 2))
    layer = Conv2d(c, o, kernel=(kh, k), stride=s, padding=(ph, pw))
    h, w = int(rng.integers(max(1, kh - 2 * ph), kh + 4)), int(rng.integers(max(1, k - 2 * pw),
                                                                          k + 8))
    n = int(rng.integers(1, 3))
    x = rng.integers(-128, 128, size=(n, c, h, w))
    x[rng.random(x.shape) < rng.choice([0.0, 0.5, 0.8, 0.95, 1.0])] = 0
    wt = rng.integers(-128, 128, size=layer.weight_shape)
    return layer, x, wt, bool(rng.integers(0, 2))


@pytest.mark.parametrize("tiles,pes,kmax,drain,seed", [(2, 3, 3, 1, 1), (1, 4, 7, 2, 2),
                                                      (5, 7, 7, 1, 3), (16, 2, 4, 2, 4)])
def test_random_layers_rtl_equals_twin(tiles, pes, kmax, drain, seed):
    cfg = _cfg(tiles=tiles, pes=pes, kmax=kmax, drain=drain)
    rng = np.random.default_rng(seed)
    _check(cfg, [_random_case(rng, cfg) for _ in range(5)])


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_random_layers_rtl_equals_twin_sweep(seed):
    rng = np.random.default_rng(100 + seed)
    kmax = int(rng.integers(1, 8))
    pes = int(rng.integers(-(-kmax // 2), 8))
    drain = int(rng.integers(1, 3))
    if pes * drain * 24 > 2048 // 16:              # C words hold at most 2048 bits
        drain = 1
    tiles = int(rng.integers(1, min(16, 2048 // (24 * pes * drain)) + 1))
    cfg = _cfg(tiles=tiles, pes=pes, kmax=kmax, drain=drain, c=int(rng.choice([16, 64])))
    _check(cfg, [_random_case(rng, cfg, small=False) for _ in range(8)])


@pytest.mark.parametrize("preset", ["icebreaker-zascas", "zascas"])
def test_board_presets_lint_and_are_deterministic(preset, tmp_path):
    """The FEIE board presets: Verilog that passes `verilator --lint-only`, byte-identical
    when generated twice."""
    from tessera.generators.config import load_config
    from tessera.generators.generate import generate_core
    from tessera.sim.verilator import lint
    m = generate_core(load_config(preset), tmp_path / "a")
    generate_core(load_config(preset), tmp_path / "b")
    a, b = (p / m["verilog"] for p in (tmp_path / "a", tmp_path / "b"))
    assert a.read_bytes() == b.read_bytes()
    res = lint([a], m["top"])
    assert res.ok, res.summary()


@pytest.mark.parametrize("drain,col_bits,row_bits,width", [(3, 12, 12, 9), (4, 4, 1, 9),
                                                          (4, 2, 2, 1)])
def test_width_limits_rtl_equals_twin(drain, col_bits, row_bits, width):
    """`drain` up to 4, `col_bits` 2..12 and `row_bits` 1..12 (their documented limits): RTL =
    twin = einsum, bit and cycle, on layers whose padded rows fill the column field (width +
    padding = 2**col_bits - 1 at most) and on RUNs of at most 2**row_bits rows."""
    d = {"array": {"kind": "feie", "tiles": 2, "pes": 3, "kmax": 3, "drain": drain,
                   "col_bits": col_bits, "row_bits": row_bits},
         "pe": {"kind": "int", "a_bits": 8, "b_bits": 8, "acc_bits": 24},
         "memory": {"a_depth": 256, "b_depth": 32, "c_depth": 64}}
    cfg = config_from_dict(d)
    rng = np.random.default_rng(drain * 100 + col_bits)
    cases = []
    for stride, pad in ((1, 1), (2, 0), (1, 0)):
        k = 3 if width + 2 * pad >= 3 else 1
        layer = Conv2d(2, 3, kernel=(2, k), stride=stride, padding=(1, pad))
        x = rng.integers(-128, 128, size=(2, 2, 4, width))
        x[rng.random(x.shape) < 0.4] = 0
        wt = rng.integers(-128, 128, size=layer.weight_shape)
        cases += [(layer, x, wt, False), (layer, x, wt, True)]
    _check(cfg, cases)


# Slow (a Verilator build and the whole regression): the FEIE core's HDL stays in the default
# suite under Amaranth's simulator (test_seed_example_through_the_core, the random and width
# tests above) and both board presets are linted there.
@pytest.mark.slow
def test_icebreaker_zascas_cocotb_regression(tmp_path):
    """The iCEBreaker FEIE preset under cocotb on Verilator (`tessera regress --quick`): the
    GEMM cases (1x1 convolutions), the engine's layer cases (the seed example, a stride-2
    3x3, a depthwise 3x3) and the digits MLP, bit-exact and cycle-equal to the golden core."""
    from tessera.generators.config import load_config
    from tessera.generators.regress import run_regression
    s = run_regression(load_config("icebreaker-zascas"), out_dir=tmp_path / "reg", quick=True,
                       progress=lambda m: None)
    failed = [t for t in s["tests"] if t["status"] != "passed"]
    assert not failed and s["ok"], failed
    assert s["gemms"] and all(g["mismatches"] == 0 and g["cycles"] == g["golden_cycles"]
                              for g in s["gemms"])
    assert {c["case"] for c in s["layers"]} >= {"seed_1x3", "conv3x3_s2", "depthwise3x3"}
