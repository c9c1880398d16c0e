"""Ternary post-training quantization: the ``ternary`` kind (tree engine, dense or run-length).

A float network in, a `tessera.sim.qnet.QNet` whose every on-chip layer has weights 0, +Wp,
-Wn per output channel and unsigned ``k = pe.act_bits`` activation codes (the k-bit bounded
ReLU of DoReFa, `tessera.sim.ternary.quantize_act`). Entry points: `tessera.sim.ptq.quantize`
(through `TernaryKind.ptq_recipe`) and `quantize_ternary`, the same with the calibration
images handed to the recipe too, for the empirical bias correction (below).

**Weights** (per output channel when ``pe.per_channel``, else one (Wp, Wn) pair per layer):

* the threshold ``Delta`` by the ``weights`` option:

  - ``"twn"`` (the default): ``Delta = 0.7 * E|w|`` (Ternary Weight Networks, Li et al.
    2016: the approximate minimizer of ``||w - w_t||^2`` for Gaussian or uniform weights);
  - ``"ttq"``: ``Delta = threshold * max|w|`` (Trained Ternary Quantization, Zhu et al.
    2017; ``threshold`` default 0.05, the ``t`` of `tessera.sim.ternary.ternarize`). Giving
    ``threshold`` without ``weights`` selects this rule;
  - ``"mse"``: the ``Delta`` that minimizes ``||w - w_t||^2`` exactly, searched over every
    distinct ``|w|`` of the channel (the layer);

  The default is TWN's rule because it measured best on the digits networks (the tables in
  `tests/test_ptq_ternary.py`'s docstring): clearly best without the bias correction, and
  with it best or within 0.3 points of the best with the default ``method``. TTQ's ``t =
  0.05`` is meant as the start of training, not as a final threshold: it keeps 84 to 93 % of
  the weights non-zero and, without retraining, loses 40 to 48 points on the CNN. The exact
  weight-MSE threshold is not better than TWN's approximation on accuracy (the weight error
  is not the output error);

* ``Wp`` = the mean of the weights above ``Delta``, ``Wn`` = the mean of ``|w|`` over those
  below ``-Delta``: TTQ *learns* Wp and Wn; after training we take these means, TTQ's
  starting point and, for the chosen codes, the pair that minimizes ``||w - w_t||^2``. A
  sign with no weight takes the other sign's scale; an all-zero channel gets scale 1 and
  zero codes;
* the hardware wants ``Wp``, ``Wn`` as scale codes (multiples of ``2**-scale_frac`` up to
  ``(2**scale_bits - 1) * 2**-scale_frac``): each channel (layer) is multiplied by a grid
  factor ``g`` so its larger scale lands on the largest code ``2**scale_bits - 1``, or lower
  where that could overflow the accumulator: ``g`` is the largest factor with
  ``(2**k - 1) * max(n_p * Wp, n_n * Wn) + |bias|`` at most ``2**(acc_bits-1) - 1`` in
  accumulator units (``n_p``/``n_n``: the channel's +/- weights; every input code at its
  largest), so no accumulator and no ``acc + bias`` ever wraps. ``g`` is folded into the
  epilogue's scale (and the last layer's ``out_scale``). (The driver's overflow warning
  looks at the format's largest scale, not at these codes, so it still warns.)

**Activations**: per tensor, ``x = s * q`` with ``q`` in ``0 .. 2**k - 1`` and ``s = alpha /
(2**k - 1)``, ``alpha`` the clip of the calibrated tensor (`tessera.sim.ptq.clip_range`,
option ``method``: max, percentile, sawb; SAWB's coefficients for ``k + 1`` bits, the
symmetric format with the same ``2**k - 1`` positive levels). The default is ``"sawb"``: the
same as ``"max"`` at 8 bits (its clip reaches the largest value), equal at 4 bits, and 2 to 10
points better at 2 bits on the digits networks. The network's input and every
inner layer's output (after its ReLU) must be non-negative: an inner on-chip layer without a
fused ``Relu`` (or ``Clip`` from 0) is refused, naming it, as is an input that goes negative.

**Epilogue** (`tessera.generators.kinds.epilogue.TernaryEpilogueSpec`): the accumulator is
``A = sum q_x * code`` (the result value is ``A * 2**-scale_frac``), the layer's real output
``z = s_x * A / g + b``, so ``bias = round(b * g / s_x)`` (accumulator units), ``scale =
s_x / (g * s_y)`` (the epilogue's ``mult``/``shift``), and the quantizer clamps to ``0 ..
2**k - 1``, which is the ReLU and the bounded-ReLU clip at once. The last layer has no
epilogue: ``logits = (result value + bias) * out_scale`` on the host with ``out_scale =
s_x * 2**scale_frac / g`` and ``bias = b * g / (s_x * 2**scale_frac)`` (a real number).

**Empirical bias correction** (option ``bias_correction``, default on; it needs the
calibration images, which `quantize_ternary` hands over and `tessera.sim.ptq.quantize` does
not yet): ternary weights shift each output channel's mean, and with non-negative inputs the
shift does not average out. Layer by layer, on the calibration images, the float layer on the
float network's activations and the ternary layer on the quantized network's activations
(dequantized codes) are compared, and the float bias ``b[c]`` gains the difference of their
means over images and positions (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", ICCV 2019, its empirical variant; here also correcting
the error of the layers before). It is what makes post-training ternary usable on the digits
networks: +8 to +14 points on the MLP and CNN.
"""

