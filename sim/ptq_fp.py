"""Floating-point post-training quantization: the ``fpmac`` kind (FP8 E4M3/E5M2/HFP8, FP16,
BF16, DLFloat16 operands; any accumulator format).

The fpmac epilogue adds a bias in the accumulator format, converts to the operand format and
applies ReLU; it has **no multiplier** (``docs/epilogue.md``). So every scale is folded into the
weights and the bias:

* activations: per tensor, ``x = s * v`` with ``v`` a value of the operand format. The scales
  are powers of two, so scaling is exact and only moves values through the format's binades
  (a float format's relative precision is the same in every normal binade; what a scale buys
  is range: no overflow at the top, few subnormals at the bottom);
* an on-chip layer with input scale ``s_x`` and output scale ``s_y`` gets the weights
  ``w * s_x / s_y`` rounded to the operand format (the kind's own rounding, `tessera.sim.fp`;
  `PEKind.encode` then accepts them unchanged) and the bias ``b / s_y`` rounded to the
  accumulator format (`FPEpilogueSpec.user_params` refuses an inexact one); the core then
  computes ``acc = sum v_x w' = (y - b) / s_y`` and the epilogue ``v_y = conv(acc + b')``;
* ReLU is the epilogue's ``relu`` flag. A ``Clip(lo, hi)`` activation (ReLU6) cannot run in
  the epilogue (no clamp): the layer keeps ReLU on chip when ``lo >= 0`` and a host `Clip`
  layer with the bounds in value units (``lo / s_y``, ``hi / s_y`` rounded to the operand
  format) follows it;
* the input quantizer is ``v = x / s_x0`` with ``grid = "format"`` (the kind's encode rounds);
* the last layer keeps its accumulators: weights ``w * s_x / s_L``, and on the host
  ``logits = (acc + b / s_L) * s_L`` (``bias = b / s_L`` in float64, ``out_scale = s_L``).

Choosing a scale (options ``method``, ``percentile``, ``headroom``, ``scaling``, ``guard``):

1. the tensor's clip ``alpha`` from its calibration statistics (`tessera.sim.ptq.clip_range`
   with ``method``; the statistics of a layer's output after its activation);
2. ``scaling = "tensor"`` (the default for 8-bit operand formats): the smallest power of two
   ``s`` with ``alpha / s <= M * 2**-headroom``, where ``M`` is the smaller of the operand and
   accumulator formats' largest finite values. ``headroom`` (binades, default 2) is the margin
   above the calibrated range: E4M3 puts ``alpha`` at or below 112 (of 448), HFP8 at 7.5 (of
   30), E5M2 at 14336 (of 57344, also under the FP16 accumulator's 65504). The formats span
   about 15 (E4M3, HFP8) or 30 (E5M2) normal binades, so what the headroom (and the guard
   below) costs is only that the smallest values reach the subnormals sooner;
   ``scaling = "cast"`` (the default for 16-bit formats): ``s = 1`` (a plain cast), unless
   ``alpha`` is above ``M * 2**-headroom`` or below ``min_normal * 2**precision`` (values down to
   ``alpha * 2**-precision`` would not be normal), then as ``"tensor"``;
   ``scaling = "none"``: ``s = 1`` everywhere; a network whose calibrated range does not fit
   the format is refused;
3. ``guard = True`` (default): nothing may overflow, for any input within the calibrated range
   of the layer's input. The accumulator's partial sums and the value converted by the
   epilogue are bounded by ``B = max_c (sum_k |w'[k, c]| * max|v_x| + |b'[c]|)``; the output
   scale is raised (by powers of two) until ``2 B <= M`` (the factor 2 covers the
   accumulator's rounding). Without it a large negative pre-activation (which ReLU would
   zero) can overflow the conversion: in E4M3, HFP8 and HFP8-IBM overflow gives NaN (NINF),
   and ReLU passes it (checked: an FP16 accumulator of -1000 comes out as NaN);
4. (applied before the guard) the output scale is raised if the folded weights would exceed
   the operand format's range.

With power-of-two scales and the guard, the clipping ``method`` seldom changes a scale (on
the digits networks max, percentile and SAWB give the same scales): a float format has no
clamp to trade against resolution, only range.

The ``meta`` of the `QNet` records, per on-chip layer, the scales, how many binades the guard
and the weight fit added, and the fraction of nonzero weights that rounded to zero.
"""

import math

import numpy as np

from tessera.sim.layers import Clip, Dense, LayerError, Relu
from tessera.sim.ptq import Recipe, clip_range
from tessera.sim.qnet import QLayer, QNet


__all__ = ["FPRecipe", "SCALING", "round_to_format"]

