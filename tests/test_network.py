"""The network front end: ONNX import (float and int8 QDQ), integer PTQ, the quantized-network
file, and whole networks on the golden core against the independent reference and against
onnxruntime's own execution of the QDQ model."""

import asyncio

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tessera.generators.config import config_from_dict, load_config
from tessera.sim import digits
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.layers import Conv2d, Dense, LayerError, Pad2d, apply_host, conv2d_direct
from tessera.sim.onnx_import import OnnxError, is_qdq, load_float, load_qdq
from tessera.sim.ptq import FloatModel, Stats, clip_range, quantize, sawb_coefficients
from tessera.sim.qnet import (QLayer, QNet, k_splits_of, load, padded_conv, quantize_input,
                              reference_network, run_network)


@pytest.fixture(scope="module")
def data():
    return digits.load_split()


@pytest.fixture(scope="module")
def nets(tmp_path_factory, data):
    x_tr = data[0]
    d = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, train in (("mlp", digits.train_mlp), ("cnn", digits.train_cnn)):
        net = train()
        f, q = d / f"{name}.onnx", d / f"{name}_qdq.onnx"
        digits.export_onnx(net, f)
        digits.export_qdq(f, x_tr, q)
        out[name] = (net, f, q)
    return out


def golden(cfg, qnet, x, **kw):
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)

    async def go():
        await drv.connect()
        return await run_network(drv, qnet, x, **kw)
    return asyncio.run(go())


def ort_run(path, x):
    sess = digits.ort_session(path)
    return sess.run(None, {"input": np.asarray(x, dtype=np.float32)})[0]


# -- float import ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_float_import_equals_the_trained_net(nets, data, name):
    net, f, _ = nets[name]
    fm = load_float(f)
    x = data[2][:64]
    assert [s.layer for s in fm.steps] == list(net.layers)
    np.testing.assert_allclose(fm.forward(x), net.forward(x), rtol=0, atol=1e-9)
    assert not is_qdq(f)