import numbers

import numpy as np

from tessera.sim.layers import CHIP_TYPES, AvgPool2d, Clip, Dense, LayerError, Relu
from tessera.sim.ptq import FStep, Recipe, calibrate, float_step
from tessera.sim.ptq_int import ActQuant
from tessera.sim.qnet import QLayer, QNet, _host_layer, quantize_input


__all__ = ["TernaryRecipe", "WEIGHT_RULES", "ternary_channels", "quantize_ternary"]

#: Threshold rules of the ``weights`` option.
WEIGHT_RULES = ("twn", "ttq", "mse")


def _mse_delta(v):
    """The threshold minimizing ``||v - v_t||^2`` (Wp, Wn the means of each side): the
    error is ``sum v^2 - P^2/n_p - N^2/n_n`` (``P``, ``N`` the sums of the kept magnitudes
    of each sign), so the best threshold keeps, of each sign, the largest magnitudes down to
    a common cut; every distinct ``|v|`` is a candidate (keep those strictly above it)."""
    pos = np.sort(v[v > 0])[::-1]
    neg = np.sort(-v[v < 0])[::-1]
    cand = np.unique(np.abs(v))               # ascending; the last keeps nothing
    cpos = np.concatenate([[0.0], np.cumsum(pos)])
    cneg = np.concatenate([[0.0], np.cumsum(neg)])
    # number kept of each sign at cut c: those > c (sorted descending: count of > c)
    n_p = np.searchsorted(-pos, -cand, side="left")
    n_n = np.searchsorted(-neg, -cand, side="left")
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where(n_p > 0, cpos[n_p] ** 2 / np.maximum(n_p, 1), 0.0) + \
            np.where(n_n > 0, cneg[n_n] ** 2 / np.maximum(n_n, 1), 0.0)
    # the cut 0 keeps every non-zero weight; `cand` has it only when some weight is 0
    all_gain = (cpos[-1] ** 2 / len(pos) if len(pos) else 0.0) + \
        (cneg[-1] ** 2 / len(neg) if len(neg) else 0.0)
    i = int(np.argmax(gain))
    if all_gain >= gain[i]:
        return 0.0
    return float(cand[i])


def _delta(v, rule, t):
    a = np.abs(v)
    if not a.size or a.max() == 0:
        return 0.0
    if rule == "ttq":
        return float(t) * float(a.max())
    if rule == "twn":
        return 0.7 * float(a.mean())
    return _mse_delta(v)


