"""Post-training quantization for FPEC (fixed point with error compensation, Compensated-DNN)
and the walk it shares with BiScaled (`tessera.sim.ptq_biscaled`).

Both kinds compute on *absolute* fixed-point values (``docs/approx.md``): an FPEC activation is
a level of ``a_format`` (``a_int_bits``/``a_frac_bits``) plus, when its EZB is clear, an error
estimate of half an LSB (or an EMB sub-range edge); a BiScaled value is a level of scale-fine or
of scale-wide. A recipe therefore gives every tensor a *real scale* ``S`` (real units per value
unit) and writes ``value = real / S`` onto the format's grid. The shared rule
(`FixedPointRecipe`):

* weights: per output channel, ``w[c] = S_w[c] * value`` with ``value`` on the kind's B grid
  (FPEC: symmetric levels ``+-(2**(b_w-1) - 1)`` of ``b_format`` from the channel's clip,
  `tessera.sim.ptq.symmetric_levels`; BiScaled: see its module). ``encode`` sets EZB on an
  FPEC weight (an exact level: the core's products are exact) and picks scale-fine wherever a
  BiScaled weight is a scale-fine level;
* activations: per tensor, ``real = S_x * (value - zero)``; the scale from the calibrated
  range (`tessera.sim.ptq.clip_range`, option ``method``). FPEC takes TFLite's affine range
  (a zero point, so a ReLU output uses the levels below 0 too; a padded convolution then pads
  with the zero point's value in a host `Pad2d`, `tessera.sim.qnet.padded_conv`); a tensor
  whose requantization scale would reach 1 is widened (``meta["coarsened_inputs"]``);
* the core computes the result value ``sum value_x * value_w`` (result codes in units of
  ``2**-(FBa + FBb + s)`` for FPEC); the float bias and the zero point fold into an integer
  bias in result codes, ``round(b / (S_x S_w) / unit) - zero * sum_k value_w / unit`` (exact
  for the zero point: it is a level); the epilogue scales by ``S_x S_w unit / (S_y LSB_y)``
  into the next layer's output levels, adds its zero point and clamps (ReLU: ``lo`` = the zero
  point), and derives the compensation bits on chip from the exact remainder
  (``docs/epilogue.md``, "fpec");
* the last layer keeps its result values: logits ``= (value + bias) * S_x S_w[c]`` with the
  host ``bias = b / (S_x S_w) - zero * sum_k value_w`` (float, exact in float64 arithmetic).

The network's input quantizer is the QNet's integer grid (``grid = "int"``: round half away
from zero, clamp): the input values are the integers the A format holds (FPEC ``s3.2``:
-8..7). The FPEC quantizer with compensation (`FpecFormat.quantize`) and BiScaled's two
scales apply from the first epilogue on; the QNet's input quantizer has no such grid.

What the value path cannot carry is refused: weights with compensation bits (``encode`` takes
exact levels only, so the core's result is the exact dot product of the values: FPEC weights
here are plain fixed point), average pooling (its averages leave the format's grid; the QNet
rounds host outputs to integers only), an activation on the last layer.

**Compensated activations and ``encode``.** An inner FPEC layer's epilogue writes codes with
EZB/EDB/EMB; `run_network` and `reference_network` decode them to values (level plus
estimate, ``FpecEpilogueSpec.decode``) and give those values to the next layer's
``pe.encode(operand="a")``. With weights exact (EZB set) the compensated product
``qx*qy + dx*qy`` is exactly ``value_x * value_w``, so a value determines the result whatever
code stands for it. `compensated_codes` is that inverse map (a value half an LSB between two
levels has two codes; either gives the same products); ``FpecKind.encode`` must accept such
values for a network of two or more FPEC layers to run (`encode_takes_compensated` tells).
"""

from fractions import Fraction

import numpy as np

from tessera.sim.fpec import compensated_codes  # noqa: F401  (re-exported)

