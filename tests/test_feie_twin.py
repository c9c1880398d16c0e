"""The FEIE / ZASCA engine's twin: the seed example's schedule (arrays.md §5), the twin through
the golden core and the engine's mapper against an independent direct convolution, and the
closed-form predict against the twin's exact cycles."""

import asyncio

import numpy as np
import pytest

from tessera.generators import kinds
from tessera.generators.config import config_from_dict
from tessera.generators.kinds.feie import FeieEngine
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.engines.feie import FeieLowering, simulate
from tessera.sim.layers import Conv2d, conv2d_direct


def _cfg(monkeypatch, **array):
    if "feie" not in kinds.ENGINES:
        monkeypatch.setitem(kinds.ENGINES, "feie", FeieEngine)
    return config_from_dict({"array": {"kind": "feie", **array},
                             "pe": {"kind": "int", "a_bits": 8, "b_bits": 8, "acc_bits": 24},
                             "memory": {"a_depth": 512, "b_depth": 64, "c_depth": 128}})


def _seed(x, dense):
    r, c = np.nonzero(x)
    ents = (x[r, c] & 255, c, np.zeros_like(c), r)
    return simulate(ents, lambda q: [2, -3 & 255, 5], rows=2, ow=6, wp=8, q=1, k=3, stride=1,
                    pes=3, tiles=1, kmax=3, dense=dense, trace=True)


def test_seed_example_cycles_and_schedule():
    """Two rows of 8 pixels, a 1x3 filter, 3 PEs: 16 broadcasts dense, 10 with X6..X11 zero,
    the slide's (PE, psum, weight) triples, outputs equal to the dense ones, Psum6/7 = 0."""
    x = np.arange(1, 17).reshape(2, 8)
    xz = x.copy()
    xz.flat[5:11] = 0
    dense, skip, dense_z = _seed(x, True), _seed(xz, False), _seed(xz, True)
    assert (dense.broadcasts, skip.broadcasts, dense_z.broadcasts) == (16, 10, 16)
    assert skip.stalls == 0
    # The slide's schedule (1-based pixels X, psums P, weights W) for the zero-skipping run.
    slide = {1: (1, [(0, 1, 1)]), 2: (2, [(0, 1, 2), (1, 2, 1)]),
             3: (3, [(0, 1, 3), (1, 2, 2), (2, 3, 1)]),
             4: (4, [(1, 2, 3), (2, 3, 2), (0, 4, 1)]),
             5: (5, [(2, 3, 3), (0, 4, 2), (1, 5, 1)]),
             6: (12, [(1, 8, 3), (2, 9, 2), (0, 10, 1)]),
             7: (13, [(2, 9, 3), (0, 10, 2), (1, 11, 1)]),
             8: (14, [(0, 10, 3), (1, 11, 2), (2, 12, 1)]),
             9: (15, [(1, 11, 3), (2, 12, 2)]), 10: (16, [(2, 12, 3)])}
    pix = [i + 1 for i in np.flatnonzero(xz)]
    for cyc, (e, plan) in enumerate(skip.trace, start=1):
        want_x, want = slide[cyc]
        assert pix[e] == want_x
        assert sorted((p, g + 1, k + 1) for p, g, k in plan) == sorted(want)
    ref = [int(v) for v in np.array([np.convolve(r, [5, -3, 2], "valid") for r in xz]).ravel()]
    assert [o[0] for o in skip.outputs] == ref == [o[0] for o in dense_z.outputs]
    assert skip.outputs[5] == [0] and skip.outputs[6] == [0]
    assert [o[0] for o in dense.outputs] == \
        [int(v) for v in np.array([np.convolve(r, [5, -3, 2], "valid") for r in x]).ravel()]


