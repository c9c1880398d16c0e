"""Integer post-training quantization: the ``int`` kind (int8, int4, any ``a_bits``/``b_bits``)
and the run-time-mode integer kinds (``bitfusion``, ``multiprec``) with a per-layer precision
list.

The rule (gemmlowp/TFLite, as ``onnxruntime.quantization`` writes QDQ models):

* weights: symmetric per output channel, levels ``+-(2**(W-1) - 1)``, scale ``s_w[c]``
  from the channel's clip (`tessera.sim.ptq.clip_range`: max, percentile or SAWB);
* activations: per tensor, affine ``x = s_x * (q - z_x)``. Signed levels (the ``int`` kind
  and signed modes) take the calibrated range widened to include 0 (asymmetric, zero point
  inside the level range); an unsigned mode (a non-negative input: the image, a ReLU's
  output) takes ``z_x = 0`` and ``s_x = alpha / (2**A - 1)``;
* the core computes ``acc[c] = sum_k q_x[k] * q_w[k, c]``; the zero point and the float bias
  fold into the integer bias ``round(b[c] / (s_x s_w[c])) - z_x * sum_k q_w[k, c]``; the
  epilogue multiplies by ``s_x s_w[c] / s_y`` (TFLite's multiplier and shift), adds ``z_y``
  and clamps (ReLU: ``lo = z_y``; Clip: its bounds in levels);
* the last layer keeps its accumulators: logits ``= (acc + bias) * s_x s_w[c]``.

With modes, a layer's mode is ``a<A><s|u>_w<W>s``: ``A``/``W`` from the ``precisions``
option (one entry per on-chip layer: ``"8"`` for 8-bit activations and weights, ``"8x4"``
for 8-bit activations and 4-bit weights; default every layer at the kind's widest mode), the
activations unsigned when the calibrated input never goes negative. A layer's outputs are
the next layer's activations, so its clamp is the next layer's activation range intersected
with its own mode's (the epilogue clamps inside the RUN mode's range).

Option ``act_zero_point = 0`` (an engine that skips zero activation codes asks for it through
`Engine.ptq_options`, e.g. ``feie``): every activation has zero point 0, so a real 0 (a ReLU
output's, the image's background) is code 0; on signed levels a non-negative tensor takes
``0 .. 2**(A-1) - 1`` (one level bit fewer than the asymmetric grid) and any other the
symmetric ``-(2**(A-1) - 1) .. 2**(A-1) - 1``.
"""

import numpy as np

from tessera.sim.layers import AvgPool2d, Clip, Dense, LayerError, Relu
from tessera.sim.ptq import Recipe, clip_range, symmetric_levels
from tessera.sim.qnet import QLayer, QNet, padded_conv


__all__ = ["IntRecipe", "ActQuant", "parse_precisions"]


def _round(x):
    return int(np.floor(float(x) + 0.5))


#: Largest requantization scale the recipe uses (the epilogue takes scales in (0, 1)).
_MAX_SCALE = 0.9999


class ActQuant:
    """Affine activation quantizer: levels ``qmin..qmax``, ``x = scale * (q - zero_point)``."""

    def __init__(self, scale, zero_point, qmin, qmax):
        self.scale, self.zero_point, self.qmin, self.qmax = \
            float(scale), int(zero_point), int(qmin), int(qmax)

    @classmethod
    def calibrate(cls, stats, qmin, qmax, *, method, bits, percentile):
        """The quantizer of a tensor with calibration ``stats``."""
        alpha = clip_range(stats, method, bits, percentile=percentile)
        lo, hi = max(min(stats.lo, 0.0), -alpha), min(max(stats.hi, 0.0), alpha)
        if qmin == 0:                      # unsigned levels: the tensor is non-negative
            return cls(hi / qmax if hi > 0 else 1.0, 0, qmin, qmax)
        if hi - lo <= 0:
            return cls(1.0, 0, qmin, qmax)
        scale = (hi - lo) / (qmax - qmin)
        z = min(max(_round(qmin - lo / scale), qmin), qmax)
        return cls(scale, z, qmin, qmax)

    def coarsened(self, scale):
        """The same real range on a coarser grid (``scale`` >= this one's): the requantizer has
        no left shift, so a layer whose ``s_x s_w / s_y`` would reach 1 widens ``s_y``."""
        lo = self.scale * (self.qmin - self.zero_point)
        z = 0 if self.zero_point == 0 else min(max(_round(self.qmin - lo / scale), self.qmin),
                                               self.qmax)
        return ActQuant(scale, z, self.qmin, self.qmax)

    def level(self, v):
        """The level of real ``v`` (rounded half up, clamped)."""
        return min(max(_round(v / self.scale) + self.zero_point, self.qmin), self.qmax)

    def as_dict(self):
        return {"scale": self.scale, "zero_point": self.zero_point, "lo": self.qmin,
                "hi": self.qmax}