from tessera.sim.layers import AvgPool2d, Clip, Dense, LayerError, Relu
from tessera.sim.ptq import Recipe, clip_range, symmetric_levels
from tessera.sim.qnet import QLayer, QNet, padded_conv


__all__ = ["FpecRecipe", "FixedPointRecipe", "ActScale", "compensated_codes",
           "encode_takes_compensated"]

#: Largest requantization scale the recipes use (the epilogues take scales in (0, 1)).
_MAX_SCALE = 0.9999


class ActScale:
    """An activation tensor's quantizer in the units of its grid: ``real = scale * (level -
    zero_point)``, levels ``lo..hi`` (integers), one level = ``unit`` format value units
    (the FPEC LSB, the BiScaled scale-fine LSB, or 1 for the integer input grid)."""

    def __init__(self, scale, zero_point, lo, hi, unit):
        self.scale, self.zero_point, self.lo, self.hi = \
            float(scale), int(zero_point), int(lo), int(hi)
        self.unit = Fraction(unit)

    @property
    def value_scale(self):
        """Real units per format value unit (``S``)."""
        return self.scale / float(self.unit)

    @property
    def zero_value(self):
        """The zero point in format value units (exact)."""
        return self.zero_point * self.unit

    def level(self, v):
        """The level of real ``v`` (half up, clamped)."""
        return min(max(int(np.floor(float(v) / self.scale + 0.5)) + self.zero_point,
                       self.lo), self.hi)

    def as_dict(self):
        return {"scale": self.scale, "zero_point": self.zero_point, "lo": self.lo,
                "hi": self.hi, "unit": str(self.unit)}

    def coarsened(self, scale):
        """The same real range on a coarser grid (``scale`` >= this one's): the requantizer has
        no left shift, so a layer whose scale into this tensor would reach 1 widens it (as
        `tessera.sim.ptq_int.ActQuant.coarsened`)."""
        if self.zero_point == 0:
            return ActScale(scale, 0, self.lo, self.hi, self.unit)
        r_lo = self.scale * (self.lo - self.zero_point)
        z = min(max(int(np.floor(self.lo - r_lo / scale + 0.5)), self.lo), self.hi)
        return ActScale(scale, z, self.lo, self.hi, self.unit)

    @classmethod
    def symmetric(cls, stats, lo, hi, unit, *, alpha):
        """Zero point 0, ``alpha`` at the last level on the data's side(s)."""
        top = min(hi, -lo) if stats.lo < 0 else hi
        return cls(alpha / top, 0, lo, hi, unit)

    @classmethod
    def affine(cls, stats, lo, hi, unit, *, alpha):
        """TFLite's affine quantizer of a tensor with calibration ``stats`` on levels
        ``lo..hi``: the range widened to include 0 and clipped to ``alpha``, a zero point."""
        r_lo, r_hi = max(min(stats.lo, 0.0), -alpha), min(max(stats.hi, 0.0), alpha)
        if r_hi - r_lo <= 0:
            return cls(1.0, 0, lo, hi, unit)
        scale = (r_hi - r_lo) / (hi - lo)
        z = min(max(int(np.floor(lo - r_lo / scale + 0.5)), lo), hi)
        return cls(scale, z, lo, hi, unit)


def int_grid(fixed_formats):
    """The integer range ``(lo, hi)`` whose every integer is a value of one of
    ``fixed_formats`` (`FixedFormat`, each a grid over its range), or None: the values the
    QNet's integer input grid may produce."""
    lo = hi = None
    for f in fixed_formats:
        if f.frac_bits < 0:
            continue
        a, b = int(np.ceil(float(f.min_value))), int(np.floor(float(f.max_value)))
        if lo is None or b - a > hi - lo:
            lo, hi = a, b
    return None if lo is None or hi <= 0 else (lo, hi)


