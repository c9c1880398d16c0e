"""Layers as data: parameter checks, the independent references, host layers, and the layer
mapper of every GEMM engine on the golden core against the references."""

import asyncio
import itertools
import re
import warnings

import numpy as np
import pytest

from tessera.generators.config import load_config, preset_names
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.layers import (AvgPool2d, Clip, Conv2d, Dense, Flatten, LayerError, MaxPool2d,
                                Relu, apply_host, conv2d_direct, layer_from_dict,
                                reference_codes)
from tessera.sim.lowering import (AccumulatorWarning, GemmLowering, im2col, layer_cases,
                                  layer_operands, run_layer)


# -- parameters ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, msg", [
    ({"kernel": 8}, r"^Conv2d\.kernel: 8 is out of range; allowed: 1\.\.7$"),
    ({"kernel": 0}, r"^Conv2d\.kernel: 0 is out of range; allowed: 1\.\.7$"),
    ({"stride": 5}, r"^Conv2d\.stride: 5 is out of range; allowed: 1\.\.4$"),
    ({"stride": (1, 2, 3)}, r"^Conv2d\.stride: \(1, 2, 3\) must be an integer or a pair"),
    ({"padding": 3}, r"^Conv2d\.padding: 3 is out of range for kernel \(3, 3\)"),
    ({"groups": 2}, r"^Conv2d\.groups: 2 is not supported; allowed: 1 or in_channels \(4"),
    ({"kernel": 2.5}, r"^Conv2d\.kernel: 2\.5 is not an integer"),
])
def test_conv_parameters_refused(kw, msg):
    with pytest.raises(LayerError, match=msg):
        Conv2d(4, 8, **kw)


def test_depthwise_multiplier_and_shapes():
    layer = Conv2d(3, 6, kernel=(3, 5), stride=(2, 1), padding=(1, 2), groups=3)
    assert layer.weight_shape == (6, 1, 3, 5)
    assert layer.out_shape((2, 3, 9, 7)) == (2, 6, 5, 7)
    assert layer.gemm_k() == 15
    with pytest.raises(LayerError, match=r"^Conv2d\.out_channels: 4 is not a multiple of "):
        Conv2d(3, 4, groups=3)
    with pytest.raises(LayerError, match=r"^Conv2d: input shape \(1, 2, 5, 5\) must be "):
        Conv2d(3, 3).out_shape((1, 2, 5, 5))
    with pytest.raises(LayerError, match=r"smaller than kernel"):
        Conv2d(1, 1, kernel=5).out_shape((1, 1, 3, 3))


def test_layer_dict_round_trip():
    for layer in (Dense(5, 3, bias=True), Conv2d(3, 6, kernel=(3, 5), stride=2, padding=1,
                                                 groups=3),
                  MaxPool2d(kernel=3, stride=2, padding=1), AvgPool2d(), Relu(), Clip(-1, 2),
                  Flatten()):
        assert layer_from_dict(layer.to_dict()) == layer
    with pytest.raises(LayerError, match=r"^layer type 'Conv3d' is unknown; allowed: Dense, "):
        layer_from_dict({"type": "Conv3d"})
    with pytest.raises(LayerError, match=r"^Dense: .*allowed keys: in_features, out_features"):
        layer_from_dict({"type": "Dense", "in_features": 2, "out_features": 2, "kernel": 3})


# -- the references -------------------------------------------------------------------------------
def _naive_conv(x, w, layer):
    """Seven nested loops, the textbook definition."""
    n, o, oh, ow = layer.out_shape(x.shape)
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    cg = layer.in_channels // layer.groups
    og = o // layer.groups
    out = np.zeros((n, o, oh, ow), dtype=object)
    for b, oc, y, xx in itertools.product(range(n), range(o), range(oh), range(ow)):
        g = oc // og
        acc = 0
        for c, i, j in itertools.product(range(cg), range(kh), range(kw)):
            r, s = y * sh + i - ph, xx * sw + j - pw
            if 0 <= r < x.shape[2] and 0 <= s < x.shape[3]:
                acc += int(x[b, g * cg + c, r, s]) * int(w[oc, c, i, j])
        out[b, oc, y, xx] = acc
    return out


CONVS = [
    (Conv2d(3, 4, kernel=3, padding=1), (2, 3, 5, 6)),
    (Conv2d(4, 3, kernel=3, stride=2, padding=1), (1, 4, 7, 7)),
    (Conv2d(3, 6, kernel=3, padding=1, groups=3), (1, 3, 5, 4)),
    (Conv2d(2, 2, kernel=(5, 3), stride=(2, 1), padding=(2, 0)), (1, 2, 8, 6)),
    (Conv2d(1, 2, kernel=7, stride=4, padding=6), (1, 1, 9, 9)),
    (Conv2d(5, 2, kernel=1), (1, 5, 3, 4)),
]