def ternary_channels(wm, rule="twn", threshold=0.05, *, per_channel=True):
    """Ternarize a K x N float matrix (columns are output channels) by ``rule``
    (`WEIGHT_RULES`; ``threshold`` is TTQ's ``t``): returns ``(signs, wp, wn, delta)``
    (int8 K x N in {-1, 0, +1}; float64 length N each). One threshold and one (Wp, Wn) per
    column, or for the whole matrix when not ``per_channel``."""
    wm = np.asarray(wm, dtype=np.float64)
    k, n = wm.shape
    groups = [np.arange(c, c + 1) for c in range(n)] if per_channel else [np.arange(n)]
    signs = np.zeros((k, n), dtype=np.int8)
    wp, wn, delta = np.ones(n), np.ones(n), np.zeros(n)
    for cols in groups:
        v = wm[:, cols]
        d = _delta(v.ravel(), rule, threshold)
        pos, neg = v > d, v < -d
        p = float(v[pos].mean()) if pos.any() else None
        m = float(-v[neg].mean()) if neg.any() else None
        p, m = (p if p is not None else (m if m is not None else 1.0),
                m if m is not None else (p if p is not None else 1.0))
        signs[:, cols] = np.where(pos, 1, np.where(neg, -1, 0))
        wp[cols], wn[cols], delta[cols] = p, m, d
    return signs, wp, wn, delta