class FixedPointRecipe(Recipe):
    """The walk shared by FPEC and BiScaled (the module docstring). A subclass gives:

    * ``acc_unit``: the value of one result code; ``out_unit``: of one epilogue output level;
    * `weights` (float weights -> values on the B grid and the real scale per channel);
    * `act` (calibration stats -> `ActScale` of an inner activation, in output levels);
    * `input_act` (the network input's `ActScale` on the integer grid);
    * `clamp` (an activation -> the epilogue's ``lo``/``hi`` levels)."""
    name = ""
    acc_unit = out_unit = None

    def _alpha(self, stats, bits):
        return clip_range(stats, self.opts["method"], bits, percentile=self.opts["percentile"])

    # -- the walk --------------------------------------------------------------------------------
    def build(self, model, blocks):
        chips = [b for b in blocks if b.on_chip]
        if not chips:
            raise LayerError(f"{model.name}: no Dense or Conv2d layer to run on the core")
        for b in blocks:
            if isinstance(b.layer, AvgPool2d):
                raise LayerError(f"{model.name}: {b.layer.type}: averages leave the "
                                 f"pe.kind {self.pe.name!r} value grid (a QNet rounds host "
                                 f"outputs to integers only); use MaxPool2d")
        if chips[-1].act is not None:
            raise LayerError(f"{model.name}: the last layer's activation ({chips[-1].act!r}) "
                             f"has no place on the logits; remove it")
        acts = [self.input_act(chips[0].x_stats)] + [self.act(b.x_stats) for b in chips[1:]]
        layers, info, ci, cur, coarsened = [], [], 0, acts[0], []
        for b in blocks:
            if not b.on_chip:
                layers.append(self._host(b, cur))
                continue
            axis = 1 if isinstance(b.layer, Dense) else 0
            wv, sw = self.weights(b.step.w, axis)
            k_axis = 0 if isinstance(b.layer, Dense) else (1, 2, 3)
            colsum = wv.sum(axis=k_axis)                 # exact: dyadic values
            fb = np.zeros(len(sw)) if b.step.b is None else np.asarray(b.step.b, np.float64)
            sx = cur.value_scale
            zero = float(cur.zero_value)
            layer_info = {"layer": b.layer.type, "in": cur.as_dict(),
                          "w_scale": [float(s) for s in sw]} | self.weight_info(wv, axis)
            if ci == len(chips) - 1:
                bias = fb / (sx * sw) - zero * colsum
                layers += padded_conv(b.layer, zero, w=wv, bias=bias, out_scale=sx * sw)
            else:
                nxt = acts[ci + 1]
                unit = float(self.acc_unit)
                bias = (np.floor(fb / (sx * sw) / unit + 0.5).astype(np.int64)
                        - np.round(zero * colsum / unit).astype(np.int64))
                self._check_bias(bias, ci)
                if np.max(sx * sw * unit / nxt.scale) >= _MAX_SCALE:
                    nxt = acts[ci + 1] = nxt.coarsened(float(np.max(sx * sw)) * unit
                                                       / _MAX_SCALE)
                    coarsened.append(ci + 1)
                scale = sx * sw * unit / nxt.scale
                lo, hi = self.clamp(b.act, nxt)
                layers += padded_conv(b.layer, zero, w=wv, bias=bias,
                                      epilogue={"scale": [float(s) for s in scale],
                                                "zero_point": nxt.zero_point, "lo": lo,
                                                "hi": hi},
                                      act=nxt.as_dict())
                cur = nxt
            info.append(layer_info)
            ci += 1
        inp = acts[0]
        opts = {k: v for k, v in self.opts.items() if v is not None}
        return QNet(name=model.name, pe=self.pe.to_dict(),
                    input={"scale": inp.scale, "zero_point": inp.zero_point, "lo": inp.lo,
                           "hi": inp.hi, "grid": "int"},
                    input_shape=tuple(model.input_shape), layers=layers,
                    meta={"recipe": self.name, "options": opts, "layers": info,
                          "coarsened_inputs": coarsened})

    def _check_bias(self, bias, ci):
        top = (1 << (self.pe.acc_bits - 1)) - 1
        if np.any(np.abs(bias) > top):
            raise LayerError(f"on-chip layer #{ci}: the folded bias {int(np.abs(bias).max())} "
                             f"does not fit pe.acc_bits {self.pe.acc_bits}")

    def _host(self, b, cur):
        """A host layer on the values of quantizer ``cur`` (bounds on its levels)."""
        layer = b.layer
        u = float(cur.unit)
        if isinstance(layer, Relu):
            return QLayer(layer=Clip(lo=float(cur.zero_value), hi=cur.hi * u))
        if isinstance(layer, Clip):
            return QLayer(layer=Clip(lo=self.on_grid(cur, cur.level(layer.lo)) * u,
                                     hi=self.on_grid(cur, cur.level(layer.hi)) * u))
        return QLayer(layer=layer)

    def on_grid(self, cur, level):
        """A level of quantizer ``cur`` moved to one whose value the format holds."""
        return level

    def weight_info(self, values, axis):
        return {}

    # -- per kind --------------------------------------------------------------------------------
    def weights(self, w, axis):
        raise NotImplementedError

    def act(self, stats):
        raise NotImplementedError

    def input_act(self, stats):
        raise NotImplementedError

    def clamp(self, act, nxt):
        """Epilogue ``lo``/``hi`` (levels) for activation ``act`` into quantizer ``nxt``."""
        lo, hi = nxt.lo, nxt.hi
        if act == "relu":
            lo = max(lo, nxt.zero_point)
        elif act is not None:
            lo, hi = max(lo, nxt.level(act[1])), min(hi, nxt.level(act[2]))
        return lo, hi


