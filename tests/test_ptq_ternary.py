"""Ternary post-training quantization (tessera.sim.ptq_ternary) on the digits networks.

Measured: accuracy on the 450 test images by `reference_network` (the golden core gave the
same outputs on every image tried: all 450 of both nets at act_bits 8), float MLP 0.980 and
float CNN 0.980; the ``ternary`` preset (act_bits 8) and the same core with act_bits 4 and 2.

Defaults (weights twn, method sawb), with the empirical bias correction (`quantize_ternary`)
and without it (`tessera.sim.ptq.quantize`, which does not hand the images to the recipe):

=====  ========  ===============  ============
net    act_bits  bias corrected   weights only
=====  ========  ===============  ============
MLP    8         0.962            0.876
MLP    4         0.960            0.862
MLP    2         0.931            0.838
CNN    8         0.953            0.824
CNN    4         0.951            0.811
CNN    2         0.909            0.771
=====  ========  ===============  ============

The threshold rules with method max (twn / mse / ttq t=0.05):

=====  ========  =====================  =====================
net    act_bits  bias corrected         weights only
=====  ========  =====================  =====================
MLP    8         0.962 / 0.947 / 0.938  0.876 / 0.831 / 0.860
MLP    4         0.958 / 0.944 / 0.936  0.862 / 0.827 / 0.853
MLP    2         0.904 / 0.911 / 0.889  0.833 / 0.818 / 0.804
CNN    8         0.953 / 0.956 / 0.847  0.824 / 0.769 / 0.578
CNN    4         0.951 / 0.951 / 0.842  0.811 / 0.758 / 0.547
CNN    2         0.809 / 0.851 / 0.736  0.760 / 0.724 / 0.496
=====  ========  =====================  =====================

(The same numbers come from float NumPy with the ternarized weights, so the loss is the
ternarization's, not the datapath's.) The tests: what the recipe makes is representable
(weights encode, scale codes fit, the accumulator cannot wrap, epilogue parameters accepted);
20 CNN images on the golden core equal the independent reference exactly; the MLP's accuracy
floors, a few points under the measurements; bad options and a layer without ReLU are refused
in one line.
"""

import asyncio
import warnings

import numpy as np
import pytest

from tessera.generators.config import config_from_dict, load_config
from tessera.sim import digits
from tessera.sim.layers import Dense, Flatten, LayerError, Relu
from tessera.sim.ptq import FloatModel, FStep, quantize
from tessera.sim.ptq_ternary import TernaryRecipe, _mse_delta, quantize_ternary, \
    ternary_channels
from tessera.sim.qnet import load, reference_network, run_network


def _cfg(act_bits=None, **pe):
    cfg = load_config("ternary")
    if act_bits is None and not pe:
        return cfg
    d = cfg.to_dict()
    d["pe"].update(pe)
    if act_bits is not None:
        d["pe"]["act_bits"] = act_bits
    return config_from_dict(d)


@pytest.fixture(scope="module")
def split():
    return digits.load_split(0)


@pytest.fixture(scope="module")
def mlp():
    return FloatModel.from_net(digits.train_mlp(0))


@pytest.fixture(scope="module")
def cnn():
    return FloatModel.from_net(digits.train_cnn(0))


@pytest.fixture(scope="module")
def q_cnn(cnn, split):
    return quantize_ternary(cnn, _cfg().pe, split[0])


# -- the ternarizer ----------------------------------------------------------------------------
def test_thresholds():
    rng = np.random.default_rng(5)
    w = rng.normal(0, 1, (40, 3))
    for rule, want in (("twn", 0.7 * np.abs(w).mean(axis=0)),
                       ("ttq", 0.05 * np.abs(w).max(axis=0))):
        s, wp, wn, d = ternary_channels(w, rule)
        np.testing.assert_allclose(d, want)
        np.testing.assert_allclose(wp, [w[w[:, c] > d[c], c].mean() for c in range(3)])
        np.testing.assert_allclose(wn, [-w[w[:, c] < -d[c], c].mean() for c in range(3)])
    # mse: no other cut has a smaller ||w - w_t||^2 (brute force over the magnitudes)
    v = rng.laplace(0, 1, 37)

    def err(d):
        p, n = v[v > d], v[v < -d]
        return float(((p - p.mean()) ** 2).sum() if p.size else 0) + \
            float(((n - n.mean()) ** 2).sum() if n.size else 0) + float((v[np.abs(v) <= d] ** 2)
                                                                         .sum())
    best = min([0.0, *np.abs(v)], key=err)
    assert err(_mse_delta(v)) == pytest.approx(err(best))
    # one pair per layer
    s, wp, wn, d = ternary_channels(w, "twn", per_channel=False)
    assert len(set(wp)) == len(set(wn)) == len(set(d)) == 1