class TernaryRecipe(Recipe):
    """Post-training quantization for the ``ternary`` kind (see the module docstring).

    Options: ``method`` (activation clip: sawb, max, percentile; default sawb),
    ``percentile``,
    ``weights`` (threshold rule: twn, ttq, mse; default twn), ``threshold`` (TTQ's ``t``,
    only with ``weights="ttq"``, default 0.05; alone it selects ttq) and ``bias_correction``
    (default true; applies when `build` gets the calibration images).
    """
    name = "ternary"
    OPTIONS = {"method": "sawb", "percentile": 99.99, "weights": "twn", "threshold": 0.05,
               "bias_correction": True}

    def __init__(self, pe, **options):
        if options.get("threshold") is not None and options.get("weights") is None:
            options = {**options, "weights": "ttq"}      # a threshold is TTQ's t
        super().__init__(pe, **options)
        if not isinstance(self.opts["bias_correction"], (bool, np.bool_)):
            raise LayerError(f"quantize: bias_correction {self.opts['bias_correction']!r} is "
                             f"not a boolean; allowed: true, false")
        rule = self.opts["weights"]
        if rule not in WEIGHT_RULES:
            raise LayerError(f"quantize: weights {rule!r} is unknown; allowed: "
                             f"{', '.join(WEIGHT_RULES)}")
        t = self.opts["threshold"]
        if options.get("threshold") is not None and rule != "ttq":
            raise LayerError(f"quantize: option 'threshold' applies to weights='ttq' only "
                             f"(weights is {rule!r})")
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Real) or \
                not 0 <= t < 1:
            raise LayerError(f"quantize: threshold {t!r} is out of range; allowed: a real "
                             f"number in [0, 1) (TTQ's t: Delta = t * max|w|)")

    # -- pieces ----------------------------------------------------------------------------------
    def _act(self, stats, hi=None):
        k = self.pe.act_bits
        q = ActQuant.calibrate(stats, 0, (1 << k) - 1, method=self.opts["method"],
                               bits=k + 1, percentile=self.opts["percentile"])
        if hi is not None and hi > 0 and q.scale * q.qmax > hi:   # a Clip below the range
            q = ActQuant(hi / q.qmax, 0, 0, q.qmax)
        return q

    @staticmethod
    def _unmatrix(b, wm):
        """A K x O matrix back to the layer's float weight shape."""
        return wm if isinstance(b.layer, Dense) else wm.T.reshape(np.shape(b.step.w))

    @staticmethod
    def _matrix(b):
        """The layer's float weights as K x O (Conv2d: K in (c, kh, kw) order)."""
        w = np.asarray(b.step.w, dtype=np.float64)
        return w if isinstance(b.layer, Dense) else w.reshape(w.shape[0], -1).T

    def _grid(self, signs, wp, wn, fb, sx, with_bias, where):
        """Per-channel grid factors and the scale codes (see the module docstring)."""
        pe = self.pe
        top_code = (1 << pe.scale_bits) - 1
        lim = (1 << (pe.acc_bits - 1)) - 1
        amax = (1 << pe.act_bits) - 1
        n_p = (signs > 0).sum(axis=0)
        n_n = (signs < 0).sum(axis=0)
        bmag = np.abs(fb) / sx if with_bias else np.zeros_like(wp)
        load = amax * np.maximum(n_p * wp, n_n * wn) + bmag      # per unit of g
        slack = amax * np.maximum(n_p, n_n) + 2                  # rounding of codes and bias
        g = np.minimum(top_code / np.maximum(wp, wn),
                       np.where(load > 0, (lim - slack) / np.where(load > 0, load, 1), np.inf))
        if not pe.per_channel:
            g = np.full_like(g, g.min())
        if np.any(g <= 0):
            c = int(np.argmax(g <= 0))
            raise LayerError(f"{where}: channel {c} cannot fit pe.acc_bits {pe.acc_bits} "
                             f"(K {signs.shape[0]}, act_bits {pe.act_bits}); use a wider "
                             f"accumulator")
        while True:
            cp = np.clip(np.floor(wp * g + 0.5), 1, top_code).astype(np.int64)
            cn = np.clip(np.floor(wn * g + 0.5), 1, top_code).astype(np.int64)
            bias = np.floor(fb * g / sx + 0.5).astype(np.int64) if with_bias \
                else np.zeros(len(g), dtype=np.int64)
            worst = amax * np.maximum(n_p * cp, n_n * cn) + np.abs(bias)
            if np.all(worst <= lim):
                return g, cp, cn, bias
            if np.all(cp[worst > lim] == 1) and np.all(cn[worst > lim] == 1):
                c = int(np.argmax(worst > lim))
                raise LayerError(f"{where}: channel {c} cannot fit pe.acc_bits {pe.acc_bits} "
                                 f"even with the smallest scale codes; use a wider accumulator")
            g = np.where(worst > lim, g * 0.99, g)
            if not pe.per_channel:
                g = np.full_like(g, g.min())

    @staticmethod
    def _host(b, cur, where):
        """A host layer on activation codes of quantizer ``cur``."""
        layer = b.layer
        if isinstance(layer, Relu):
            return QLayer(layer=Clip(lo=0, hi=cur.qmax))
        if isinstance(layer, Clip):
            if layer.lo < 0:
                raise LayerError(f"{where}: Clip from {layer.lo} makes negative activations; "
                                 f"ternary activations are unsigned")
            return QLayer(layer=Clip(lo=cur.level(layer.lo), hi=cur.level(layer.hi)))
        return QLayer(layer=layer, round=isinstance(layer, AvgPool2d))

    # -- the recipe ------------------------------------------------------------------------------
    def _check(self, model, blocks):
        """Model step index of each block, the on-chip block indices; refusals."""
        index, i = [], 0
        for b in blocks:
            index.append(i)
            i += 2 if b.act is not None else 1
        chips = [j for j, b in enumerate(blocks) if b.on_chip]
        if not chips:
            raise LayerError(f"{model.name}: no Dense or Conv2d layer to run on the core")
        if blocks[0].x_stats.lo < 0:
            raise LayerError(f"{model.name}: the input goes down to {blocks[0].x_stats.lo:.4g}; "
                             f"ternary activations are unsigned codes (act_bits "
                             f"{self.pe.act_bits}): the input must be non-negative")
        for j in chips[:-1]:
            b = blocks[j]
            if not (b.act == "relu" or (isinstance(b.act, tuple) and b.act[1] == 0)):
                raise LayerError(f"{model.name}: layer {index[j]} ({b.layer.type}) has no ReLU "
                                 f"after it; its outputs can be negative and ternary "
                                 f"activations are unsigned act_bits codes: the ternary recipe "
                                 f"needs a Relu (or Clip from 0) after every on-chip layer but "
                                 f"the last")
        last = blocks[chips[-1]]
        if last.act is not None:
            raise LayerError(f"{model.name}: the last layer's activation ({last.act!r}) has no "
                             f"place on the logits; remove it")
        return index, chips

    def build(self, model, blocks, calib_x=None):
        """The `QNet` of calibrated ``blocks``. ``calib_x``: the calibration images, for the
        empirical bias correction (option ``bias_correction``); without them (what
        `tessera.sim.ptq.quantize` passes today) the biases are the float model's."""
        pe = self.pe
        index, chips = self._check(model, blocks)
        correct = bool(self.opts["bias_correction"]) and calib_x is not None
        frac = pe.scale_frac
        unit = 2.0 ** -frac
        cur = self._act(blocks[chips[0]].x_stats)
        first = cur
        if correct:          # float activations, and the quantized network's codes
            xf = np.asarray(calib_x, dtype=np.float64)
            xq = quantize_input(QNet("", {}, first.as_dict() | {"grid": "int"}, (), []), xf)
        layers, info = [], []
        for j, b in enumerate(blocks):
            where = f"layer {index[j]} ({b.layer.type})"
            if not b.on_chip:
                ql = self._host(b, cur, where)
                layers.append(ql)
                if correct:
                    xf = float_step(b.step, xf)
                    xq = _host_layer(ql, xq)
                continue
            wm = self._matrix(b)
            signs, wp, wn, delta = ternary_channels(wm, self.opts["weights"],
                                                    self.opts["threshold"],
                                                    per_channel=pe.per_channel)
            fb = np.zeros(wm.shape[1]) if b.step.b is None else \
                np.asarray(b.step.b, np.float64).reshape(-1)
            sx = cur.scale
            shift = np.zeros_like(fb)
            if correct:
                zf = float_step(b.step, xf)
                wt = np.where(signs > 0, wp[None, :], np.where(signs < 0, -wn[None, :], 0.0))
                zq = float_step(FStep(b.layer, self._unmatrix(b, wt), fb), xq * sx)
                axes = (0,) if isinstance(b.layer, Dense) else (0, 2, 3)
                shift = (zf - zq).mean(axis=axes)
                fb = fb + shift
            is_last = j == chips[-1]
            g, cp, cn, bias = self._grid(signs, wp, wn, fb, sx, not is_last, where)
            w = np.where(signs > 0, cp[None, :] * unit,
                         np.where(signs < 0, -cn[None, :] * unit, 0.0))
            info.append({"layer": index[j], "zeros": float(np.mean(signs == 0)),
                         "delta": [float(d) for d in delta[:None if pe.per_channel else 1]],
                         "bias_shift": [float(d) for d in shift],
                         "max_scale_code": int(max(cp.max(), cn.max()))})
            if is_last:
                layers.append(QLayer(layer=b.layer, w=w, bias=fb * g / (sx * 2.0 ** frac),
                                     out_scale=sx * 2.0 ** frac / g))
                continue
            nxt = self._act(b.y_stats, b.act[2] if isinstance(b.act, tuple) else None)
            scale = sx / (g * nxt.scale)
            layers.append(QLayer(layer=b.layer, w=w, bias=bias,
                                 epilogue={"scale": [float(s) for s in scale]},
                                 act=nxt.as_dict()))
            if correct:
                xf = np.clip(zf, 0, b.act[2]) if isinstance(b.act, tuple) else \
                    np.maximum(zf, 0)
                shape = (1, -1) if isinstance(b.layer, Dense) else (1, -1, 1, 1)
                y = (zq + shift.reshape(shape)) / nxt.scale
                xq = np.floor(np.clip(y, 0, nxt.qmax) + 0.5).astype(np.int64)
            cur = nxt
        opts = {k: v for k, v in self.opts.items() if v is not None}
        if opts["weights"] != "ttq":
            opts.pop("threshold")
        opts["bias_correction"] = "empirical" if correct else "none"
        return QNet(name=model.name, pe=pe.to_dict(), input=first.as_dict() | {"grid": "int"},
                    input_shape=tuple(model.input_shape), layers=layers,
                    meta={"recipe": self.name, "options": opts, "weights": info})


def quantize_ternary(model, pe, calib_x, **options):
    """`tessera.sim.ptq.quantize` for the ternary kind with the calibration images handed to
    the recipe as well, so that the empirical bias correction applies (option
    ``bias_correction``, default on). Returns a `QNet`."""
    if getattr(pe, "name", None) != "ternary":
        raise LayerError(f"quantize_ternary: pe.kind {getattr(pe, 'name', pe)!r} is not "
                         f"ternary; use tessera.sim.ptq.quantize")
    recipe = TernaryRecipe(pe, **options)
    for i, st in enumerate(model.steps):
        if st.layer.type in CHIP_TYPES and st.w is None:
            raise LayerError(f"layer {i} ({st.layer.type}) has no weights")
    return recipe.build(model, calibrate(model, calib_x), calib_x=calib_x)