def parse_precisions(spec, n_layers, allowed_bits):
    """``"8,4,2"``, ``["8", "8x4"]`` -> [(A, W)] per on-chip layer; one line naming the bad
    entry otherwise."""
    if spec is None:
        top = max(allowed_bits)
        return [(top, top)] * n_layers
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    if len(items) != n_layers:
        raise LayerError(f"precisions: {len(items)} entries for {n_layers} on-chip layers; "
                         f"give one per Dense/Conv2d layer (e.g. \"8,4x2\")")
    out = []
    for it in items:
        parts = str(it).strip().lower().split("x")
        try:
            a, w = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (None, None)
        except ValueError:
            a = w = None
        if a not in allowed_bits or w not in allowed_bits:
            raise LayerError(f"precisions: {it!r} is not a precision of this kind; allowed: "
                             f"A or AxW with A, W in {sorted(allowed_bits)}")
        out.append((a, w))
    return out


class IntRecipe(Recipe):
    """Post-training quantization for the integer kinds (see the module docstring)."""
    name = "int"
    OPTIONS = {"method": "max", "percentile": 99.99, "weight_method": "max",
               "precisions": None, "act_zero_point": None}

    def __init__(self, pe, **options):
        super().__init__(pe, **options)
        self.moded = bool(pe.modes)
        if self.opts["weight_method"] not in ("max", "percentile", "sawb"):
            raise LayerError(f"quantize: weight_method {self.opts['weight_method']!r} is "
                             f"unknown; allowed: max, percentile, sawb")
        if self.opts["act_zero_point"] not in (None, 0):
            raise LayerError(f"quantize: act_zero_point {self.opts['act_zero_point']!r}; "
                             f"allowed: 0 (every activation with zero point 0) or unset")
        if not self.moded and self.opts["precisions"] is not None:
            raise LayerError(f"quantize: option 'precisions' does not apply to pe.kind "
                             f"{pe.name!r} (its widths are pe.a_bits/pe.b_bits)")

    # -- formats per layer -----------------------------------------------------------------------
    def _mode_bits(self):
        bits = set()
        for m in self.pe.modes:
            a, w = m.split("_")
            bits.add(int(a[1:-1]))
            bits.add(int(w[1:-1]))
        return bits

    def _formats(self, chips):
        """Per on-chip block: (mode, A, W, activation unsigned)."""
        if not self.moded:
            return [(None, self.pe.a_bits, self.pe.b_bits, False)] * len(chips)
        prec = parse_precisions(self.opts["precisions"], len(chips), self._mode_bits())
        out = []
        for b, (a, w) in zip(chips, prec):
            unsigned = b.x_stats.lo >= 0
            mode = f"a{a}{'u' if unsigned else 's'}_w{w}s"
            if mode not in self.pe.modes:
                unsigned, mode = False, f"a{a}s_w{w}s"
            if mode not in self.pe.modes:
                raise LayerError(f"precisions: mode {mode} does not exist on pe.kind "
                                 f"{self.pe.name!r}")
            out.append((mode, a, w, unsigned))
        return out

    @staticmethod
    def _levels(bits, unsigned):
        return (0, (1 << bits) - 1) if unsigned else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)

    def _act(self, stats, bits, unsigned):
        qmin, qmax = self._levels(bits, unsigned)
        if self.opts["act_zero_point"] == 0 and qmin < 0:
            # Zero point 0 on signed levels (an engine that skips zero codes): a non-negative
            # tensor takes 0..qmax, any other the symmetric -qmax..qmax.
            if stats.lo >= 0:
                qmin = 0
            else:
                alpha = clip_range(stats, self.opts["method"], bits,
                                   percentile=self.opts["percentile"])
                top = min(max(-stats.lo, stats.hi), alpha)
                return ActQuant(top / qmax if top > 0 else 1.0, 0, -qmax, qmax)
        return ActQuant.calibrate(stats, qmin, qmax, method=self.opts["method"], bits=bits,
                                  percentile=self.opts["percentile"])

    # -- the recipe ------------------------------------------------------------------------------
    def build(self, model, blocks):
        chips = [b for b in blocks if b.on_chip]
        if not chips:
            raise LayerError(f"{model.name}: no Dense or Conv2d layer to run on the core")
        fmts = self._formats(chips)
        acts = [self._act(b.x_stats, a, uns) for b, (_, a, _, uns) in zip(chips, fmts)]
        epi = self.pe.epilogue()
        layers, ci, cur, coarsened = [], 0, acts[0], []
        for b in blocks:
            if not b.on_chip:
                layers.append(self._host(b, cur))
                continue
            mode, a_bits, w_bits, _ = fmts[ci]
            sx, zx = cur.scale, cur.zero_point
            axis = 1 if isinstance(b.layer, Dense) else 0
            wq, sw = symmetric_levels(b.step.w, w_bits, axis, method=self.opts["weight_method"],
                                      percentile=self.opts["percentile"])
            k_axis = 0 if isinstance(b.layer, Dense) else (1, 2, 3)
            colsum = wq.sum(axis=k_axis)
            fb = np.zeros(len(sw)) if b.step.b is None else np.asarray(b.step.b, np.float64)
            bias = np.floor(fb / (sx * sw) + 0.5).astype(np.int64) - zx * colsum
            last = ci == len(chips) - 1
            if last:
                layers += padded_conv(b.layer, zx, w=wq, bias=bias, mode=mode,
                                      out_scale=sx * sw)
                if b.act is not None:
                    raise LayerError(f"{model.name}: the last layer's activation "
                                     f"({b.act!r}) has no place on the logits; remove it")
            else:
                nxt = acts[ci + 1]
                if np.max(sx * sw / nxt.scale) >= _MAX_SCALE:
                    nxt = acts[ci + 1] = nxt.coarsened(float(np.max(sx * sw)) / _MAX_SCALE)
                    coarsened.append(ci + 1)
                scale = sx * sw / nxt.scale
                lo, hi = nxt.qmin, nxt.qmax
                if self.moded:
                    m_lo, m_hi = epi.out_range(mode)
                    lo, hi = max(lo, m_lo), min(hi, m_hi)
                if b.act == "relu":
                    lo = max(lo, nxt.zero_point)
                elif b.act is not None:
                    lo, hi = max(lo, nxt.level(b.act[1])), min(hi, nxt.level(b.act[2]))
                self._check_bias(bias, ci)
                layers += padded_conv(b.layer, zx, w=wq, bias=bias, mode=mode,
                                      epilogue={"scale": [float(s) for s in scale],
                                                "zero_point": nxt.zero_point, "lo": lo,
                                                "hi": hi},
                                      act=nxt.as_dict())
                cur = nxt
            ci += 1
        opts = {k: v for k, v in self.opts.items() if v is not None}
        return QNet(name=model.name, pe=self.pe.to_dict(), input=acts[0].as_dict() |
                    {"grid": "int"}, input_shape=tuple(model.input_shape), layers=layers,
                    meta={"recipe": self.name, "options": opts,
                          "modes": [f[0] for f in fmts], "coarsened_inputs": coarsened})

    def _check_bias(self, bias, ci):
        acc_bits = self.pe.acc_bits
        top = (1 << (acc_bits - 1)) - 1
        if np.any(np.abs(bias) > top):
            raise LayerError(f"on-chip layer #{ci}: the folded bias {int(np.abs(bias).max())} "
                             f"does not fit pe.acc_bits {acc_bits}")

    @staticmethod
    def _host(b, cur):
        """A host layer on activation levels of quantizer ``cur``."""
        layer = b.layer
        if isinstance(layer, Relu):
            return QLayer(layer=Clip(lo=cur.zero_point, hi=cur.qmax))
        if isinstance(layer, Clip):
            return QLayer(layer=Clip(lo=cur.level(layer.lo), hi=cur.level(layer.hi)))
        return QLayer(layer=layer, round=isinstance(layer, AvgPool2d))