@pytest.mark.parametrize("layer, shape", CONVS)
def test_direct_conv_matches_the_definition(layer, shape):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, shape)
    w = rng.integers(-128, 128, layer.weight_shape)
    got = conv2d_direct(x, w, layer)
    assert np.array_equal(got.astype(object), _naive_conv(x, w, layer))


def test_direct_conv_wide_values_are_exact():
    layer = Conv2d(2, 1, kernel=3, padding=1)
    x = np.full((1, 2, 3, 3), (1 << 31) - 1, dtype=np.int64)
    w = np.full((1, 2, 3, 3), -(1 << 31), dtype=np.int64)
    got = conv2d_direct(x, w, layer)
    assert got[0, 0, 1, 1] == 18 * ((1 << 31) - 1) * -(1 << 31)


@pytest.mark.parametrize("layer, shape", CONVS)
def test_mapper_im2col_equals_direct_conv(layer, shape):
    """The mapper's lowering (vectorized im2col) times the weight matrix is the direct conv."""
    rng = np.random.default_rng(2)
    x = rng.integers(-8, 8, shape)
    w = rng.integers(-8, 8, layer.weight_shape)
    n, o, oh, ow = layer.out_shape(shape)
    og = o // layer.groups
    out = np.zeros((n, o, oh, ow), dtype=np.int64)
    for g in range(layer.groups):
        a = im2col(x, layer, g)
        b = w[g * og:(g + 1) * og].reshape(og, -1).T
        out[:, g * og:(g + 1) * og] = (a @ b).reshape(n, oh, ow, og).transpose(0, 3, 1, 2)
    assert np.array_equal(out, conv2d_direct(x, w, layer))


@pytest.mark.parametrize("layer, shape", CONVS)
def test_int_reference_codes_are_the_wrapped_direct_conv(layer, shape):
    """For int8 x int8 into a 16-bit accumulator (so wraps happen), the kind-level reference
    of every output equals the direct convolution of the values, wrapped to 16 bits."""
    cfg = load_config("int8-4x4")
    from dataclasses import replace
    pe = replace(cfg.pe, acc_bits=16)
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, shape)
    w = rng.integers(-128, 128, layer.weight_shape)
    xc, wc = (x % 256).astype(np.uint64), (w % 256).astype(np.uint64)
    got = reference_codes(pe, layer, xc, wc)
    want = np.vectorize(lambda v: int(v) % (1 << 16), otypes=[object])(
        conv2d_direct(x, w, layer)).astype(np.uint64)
    assert np.array_equal(got, want)


def test_dense_reference_is_the_matmul():
    cfg = load_config("int8-4x4")
    rng = np.random.default_rng(4)
    x, w = rng.integers(-128, 128, (3, 9)), rng.integers(-128, 128, (9, 5))
    got = reference_codes(cfg.pe, Dense(9, 5), x % 256, w % 256)
    assert np.array_equal(got, ((x @ w) % (1 << 32)).astype(np.uint64))


# -- host layers ----------------------------------------------------------------------------------
def test_pooling_against_loops():
    rng = np.random.default_rng(5)
    x = rng.integers(-50, 50, (2, 3, 7, 6))
    mp = MaxPool2d(kernel=3, stride=2, padding=1)
    ap = AvgPool2d(kernel=3, stride=2, padding=1)
    n, c, oh, ow = mp.out_shape(x.shape)
    want_max = np.zeros((n, c, oh, ow), dtype=np.int64)
    want_avg = np.zeros((n, c, oh, ow))
    for b, ch, y, xx in itertools.product(range(n), range(c), range(oh), range(ow)):
        vals = [x[b, ch, y * 2 + i - 1, xx * 2 + j - 1] for i in range(3) for j in range(3)
                if 0 <= y * 2 + i - 1 < 7 and 0 <= xx * 2 + j - 1 < 6]
        want_max[b, ch, y, xx] = max(vals)
        want_avg[b, ch, y, xx] = sum(vals) / len(vals)
    assert np.array_equal(apply_host(mp, x), want_max)
    np.testing.assert_allclose(apply_host(ap, x), want_avg, rtol=0, atol=1e-12)
    assert np.array_equal(apply_host(Relu(), x), np.where(x > 0, x, 0))
    assert np.array_equal(apply_host(Clip(-3, 6), x), np.minimum(np.maximum(x, -3), 6))
    assert apply_host(Flatten(), x).shape == (2, 3 * 7 * 6)
    assert np.array_equal(apply_host(Flatten(), x)[1], x[1].ravel())