def _random_conv(rng, cfg):
    k = int(rng.integers(1, 4))
    s = int(rng.integers(1, 3))
    p = int(rng.integers(0, k))
    c = int(rng.integers(1, 4))
    o = int(rng.integers(1, 7))
    h, w = int(rng.integers(k, 8)), int(rng.integers(k, 9))
    layer = Conv2d(c, o, kernel=k, stride=s, padding=p)
    sparsity = rng.choice([0.0, 0.3, 0.6, 0.9, 1.0])
    x = rng.integers(-128, 128, size=(1, c, h, w))
    x[rng.random(x.shape) < sparsity] = 0
    wt = rng.integers(-128, 128, size=layer.weight_shape)
    return layer, x, wt


@pytest.mark.parametrize("dense", [False, True])
def test_golden_core_layers_equal_direct_convolution(monkeypatch, dense):
    cfg = _cfg(monkeypatch, tiles=4, pes=3, kmax=3)
    rng = np.random.default_rng(7 + dense)
    for _ in range(12):
        layer, x, wt = _random_conv(rng, cfg)
        drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
        mapper = FeieLowering(cfg, dense=dense)
        xc = (x & 255).astype(np.uint64)
        wc = (wt & 255).astype(np.uint64)
        got, stats = asyncio.run(mapper.run(drv, layer, xc, wc))
        ref = conv2d_direct(x, wt, layer).astype(np.int64) & ((1 << 24) - 1)
        assert np.array_equal(got, ref.astype(np.uint64)), layer


def test_gemm_as_1x1_convolution(monkeypatch):
    cfg = _cfg(monkeypatch, tiles=3, pes=3, kmax=3)
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, size=(70, 9))
    b = rng.integers(-128, 128, size=(9, 5))
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    got, st = asyncio.run(cfg.engine.mapper().gemm(drv, (a & 255).astype(np.uint64),
                                                   (b & 255).astype(np.uint64)))
    assert np.array_equal(got, ((a @ b) & 0xFFFFFF).astype(np.uint64))


def test_skip_cycles_follow_nonzeros_and_predict(monkeypatch):
    """One RUN of a 3-channel 3x3 layer row block: the exact cycles against the closed form,
    dense and skipping, sparsity 0..90 %."""
    from tessera.sim.engines.feie import predict, run_cycles
    rng = np.random.default_rng(11)
    C, KH, K, W = 4, 3, 3, 32
    ow = W - K + 1
    q = C * KH
    for s in np.arange(0, 1.0, 0.1):
        x = rng.integers(1, 128, size=(q, W))
        x[rng.random(x.shape) < s] = 0
        cc, qq = np.nonzero(x.T)
        ents = (x.T[cc, qq], cc, qq, np.zeros_like(cc))
        for dense in (False, True):
            sch = simulate(ents, lambda qi: [1] * 3, rows=1, ow=ow, wp=W, q=q, k=K, stride=1,
                           pes=3, tiles=1, kmax=3, dense=dense)
            exact = run_cycles(sch.cycles)
            pred = predict(rows=1, ow=ow, wp=W, q=q, k=K, stride=1, nonzeros=len(cc),
                           dense=dense)
            assert abs(exact - pred) <= max(4, 0.05 * exact), (s, dense, exact, pred)
            # the entries per column place each result word's earliest cycle exactly
            placed = predict(rows=1, ow=ow, wp=W, q=q, k=K, stride=1, nonzeros=len(cc),
                             dense=dense, col_counts=np.bincount(cc, minlength=W))
            assert abs(exact - placed) <= max(2, 0.02 * exact), (s, dense, exact, placed)