# -- representable -----------------------------------------------------------------------------
def _check_representable(q, pe):
    top = (1 << (pe.acc_bits - 1)) - 1
    amax = (1 << pe.act_bits) - 1
    epi = pe.epilogue()
    assert q.input["lo"] == 0 and q.input["hi"] == amax and q.input["zero_point"] == 0
    for ql in q.layers:
        if not ql.on_chip:
            continue
        w = np.asarray(ql.w, dtype=np.float64)
        k = w.shape[0]
        assert w.shape == (k, ql.channels)
        b = pe.encode(w, operand="b")             # raises on anything off the grid
        np.testing.assert_array_equal(pe.decode(b, operand="b"), w)
        assert b.wp.max() <= (1 << pe.scale_bits) - 1 and b.wn.min() >= 1
        if not pe.per_channel:
            assert len(set(b.wp)) == len(set(b.wn)) == 1
        n_p = (b.codes == 0b01).sum(axis=0)
        n_n = (b.codes == 0b11).sum(axis=0)
        bias = np.zeros(ql.channels) if ql.epilogue is None else np.abs(ql.bias)
        assert np.all(amax * np.maximum(n_p * b.wp, n_n * b.wn) + bias <= top)
        if ql.epilogue is not None:
            p = epi.user_params(ql.epilogue, ql.bias, ql.channels)
            assert p["mult"].min() > 0
            assert ql.act["lo"] == 0 and ql.act["hi"] == amax
        else:
            assert ql.out_scale.shape == (ql.channels,) and np.all(ql.out_scale > 0)


def test_representable(mlp, q_cnn, split):
    pe = _cfg().pe
    _check_representable(q_cnn, pe)
    for cfg in (_cfg(2), _cfg(per_channel=False)):
        _check_representable(quantize_ternary(mlp, cfg.pe, split[0][:300]), cfg.pe)
    q = quantize(mlp, pe, split[0][:300], weights="mse", method="max", bias_correction=False)
    _check_representable(q, pe)
    assert q.meta["recipe"] == "ternary" and q.meta["options"]["bias_correction"] == "none"
    # quantize hands the calibration images to the recipe: the correction is on by default
    assert quantize(mlp, pe, split[0][:300]).meta["options"]["bias_correction"] == "empirical"
    assert q_cnn.meta["options"] == {"method": "sawb", "percentile": 99.99, "weights": "twn",
                                     "bias_correction": "empirical"}


# -- golden core == reference ------------------------------------------------------------------
def test_cnn_golden_equals_reference(q_cnn, split, tmp_path):
    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.driver import TesseraDriver
    cfg = _cfg()
    q = load(q_cnn.save(tmp_path / "cnn.npz"))
    x = split[2][:20]
    ref = reference_network(q, cfg.pe, x)

    async def go():
        drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
        await drv.connect()
        with warnings.catch_warnings():      # the driver's bound assumes the largest scales
            warnings.simplefilter("ignore")
            return await run_network(drv, q, x, batch=20)
    got = asyncio.run(go())
    assert got.outputs.dtype == object and got.outputs.shape == (20, 10)
    assert np.array_equal(got.outputs, ref.outputs)          # exact Fractions
    np.testing.assert_array_equal(got.classes, ref.classes)
    assert np.mean(ref.classes == split[3][:20]) >= 0.85


# -- accuracy ----------------------------------------------------------------------------------
@pytest.mark.parametrize("act_bits, floor", [(8, 0.94), (2, 0.90)])
def test_mlp_accuracy(mlp, split, act_bits, floor):
    x_tr, _, x_te, y_te = split
    pe = _cfg(act_bits).pe
    acc = np.mean(reference_network(quantize_ternary(mlp, pe, x_tr), pe, x_te).classes == y_te)
    assert acc >= floor
    if act_bits == 8:              # without the bias correction
        acc0 = np.mean(reference_network(quantize(mlp, pe, x_tr, bias_correction=False), pe,
                                         x_te).classes == y_te)
        assert 0.85 <= acc0 < acc


# -- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("opts, msg", [
    ({"weights": "fancy"}, r"^quantize: weights 'fancy' is unknown; allowed: twn, ttq, mse$"),
    ({"threshold": 1.5}, r"^quantize: threshold 1.5 is out of range"),
    ({"weights": "twn", "threshold": 0.1}, r"^quantize: option 'threshold' applies to "
                                           r"weights='ttq' only"),
    ({"bias_correction": "yes"}, r"^quantize: bias_correction 'yes' is not a boolean"),
    ({"method": "median"}, r"^quantize: method 'median' is unknown"),
    ({"precisions": "8,8"}, r"^quantize: option 'precisions' does not apply to pe.kind "
                            r"'ternary'"),
])
def test_bad_options(opts, msg):
    with pytest.raises(LayerError, match=msg) as e:
        TernaryRecipe(_cfg().pe, **opts)
    assert "\n" not in str(e.value)


def test_threshold_alone_selects_ttq():
    assert TernaryRecipe(_cfg().pe, threshold=0.1).opts["weights"] == "ttq"


def test_refused_models(mlp, split):
    pe = _cfg().pe
    x = split[0][:50]
    no_relu = FloatModel([s for s in mlp.steps if not isinstance(s.layer, Relu)],
                         mlp.input_shape, "norelu")
    with pytest.raises(LayerError, match=r"^norelu: layer 1 \(Dense\) has no ReLU after it; "
                                         r".*unsigned") as e:
        quantize(no_relu, pe, x)
    assert "\n" not in str(e.value)
    with pytest.raises(LayerError, match=r"the input goes down to -1; .*non-negative"):
        quantize(mlp, pe, x - 1)
    relu_last = FloatModel([*mlp.steps, FStep(Relu())], mlp.input_shape, "rl")
    with pytest.raises(LayerError, match=r"^rl: the last layer's activation"):
        quantize(relu_last, pe, x)
    tiny = FloatModel([FStep(Flatten()), FStep(Dense(64, 10), np.zeros((64, 10)), None)],
                      (1, 8, 8), "zero")
    q = quantize_ternary(tiny, pe, x)          # all-zero weights: zero codes, scale 1
    assert np.all(reference_network(q, pe, split[2][:3]).logits == 0)