# -- every preset's engine runs every layer case on the golden core -----------------------------
def _golden(cfg):
    return TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)


@pytest.mark.parametrize("preset", preset_names())
def test_layers_on_golden_core(preset):
    """The engine's layer mapper on the golden core: bit-exact against the reference for each
    of the engine's layer cases (quick set), with the GEMM shapes the lowering promises."""
    cfg = load_config(preset)
    for case in layer_cases(cfg, quick=True):
        layer = layer_from_dict(case["layer"])
        mode = case.get("mode")
        x, w = layer_operands(cfg, layer, case["input"], seed=case["seed"], mode=mode)
        drv = _golden(cfg)

        async def go():
            await drv.connect()
            return await run_layer(drv, layer, x, w, raw=True, mode=mode)
        with warnings.catch_warnings():       # narrow accumulators warn; the wrap is checked
            warnings.simplefilter("ignore", AccumulatorWarning)
            got, st = asyncio.run(go())
        want = reference_codes(cfg.pe, layer, x, w, k_split=st.k_split, mode=mode)
        assert np.array_equal(np.asarray(got, np.uint64), np.asarray(want, np.uint64)), \
            f"{preset} {case['name']}"
        assert st.gemms == GemmLowering(cfg).gemms(layer, tuple(case["input"]))
        assert st.runs >= len(st.gemms) and st.cycles == sum(st.run_cycles)
        assert st.bytes_out > 0 and st.bytes_in > 0
        assert st.macs == layer.macs(tuple(case["input"]))


def test_run_layer_refusals():
    cfg = load_config("int8-4x4")
    drv = _golden(cfg)
    layer = Conv2d(3, 4, kernel=3, padding=1)
    x = np.zeros((1, 3, 4, 4), dtype=np.uint64)

    async def go(**kw):
        await drv.connect()
        return await run_layer(drv, layer, **kw)
    with pytest.raises(LayerError, match=re.escape("Conv2d: weights of shape (4, 3, 3, 2); "
                                                   "expected (4, 3, 3, 3) or (27, 4)")):
        asyncio.run(go(x=x, w=np.zeros((4, 3, 3, 2), np.uint64), raw=True))
    with pytest.raises(LayerError, match=r"^Conv2d: input shape \(1, 2, 4, 4\) must be "):
        asyncio.run(go(x=np.zeros((1, 2, 4, 4)), w=np.zeros((4, 3, 3, 3)), raw=True))
    with pytest.raises(LayerError, match=r"^Conv2d: weights are required$"):
        asyncio.run(go(x=x))
    # A host layer needs no core.
    y, st = asyncio.run(run_layer(drv, MaxPool2d(), np.arange(16.).reshape(1, 1, 4, 4)))
    assert st.where == "host" and y.tolist() == [[[[5., 7.], [13., 15.]]]]


# -- the on-chip epilogue through the layer path ----------------------------------------------
def test_epilogue_layer_cases_on_golden_core():
    """The int8-requant preset's epilogue cases: golden core == the exact epilogue reference
    applied to the layer reference; the outputs are spread (not all clamped)."""
    from tessera.sim.epilogue_ref import reference_layer_codes
    from tessera.sim.lowering import case_bias, requant_params
    cfg = load_config("int8-requant")
    epi = cfg.engine.epilogue()
    cases = [c for c in layer_cases(cfg) if c.get("epilogue")]
    assert len(cases) == 3
    for case in cases:
        layer = layer_from_dict(case["layer"])
        x, w = cfg.engine.layer_operands(layer, case["input"], seed=case["seed"])
        kw = {"epilogue": case["epilogue"], "bias": case_bias(cfg, layer, case)}
        got, st = asyncio.run(run_layer(_golden(cfg), layer, x, w, raw=True, **kw))
        acc = cfg.engine.layer_reference(layer, x, w)
        params = requant_params(cfg.engine, kw["epilogue"], kw["bias"], acc.shape[1])
        want = reference_layer_codes(acc, params, acc_bits=epi.acc_bits, out_bits=epi.out_bits)
        assert np.array_equal(got, want), case["name"]
        assert len(np.unique(got)) > 10, case["name"]