def _model(nodes, inits, in_shape=(1, 1, 6, 6), out_shape=None, opset=13):
    g = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                   ["N", *in_shape[1:]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _save(tmp_path, model, name="m.onnx"):
    p = tmp_path / name
    onnx.save(model, p)
    return p


def test_float_import_ops(tmp_path):
    """MatMul + Add, Conv with transB-free Gemm, Clip, AveragePool, GlobalAveragePool, Reshape,
    Softmax at the end: the imported model computes what onnxruntime computes."""
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((4, 1, 3, 3))
    w2 = rng.standard_normal((4, 5))
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r"]),
        helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Reshape", ["g", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "w2"], ["m"]),
        helper.make_node("Add", ["m", "b2"], ["a"]),
        helper.make_node("Softmax", ["a"], ["y"], axis=1),
    ]
    inits = {"w1": w1, "b1": rng.standard_normal(4), "lo": -0.5, "hi": 1.5,
             "w2": w2, "b2": rng.standard_normal(5)}
    m = _model(nodes, inits)
    m.graph.initializer.append(numpy_helper.from_array(np.array([-1, 4], np.int64), "shape"))
    p = _save(tmp_path, m)
    fm = load_float(p)
    assert [s.layer.type for s in fm.steps] == ["Conv2d", "Clip", "AvgPool2d", "AvgPool2d",
                                                "Flatten", "Dense"]
    x = rng.random((3, 1, 6, 6)).astype(np.float32)
    ours = fm.forward(x)
    ref = ort_run(p, x)
    np.testing.assert_allclose(np.exp(ours) / np.exp(ours).sum(1, keepdims=True), ref,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("node,inits,msg", [
    (helper.make_node("Sigmoid", ["input"], ["y"], name="sig"), {},
     r"node 'sig' \(Sigmoid\): op not supported; supported: Gemm, MatMul"),
    (helper.make_node("Conv", ["input", "w"], ["y"], name="c", pads=[1, 0, 0, 1]),
     {"w": np.ones((2, 1, 3, 3))}, r"node 'c' \(Conv\): pads \[1, 0, 0, 1\]; supported: "
                                   r"symmetric"),
    (helper.make_node("Conv", ["input", "w"], ["y"], name="c", dilations=[2, 2]),
     {"w": np.ones((2, 1, 3, 3))}, r"node 'c' \(Conv\): dilations \[2, 2\]; supported: 1"),
    (helper.make_node("MaxPool", ["input"], ["y"], name="mp", kernel_shape=[2, 2],
                      ceil_mode=1), {}, r"node 'mp' \(MaxPool\): ceil_mode 1; supported"),
    (helper.make_node("Conv", ["input", "w"], ["y"], name="big"),
     {"w": np.ones((2, 1, 9, 9))}, r"node 'big' \(Conv\): Conv2d.kernel"),
])
def test_unsupported_is_refused_in_one_line(tmp_path, node, inits, msg):
    m = _model([node], inits, in_shape=(1, 1, 12, 12))
    with pytest.raises(OnnxError, match=msg) as e:
        load_float(_save(tmp_path, m))
    assert "\n" not in str(e.value)


def test_non_chain_and_opset_refused(tmp_path):
    nodes = [helper.make_node("Relu", ["input"], ["a"]), helper.make_node("Relu", ["input"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["y"])]
    with pytest.raises(OnnxError, match=r"tensor 'input' feeds 2 nodes; supported: a chain"):
        load_float(_save(tmp_path, _model(nodes, {})))
    old = _model([helper.make_node("Relu", ["input"], ["y"])], {}, opset=11)
    with pytest.raises(OnnxError, match=r"opset 11; supported: 13 and later"):
        load_float(_save(tmp_path, old, "old.onnx"))


# -- QDQ import against onnxruntime -----------------------------------------------------------------
@pytest.mark.parametrize("name,n", [("mlp", 450), ("cnn", 120)])
def test_qdq_outputs_match_onnxruntime(nets, data, name, n):
    """The QDQ model's int8 logits: tessera's reference (gemmlowp requantization) against
    onnxruntime's execution (float requantization, round half to even): identical or one
    level apart on every value, the same class on every image."""
    _, _, qdq = nets[name]
    cfg = load_config("int8-8x8")
    assert is_qdq(qdq)
    q = load_qdq(qdq, cfg.pe)
    x = data[2][:n]
    ref = reference_network(q, cfg.pe, x)
    o = ort_run(qdq, x)
    act = q.layers[-1].act
    levels = np.rint(o / act["scale"]).astype(np.int64) + act["zero_point"]
    diff = np.abs(levels - ref.outputs)
    assert diff.max() <= 1
    assert np.mean(diff == 0) > 0.95
    assert np.array_equal(np.argmax(o, axis=1), ref.classes)


def test_qdq_on_the_core_equals_reference(nets, data):
    """The QDQ CNN on the int8 core with the on-chip epilogue, and on one without (host
    epilogue): identical outputs, equal to the reference."""
    _, _, qdq = nets["cnn"]
    x = data[2][:12]
    for preset in ("int8-requant", "int8-4x4"):
        cfg = load_config(preset)
        q = load_qdq(qdq, cfg.pe)
        res = golden(cfg, q, x, batch=6)
        ref = reference_network(q, cfg.pe, x, k_splits=k_splits_of(res))
        assert np.array_equal(res.outputs, ref.outputs)
        where = {r.layer.type + str(r.index): r.epilogue for r in res.records}
        assert ("core" if preset == "int8-requant" else "host") in where.values()


def test_qdq_refuses_a_core_that_is_not_int8(nets):
    _, _, qdq = nets["mlp"]
    with pytest.raises(LayerError, match=r"QDQ int8 model runs on an 8-bit integer core .* "
                                         r"pe.kind 'fpmac'"):
        load_qdq(qdq, load_config("fp8").pe)


# -- integer PTQ --------------------------------------------------------------------------------------
def test_int8_ptq_accuracy_and_golden_mlp(nets, data):
    """int8 PTQ of the MLP: within 0.5 point of the float model on the 450 test images; the
    golden core (epilogue on chip) equals the reference on every image."""
    x_tr, _, x_te, y_te = data
    net = nets["mlp"][0]
    cfg = load_config("int8-requant")
    q = quantize(FloatModel.from_net(net), cfg.pe, x_tr)
    ref = reference_network(q, cfg.pe, x_te)
    assert abs(np.mean(ref.classes == y_te) - net.accuracy(x_te, y_te)) <= 0.005
    res = golden(cfg, q, x_te, batch=150)
    assert np.array_equal(res.outputs, ref.outputs)
    assert [r.epilogue for r in res.records] == ["host layer", "core", "none"]


def test_int4_and_bitfusion_mixed_ptq(nets, data):
    """int4 (a_bits = b_bits = 4) and a mixed Bit Fusion precision list run bit-exact; int4 stays
    within 2 points of float on the MLP."""
    x_tr, _, x_te, y_te = data
    net = nets["mlp"][0]
    d = load_config("int8-4x4").to_dict()
    d["pe"].update(a_bits=4, b_bits=4)
    cfg4 = config_from_dict(d)
    q4 = quantize(FloatModel.from_net(net), cfg4.pe, x_tr, method="percentile")
    ref4 = reference_network(q4, cfg4.pe, x_te)
    assert np.mean(ref4.classes == y_te) >= net.accuracy(x_te, y_te) - 0.02
    assert max(np.abs(ql.w).max() for ql in q4.layers if ql.w is not None) <= 7
    bf = load_config("bitfusion")
    qb = quantize(FloatModel.from_net(net), bf.pe, x_tr, precisions="8,4x2")
    assert qb.meta["modes"] == ["a8u_w8s", "a4u_w2s"]
    res = golden(bf, qb, x_te[:20])
    assert np.array_equal(res.outputs, reference_network(qb, bf.pe, x_te[:20]).outputs)


def test_ptq_options_refused(nets, data):
    fm = FloatModel.from_net(nets["mlp"][0])
    pe = load_config("int8-4x4").pe
    with pytest.raises(LayerError, match=r"option 'precisions' does not apply to pe.kind 'int'"):
        quantize(fm, pe, data[0][:10], precisions="8,8")
    with pytest.raises(LayerError, match=r"method 'mse' is unknown; allowed: max, percentile, "
                                         r"sawb"):
        quantize(fm, pe, data[0][:10], method="mse")
    with pytest.raises(LayerError, match=r"precisions: '3' is not a precision of this kind"):
        quantize(fm, load_config("bitfusion").pe, data[0][:10], precisions="8,3")


def test_sawb_clip_is_near_mse_optimal():
    """The fitted SAWB clip of a fresh Gaussian and Laplace sample lands within 10 % of the
    brute-force MSE-optimal clip's MSE, at 2, 4 and 8 bits."""
    rng = np.random.default_rng(99)
    for bits in (2, 4, 8):
        levels = (1 << (bits - 1)) - 1
        for w in (rng.standard_normal(40_000) * 0.3, rng.laplace(0, 0.1, 40_000)):
            st = Stats()
            st.add(w)

            def mse(alpha):
                q = np.clip(np.round(w / alpha * levels), -levels, levels) * alpha / levels
                return np.mean((w - q) ** 2)
            best = min(mse(a) for a in np.linspace(0.02, 1, 400) * np.abs(w).max())
            assert mse(clip_range(st, "sawb", bits)) <= 1.1 * best
    c1, c2 = sawb_coefficients(4)
    assert c1 > 0 and c2 > 0


# -- the file and the padding rule --------------------------------------------------------------------
def test_qnet_file_round_trip(tmp_path, nets, data):
    cfg = load_config("int8-8x8")
    q = load_qdq(nets["cnn"][2], cfg.pe)
    p = q.save(tmp_path / "cnn.npz")
    q2 = load(p)
    x = data[2][:5]
    assert np.array_equal(reference_network(q2, cfg.pe, x).outputs,
                          reference_network(q, cfg.pe, x).outputs)
    with pytest.raises(LayerError, match=r"quantized for another PE: pe.kind: network 'int', "
                                         r"core 'fpmac'"):
        q2.check_core(load_config("fp8"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(LayerError, match=r"not a tessera quantized network"):
        load(bad)


def test_padded_conv_pads_with_the_zero_point():
    """A padded convolution on affine activations equals the real convolution only when the
    padding is the zero point: the split (host Pad2d + unpadded conv) does that."""
    rng = np.random.default_rng(5)
    layer = Conv2d(2, 3, kernel=3, padding=1)
    zx, sx = -7, 0.05
    q = rng.integers(-128, 128, (1, 2, 5, 5))
    w = rng.integers(-5, 6, layer.weight_shape)
    real = conv2d_direct(sx * (q - zx), w.astype(float), layer)
    parts = padded_conv(layer, zx, w=w)
    assert isinstance(parts[0].layer, Pad2d) and parts[1].layer.padding == (0, 0)
    acc = conv2d_direct(apply_host(parts[0].layer, q), w, parts[1].layer)
    colsum = w.sum(axis=(1, 2, 3)).reshape(1, -1, 1, 1)
    np.testing.assert_allclose(sx * (acc - zx * colsum), real, atol=1e-9)
    assert padded_conv(layer, 0, w=w)[0].layer is layer


def test_quantize_input_rounding():
    q = QNet("n", {}, {"scale": 0.5, "zero_point": 3, "lo": -128, "hi": 127, "grid": "int"},
             (2,), [QLayer(Dense(2, 2))])
    assert quantize_input(q, np.array([[0.25, -0.25]])).tolist() == [[4, 2]]
    q.input["round"] = "half_even"
    assert quantize_input(q, np.array([[0.25, 0.75]])).tolist() == [[3, 5]]
    assert quantize_input(q, np.array([[1e6, -1e6]])).tolist() == [[127, -128]]
