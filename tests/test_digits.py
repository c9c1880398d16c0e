"""The digits networks (tessera.sim.digits): the fixed split, deterministic training, the float
accuracy, and the ONNX exports run by onnxruntime (float to 1e-5 of `FloatNet.forward`, int8
QDQ within one accuracy point of the float model)."""

import numpy as np
import onnx
import pytest

from tessera.sim.digits import (FloatNet, INPUT_NAME, OUTPUT_NAME, export_onnx, export_qdq,
                                load_split, ort_session, train_cnn, train_mlp)
from tessera.sim.layers import Conv2d, Dense, Flatten, MaxPool2d, Relu

TRAINERS = {"mlp": train_mlp, "cnn": train_cnn}


@pytest.fixture(scope="module")
def split():
    return load_split(0)


@pytest.fixture(scope="module")
def nets():
    return {k: f(0) for k, f in TRAINERS.items()}


@pytest.fixture(scope="module")
def onnx_paths(nets, split, tmp_path_factory):
    d = tmp_path_factory.mktemp("digits")
    out = {}
    for k, net in nets.items():
        fp, qp = d / f"{k}.onnx", d / f"{k}_qdq.onnx"
        export_onnx(net, fp)
        export_qdq(fp, split[0], qp)
        out[k] = (fp, qp)
    return out


def _run(path, x):
    sess = ort_session(path)
    return sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


# -- data ---------------------------------------------------------------------------------------
def test_split_sizes_and_types(split):
    x_tr, y_tr, x_te, y_te = split
    assert x_tr.shape == (1347, 1, 8, 8) and x_te.shape == (450, 1, 8, 8)
    assert y_tr.shape == (1347,) and y_te.shape == (450,)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int64
    assert x_tr.min() == 0.0 and x_tr.max() == 1.0
    np.testing.assert_array_equal(x_tr * 16, np.round(x_tr * 16))     # k/16 exactly
    # Stratified: every class 43..46 times in the test set.
    assert np.bincount(y_te, minlength=10).min() >= 43


def test_split_deterministic(split):
    again = load_split(0)
    for a, b in zip(split, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(load_split(1)[1], split[1])


# -- training -----------------------------------------------------------------------------------
def test_layers(nets):
    assert [type(l) for l in nets["mlp"].layers] == [Flatten, Dense, Relu, Dense]
    assert nets["mlp"].layers[1] == Dense(64, 64, bias=True)
    assert [type(l) for l in nets["cnn"].layers] == [Conv2d, Relu, Conv2d, Relu, MaxPool2d,
                                                     Flatten, Dense]
    assert nets["cnn"].layers[2] == Conv2d(8, 16, kernel=3, padding=1, bias=True)
    for net in nets.values():
        for layer, w, b in zip(net.layers, net.weights, net.biases):
            if isinstance(layer, (Dense, Conv2d)):
                assert w.dtype == b.dtype == np.float32 and w.shape == layer.weight_shape
                assert not w.flags.writeable
            else:
                assert w is None and b is None


@pytest.mark.parametrize("kind", TRAINERS)
def test_training_deterministic(nets, kind):
    again = TRAINERS[kind](0)
    for a, b in zip(nets[kind].weights + nets[kind].biases, again.weights + again.biases):
        assert (a is None and b is None) or a.tobytes() == b.tobytes()


@pytest.mark.parametrize("kind", TRAINERS)
def test_float_accuracy(nets, split, kind):
    assert nets[kind].accuracy(split[2], split[3]) > 0.96


def test_floatnet_checks_parameters(nets):
    net = nets["mlp"]
    with pytest.raises(ValueError, match=r"^FloatNet: Dense weights of shape \(64, 63\), "
                                         r"expected \(64, 64\)$"):
        FloatNet("bad", net.layers, (None, np.zeros((64, 63)), None, net.weights[3]),
                 net.biases)


# -- ONNX ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", TRAINERS)
def test_float_onnx_matches_forward(nets, split, onnx_paths, kind):
    model = onnx.load(str(onnx_paths[kind][0]))
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    got = _run(onnx_paths[kind][0], split[2])
    np.testing.assert_allclose(got, nets[kind].forward(split[2]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", TRAINERS)
def test_qdq_accuracy(nets, split, onnx_paths, kind):
    model = onnx.load(str(onnx_paths[kind][1]))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "Relu" not in ops
    got = _run(onnx_paths[kind][1], split[2])
    acc_q = float(np.mean(np.argmax(got, axis=1) == split[3]))
    acc_f = nets[kind].accuracy(split[2], split[3])
    assert abs(acc_q - acc_f) <= 0.01, (acc_q, acc_f)


def test_qdq_deterministic(split, onnx_paths, tmp_path):
    fp, qp = onnx_paths["mlp"]
    export_qdq(fp, split[0], tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == qp.read_bytes()