#: ``scaling`` option values (see the module docstring).
SCALING = ("auto", "tensor", "cast", "none")


def round_to_format(fmt, x):
    """Real ``x`` (float64) rounded to the nearest values of `FloatFormat` ``fmt`` by the
    format's own rounding (`tessera.sim.fp.encode`/`decode`); overflow follows the format
    (NaN/Inf), so callers check the range first."""
    from tessera.sim import fp
    x = np.asarray(x, dtype=np.float64)
    return fp.decode(fmt, fp.encode(fmt, x)).reshape(x.shape)


def _pow2_at_least(r):
    """The smallest power of two >= ``r`` (``r > 0``)."""
    e = math.ceil(math.log2(r))
    s = 2.0 ** e
    return s * 2 if s < r else s


class FPRecipe(Recipe):
    """Post-training quantization for the ``fpmac`` kind (see the module docstring)."""
    name = "fp"
    OPTIONS = {"method": "max", "percentile": 99.99, "scaling": "auto", "headroom": 2,
               "guard": True}

    def __init__(self, pe, **options):
        super().__init__(pe, **options)
        sc = self.opts["scaling"]
        if sc not in SCALING:
            raise LayerError(f"quantize: scaling {sc!r} is unknown; allowed: "
                             f"{', '.join(SCALING)}")
        h = self.opts["headroom"]
        if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or not 0 <= h <= 8:
            raise LayerError(f"quantize: headroom {h!r} is out of range; allowed: an integer "
                             f"0..8 (binades above the calibrated range)")
        if not isinstance(self.opts["guard"], (bool, np.bool_)):
            raise LayerError(f"quantize: guard {self.opts['guard']!r} is not a boolean; "
                             f"allowed: True, False")
        self.fin, self.facc = pe.fmt_in, pe.fmt_acc
        if sc == "auto":
            sc = "tensor" if self.fin.width <= 8 else "cast"
        self.scaling = sc
        self.top_in = min(self.fin.max_finite, self.facc.max_finite)
        self.top_acc = self.facc.max_finite

    # -- scales ----------------------------------------------------------------------------------
    def _alpha(self, stats):
        return clip_range(stats, self.opts["method"], self.fin.width,
                          percentile=self.opts["percentile"])

    def _scale(self, stats, top, what):
        """The power-of-two scale of a tensor with calibration ``stats`` whose values must stay
        below ``top`` (rule 2 of the module docstring)."""
        alpha = self._alpha(stats)
        target = top * 2.0 ** -int(self.opts["headroom"])
        if self.scaling == "none":
            if alpha > top:
                raise LayerError(f"{what}: calibrated range {alpha:.6g} exceeds the largest "
                                 f"finite value {top:.6g} ({self.fin.name} operands, "
                                 f"{self.facc.name} accumulator) with scaling 'none'; "
                                 f"allowed: scaling 'auto', 'tensor' or 'cast'")
            return 1.0
        if self.scaling == "cast":
            low = self.fin.min_normal * 2.0 ** self.fin.precision
            if low <= alpha <= target:
                return 1.0
        return _pow2_at_least(alpha / target)

    # -- the recipe ------------------------------------------------------------------------------
    def build(self, model, blocks):
        chips = [b for b in blocks if b.on_chip]
        if not chips:
            raise LayerError(f"{model.name}: no Dense or Conv2d layer to run on the core")
        if chips[-1].act is not None:
            raise LayerError(f"{model.name}: the last layer's activation ({chips[-1].act!r}) "
                             f"has no place on the logits; remove it")
        s_in = self._scale(chips[0].x_stats, self.fin.max_finite, "input")
        cur = s_in
        x_top = max(abs(chips[0].x_stats.lo), abs(chips[0].x_stats.hi)) / s_in
        layers, info, ci = [], [], 0
        for b in blocks:
            if not b.on_chip:
                layers.append(self._host(b, cur))
                continue
            last = ci == len(chips) - 1
            ql, s_y, rec = self._layer(b, ci, cur, x_top, last)
            layers.append(ql)
            info.append(rec)
            if not last:
                if isinstance(b.act, tuple):
                    layers.append(QLayer(layer=self._clip(b.act[1], b.act[2], s_y),
                                         act=ql.act))
                cur = s_y
                x_top = max(abs(b.y_stats.lo), abs(b.y_stats.hi)) / s_y
            ci += 1
        opts = {k: v for k, v in self.opts.items() if v is not None}
        opts["guard"] = bool(opts["guard"])
        return QNet(name=model.name, pe=self.pe.to_dict(),
                    input={"scale": s_in, "zero_point": 0, "lo": -self.fin.max_finite,
                           "hi": self.fin.max_finite, "grid": "format",
                           "format": self.fin.name},
                    input_shape=tuple(model.input_shape), layers=layers,
                    meta={"recipe": self.name, "options": opts, "scaling": self.scaling,
                          "layers": info})

    def _layer(self, b, ci, s_x, x_top, last):
        """One on-chip layer: (QLayer, its output scale, meta record)."""
        what = f"on-chip layer #{ci} ({b.layer.type})"
        w = np.asarray(b.step.w, dtype=np.float64)
        o_axis = 1 if isinstance(b.layer, Dense) else 0
        k_axes = 0 if isinstance(b.layer, Dense) else (1, 2, 3)
        channels = w.shape[o_axis]
        fb = np.zeros(channels) if b.step.b is None else np.asarray(b.step.b, np.float64)
        top = self.top_acc if last else self.top_in
        s_y = self._scale(b.y_stats, top, what)
        s_act = s_y
        # the weights must fit the operand format (rule 4)
        w_max = float(np.abs(w).max()) * s_x
        if self.scaling == "none" and w_max / s_y > self.fin.max_finite:
            raise LayerError(f"{what}: weight {w_max:.6g} exceeds {self.fin.name}'s largest "
                             f"finite value with scaling 'none'; allowed: scaling 'auto', "
                             f"'tensor' or 'cast'")
        if w_max / s_y > self.fin.max_finite:
            s_y = _pow2_at_least(w_max / self.fin.max_finite)
        s_fit = s_y
        while True:
            wq, bq = self._fold(w, fb, s_x, s_y, last)
            if not self.opts["guard"]:
                break
            bound = float((np.abs(wq).sum(axis=k_axes) * x_top + np.abs(bq)).max())
            if 2 * bound <= top:
                break
            if self.scaling == "none":
                raise LayerError(f"{what}: its accumulators can reach {bound:.6g} (over "
                                 f"half of {top:.6g}, the largest finite value) with scaling "
                                 f"'none'; allowed: scaling 'auto', 'tensor' or 'cast', or "
                                 f"guard=False")
            s_y = _pow2_at_least(s_y * 2 * bound / top)
        nz = w != 0
        rec = {"layer": b.layer.type, "s_x": s_x, "s_y": s_y,
               "alpha": self._alpha(b.y_stats),
               "fit_binades": int(round(math.log2(s_fit / s_act))),
               "guard_binades": int(round(math.log2(s_y / s_fit))),
               "weights_to_zero": float(np.mean(wq[nz] == 0)) if nz.any() else 0.0}
        if last:
            return QLayer(layer=b.layer, w=wq, bias=bq, out_scale=np.full(channels, s_y)), \
                s_y, rec
        act = {"scale": s_y, "zero_point": 0, "format": self.fin.name}
        epi = {"activation": "relu" if b.act == "relu" or
               (isinstance(b.act, tuple) and b.act[1] >= 0) else None}
        return QLayer(layer=b.layer, w=wq, bias=bq, epilogue=epi, act=act), s_y, rec

    def _fold(self, w, fb, s_x, s_y, last):
        """Weights ``w * s_x / s_y`` in the operand format; the bias ``b / s_y`` in the
        accumulator format (hidden layers) or float64 (the last layer, added on the host)."""
        wq = round_to_format(self.fin, w * (s_x / s_y))
        bq = fb / s_y
        if not last:
            if np.any(np.abs(bq) > self.facc.max_finite):
                raise LayerError(f"bias {float(np.abs(fb).max()):.6g} / scale {s_y:.6g} "
                                 f"exceeds {self.facc.name}'s range")
            bq = round_to_format(self.facc, bq)
        return wq, bq

    def _clip(self, lo, hi, s):
        """A host `Clip` of real bounds ``lo``..``hi`` on values of scale ``s``, the bounds
        rounded to the operand format (so the clipped values stay on its grid)."""
        lim = self.fin.max_finite
        lo_v, hi_v = (float(np.clip(v / s, -lim, lim)) for v in (lo, hi))
        lo_q, hi_q = (float(round_to_format(self.fin, v)) for v in (lo_v, hi_v))
        return Clip(lo=lo_q, hi=hi_q)

    def _host(self, b, s):
        """A host layer on activation values of scale ``s``. Pooling and Flatten keep the
        values' scale; an average leaves the grid and the next on-chip layer's encode rounds
        it (``grid = "format"``)."""
        layer = b.layer
        if isinstance(layer, Relu):
            return QLayer(layer=Relu())
        if isinstance(layer, Clip):
            return QLayer(layer=self._clip(layer.lo, layer.hi, s))
        return QLayer(layer=layer)