class FpecRecipe(FixedPointRecipe):
    """FPEC post-training quantization (the module docstring). Options: ``method`` (activation
    clip: max, percentile, sawb), ``percentile``, ``weight_method`` (per-channel weight clip,
    the same rules)."""
    name = "fpec"
    OPTIONS = {"method": "max", "percentile": 99.99, "weight_method": "max"}

    def __init__(self, pe, **options):
        super().__init__(pe, **options)
        if self.opts["weight_method"] not in ("max", "percentile", "sawb"):
            raise LayerError(f"quantize: weight_method {self.opts['weight_method']!r} is "
                             f"unknown; allowed: max, percentile, sawb")
        fa, fb = pe.a_format.fixed, pe.b_format.fixed
        self.fa, self.fb = fa, fb
        self.out_unit = fa.lsb
        self.acc_unit = Fraction(2) ** -(fa.frac_bits + fb.frac_bits + pe.s)
        self.grid = int_grid([fa])
        if self.grid is None:
            raise LayerError(f"quantize: pe.a_frac_bits {fa.frac_bits} leaves no integers "
                             f"in the activation format (the network input's integer grid); "
                             f"allowed: a_frac_bits >= 0 with a_int_bits >= 1")

    def weights(self, w, axis):
        q, s = symmetric_levels(w, self.fb.bits, axis, method=self.opts["weight_method"],
                                percentile=self.opts["percentile"])
        lsb = float(self.fb.lsb)
        return q * lsb, s / lsb

    def act(self, stats):
        # Levels from min_int + 1: the epilogue treats a bound at the format's end as the
        # format's saturation (EZB clear, the top estimate), so a ReLU clamping at the zero
        # point min_int would write "0 minus half an LSB" for every negative input.
        alpha = self._alpha(stats, self.fa.bits)
        return ActScale.affine(stats, self.fa.min_int + 1, self.fa.max_int, self.fa.lsb,
                               alpha=alpha)

    def input_act(self, stats):
        lo, hi = self.grid
        alpha = self._alpha(stats, (hi - lo).bit_length())
        return ActScale.affine(stats, lo, hi, 1, alpha=alpha)


# -- compensated activation values -> codes -------------------------------------------------------
def encode_takes_compensated(pe):
    """True when ``pe.encode(operand="a")`` accepts a compensated activation value (half an
    LSB off a level): what a QNet of two or more FPEC layers needs to run."""
    half = float(pe.a_format.fixed.lsb) / 2
    try:
        pe.encode(np.array([half]), operand="a")
    except ValueError:
        return False
    return True