def test_engine_quantizer_zero_point_zero():
    """The engine asks the int recipe for zero-point-0 activations (`Engine.ptq_options`):
    the image and every ReLU output take levels 0..127, so a real 0 is code 0 (the digits
    MLP, quicker to train than the CNN; the recipe's rule is the same)."""
    from tessera.generators.config import load_config
    from tessera.generators.infer import _builtin
    from tessera.sim import digits, qnet
    from tessera.sim.ptq import quantize
    cfg = load_config("zascas")
    assert cfg.engine.ptq_options() == {"act_zero_point": 0}
    xtr, _, xte, _ = digits.load_split()
    fm = _builtin("digits-mlp")
    q = quantize(fm, cfg.pe, xtr[:200], **cfg.engine.ptq_options())
    assert q.input["zero_point"] == 0 and q.input["lo"] == 0 and q.input["hi"] == 127
    epis = [ql.epilogue for ql in q.layers if ql.epilogue is not None]
    assert epis and all(e["zero_point"] == 0 and e["lo"] == 0 for e in epis)
    x0 = qnet.quantize_input(q, xte[:20])
    assert x0.min() == 0 and (x0 == 0).mean() > 0.3     # the digits' background is code 0
    default = quantize(fm, cfg.pe, xtr[:200])
    assert default.input["zero_point"] == -128           # the int recipe's own rule


@pytest.mark.parametrize("seed", range(4))
def test_random_configs_twin_equals_einsum(monkeypatch, seed):
    """The twin (golden core, the engine's mapper) against an einsum over sliding windows,
    bit for bit, over random cores (tiles 1..16, pes, kmax 1..7, drain 1/2) and layers
    (filters up to 7 x 7, strides 1/2, paddings, batches, sparsities); every RUN's cycles
    against the closed form (`predict`, within 5 % or 4 cycles)."""
    from tessera.sim.engines.feie import FLAG_DENSE, predict
    rng = np.random.default_rng(50 + seed)
    kmax = int(rng.integers(1, 8))
    pes = int(rng.integers(-(-kmax // 2), 8))
    drain = int(rng.integers(1, 3))
    tiles = int(rng.integers(1, min(16, 2048 // (24 * pes * drain)) + 1))
    cfg = _cfg(monkeypatch, tiles=tiles, pes=pes, kmax=kmax, drain=drain)
    for _ in range(6):
        s = int(rng.integers(1, 3))
        k = int(rng.integers(1, min(kmax, pes * s) + 1))
        kh = int(rng.integers(1, 8))
        ph, pw = int(rng.integers(0, kh)), int(rng.integers(0, k))
        c, o = int(rng.integers(1, 5)), int(rng.integers(1, 2 * tiles + 2))
        layer = Conv2d(c, o, kernel=(kh, k), stride=s, padding=(ph, pw))
        h = int(rng.integers(max(1, kh - 2 * ph), kh + 5))
        w = int(rng.integers(max(1, k - 2 * pw), k + 10))
        x = rng.integers(-128, 128, size=(int(rng.integers(1, 3)), c, h, w))
        x[rng.random(x.shape) < rng.choice([0.0, 0.3, 0.6, 0.9, 1.0])] = 0
        wt = rng.integers(-128, 128, size=layer.weight_shape)
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, k), axis=(2, 3))[:, :, ::s, ::s]
        ref = np.einsum("ncyxij,ocij->noyx", win, wt) & ((1 << 24) - 1)
        for dense in (False, True, "pixels"):
            drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
            runs = []
            plain = drv.run

            async def recording(**f):
                runs.append(dict(f))
                return await plain(**f)
            drv.run = recording
            got, st = asyncio.run(FeieLowering(cfg, dense=dense).run(
                drv, layer, (x & 255).astype(np.uint64), (wt & 255).astype(np.uint64)))
            assert np.array_equal(got, ref.astype(np.uint64)), (layer, dense)
            for r, cyc in zip(runs, st.run_cycles):
                pred = predict(rows=r["rows"], ow=r["ow"], wp=r["wp"], q=r["q"], k=r["k"],
                               stride=r["stride"], nonzeros=r["entries"],
                               dense=bool(r["flags"] & FLAG_DENSE), pes=pes, drain=drain)
                assert abs(cyc - pred) <= max(4, 0.05 * cyc), (layer, dense, str(r),
                                                               cyc, pred)