def test_epilogue_values_and_bytes():
    """Values in, requantized int8 values out; the results cross the link at operand width."""
    from tessera.sim.epilogue import int_epilogue, quantize_multiplier
    cfg = load_config("int8-requant")
    layer = Conv2d(3, 8, kernel=3, padding=1)
    rng = np.random.default_rng(9)
    x = rng.integers(-128, 128, (1, 3, 8, 8))
    w = rng.integers(-128, 128, layer.weight_shape)
    bias = rng.integers(-3000, 3000, 8)
    acc, plain = asyncio.run(_golden(cfg).run_layer(layer, x, w))
    y, req = asyncio.run(_golden(cfg).run_layer(
        layer, x, w, bias=bias, epilogue={"scale": 0.002, "zero_point": 5,
                                          "activation": "relu"}))
    mult, shift = quantize_multiplier(0.002)
    want = int_epilogue(acc, np.broadcast_to(bias.reshape(1, 8, 1, 1), acc.shape), mult, shift,
                        5, 5, 127, acc_bits=32, out_bits=8)
    assert np.array_equal(y, want) and y.min() >= 5
    # 64 outputs x 8 channels: 4 bytes each as accumulators, 1 byte each requantized; the
    # requantized layer gets one more status byte (its parameter WRITE).
    assert plain.bytes_in - req.bytes_in == 8 * 8 * 8 * 3 - 1


@pytest.mark.parametrize("epilogue, msg", [
    ({"scale": 1.5}, r"^real_scale must be a finite number in \(0, 1\), not 1\.5$"),
    ({"mult": 1 << 30}, r"^epilogue: needs scale, or mult and shift$"),
    ({"scale": 0.1, "mult": 3, "shift": 1}, r"^epilogue: give scale, or mult and shift"),
    ({"scale": 0.1, "relu": True}, r"^epilogue: unknown keys \['relu'\]; allowed: "),
    ({"scale": 0.1, "activation": "gelu"}, r"^epilogue\.activation: 'gelu' is unknown"),
])
def test_epilogue_parameters_refused(epilogue, msg):
    cfg = load_config("int8-requant")
    layer = Dense(4, 2)
    with pytest.raises(ValueError, match=msg):
        asyncio.run(_golden(cfg).run_layer(layer, np.zeros((1, 4)), np.zeros((4, 2)),
                                           epilogue=epilogue))


def test_epilogue_refused_without_one():
    cfg = load_config("int8-4x4")
    with pytest.raises(LayerError, match=r"^epilogue: this core has no on-chip epilogue "
                                         r"\(pe\.kind 'int', memory\.p_depth 0\); allowed: "):
        asyncio.run(_golden(cfg).run_layer(Dense(4, 2), np.zeros((1, 4)), np.zeros((4, 2)),
                                           epilogue={"scale": 0.5}))


def test_report_layers_file_in_docs_parses(tmp_path):
    """The [[layer]] example of docs/layers.md loads and fits the default core."""
    import pathlib
    import re as _re
    from tessera.generators.report import load_layers_file, report_layers
    doc = (pathlib.Path(__file__).parent.parent / "docs" / "layers.md").read_text()
    block = _re.search(r"```toml\n(.*?)```", doc, _re.S).group(1)
    (tmp_path / "l.toml").write_text(block)
    layers = load_layers_file(tmp_path / "l.toml")
    assert [n for n, _, _ in layers] == ["stem", "classifier"]
    cases = report_layers(load_config("int8-4x4"), layers)
    assert [c["name"] for c in cases] == ["stem", "classifier"]


def test_accumulator_overflow_warns_with_the_bound():
    """int8 x int8 into 16 bits: K = 27 can reach 27 * 2**14 > 2**15 - 1; the layer still runs
    (wrapping exactly as the reference) and says so; K = 1 does not warn."""
    from tessera.generators.config import config_from_dict
    cfg = config_from_dict({"array": {"rows": 2, "cols": 2},
                            "pe": {"kind": "int", "acc_bits": 16}})
    layer = Conv2d(3, 2, kernel=3, padding=1)
    x = np.full((1, 3, 4, 4), -128)
    w = np.full(layer.weight_shape, -128)
    with pytest.warns(AccumulatorWarning, match=r"^Conv2d: the accumulator may overflow: "
                                                r"K=27 products reach 442368 in the worst "
                                                r"case, pe\.acc_bits holds 32767$"):
        y, _ = asyncio.run(_golden(cfg).run_layer(layer, x, w))
    exact = conv2d_direct(x, w, layer)
    assert np.array_equal(y, (exact + (1 << 15)) % (1 << 16) - (1 << 15))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(_golden(cfg).run_layer(Conv2d(1, 2, kernel=1), x[:, :1], w[:, :1, :1, :1]))
