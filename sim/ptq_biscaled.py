"""Post-training quantization for BiScaled fixed point (BiScaled-DNN).

A BiScaled tensor (``docs/approx.md``) has one code width and two scales: scale-fine
(``2**-fine_frac_bits``) for the many small values and scale-wide (``2**-wide_frac_bits``,
``D`` bits coarser) for the few large ones of the long tail, chosen per element by a selector
(stored per ``block`` as index lists). The recipe keeps that shape: per tensor (activations)
or per output channel (weights) one real scale ``S`` places the format on the data, so

* scale-fine covers the bulk: ``S * fine_max`` reaches the start of the tail, the histogram
  rule `tessera.sim.biscaled.tail_threshold` (option ``scale_rule = "tail"``, the paper's);
* scale-wide covers the rest: ``S * wide_max`` reaches the clip ``alpha`` (option ``method``
  for activations, ``weight_method`` for weights: `tessera.sim.ptq.clip_range`),

i.e. ``S = max(tail / fine_max, alpha / wide_max)``. ``scale_rule = "mse"`` instead picks,
among 64 scales from ``alpha / wide_max`` to ``alpha / fine_max``, the one with the smallest
quantization error of the calibrated tensor (weights: of the channel) through the BiScaled
quantizer.

An element is scale-wide exactly where it does not fit scale-fine: the weights by
`BiScaledFormat.encode` with no threshold (``encode`` would make any scale-wide value that is
also a scale-fine level scale-fine again), the activations by the epilogue (requantization to
a scale-fine level, re-rounded by ``D`` to scale-wide where the level leaves the code range,
``docs/epilogue.md``). Activations are symmetric (zero point 0: both scales are centred on
zero); ReLU clamps at level 0. The bias folds into result codes (units ``2**-(FBa_fine +
FBb_fine)``) and the last layer's logits are ``(value + bias) * S_x S_w[c]``
(`tessera.sim.ptq_fpec.FixedPointRecipe`, the shared walk).

The network's input goes through the QNet's integer grid: integers in the widest range whose
every integer is a BiScaled value (the preset's ``a`` format: -32..31, fine below 4, wide above).
"""

import numpy as np

from tessera.sim.biscaled import tail_threshold
from tessera.sim.layers import LayerError
from tessera.sim.ptq import Stats, clip_range
from tessera.sim.ptq_fpec import ActScale, FixedPointRecipe, int_grid


__all__ = ["BiScaledRecipe", "biscaled_scale", "SCALE_RULES"]

#: Rules for a tensor's real scale.
SCALE_RULES = ("tail", "mse")


def biscaled_scale(x, fmt, alpha, rule):
    """The real scale (real units per value unit) of data ``x`` in `BiScaledFormat` ``fmt``,
    clip ``alpha``, by ``rule`` (`SCALE_RULES`; the module docstring)."""
    fine_max, wide_max = float(fmt.fine.max_value), float(fmt.wide.max_value)
    lo_s, hi_s = alpha / wide_max, alpha / fine_max
    if rule == "tail":
        t = tail_threshold(np.clip(x, -alpha, alpha))
        return max(min(t, alpha) / fine_max, lo_s)
    x = np.asarray(x, dtype=np.float64).ravel()
    best, best_err = lo_s, np.inf
    for s in np.geomspace(lo_s, hi_s, 64):
        codes, sw = fmt.encode(x / s, threshold=np.inf)
        err = float(np.mean((fmt.decode(codes, sw) * s - x) ** 2))
        if err < best_err:
            best, best_err = s, err
    return float(best)


class BiScaledRecipe(FixedPointRecipe):
    """BiScaled post-training quantization (the module docstring). Options: ``method``
    (activation clip), ``percentile``, ``weight_method`` (per-channel weight clip), and
    ``scale_rule`` (``"tail"`` or ``"mse"``)."""
    name = "biscaled"
    OPTIONS = {"method": "max", "percentile": 99.99, "weight_method": "max",
               "scale_rule": "tail"}

    def __init__(self, pe, **options):
        super().__init__(pe, **options)
        if self.opts["weight_method"] not in ("max", "percentile", "sawb"):
            raise LayerError(f"quantize: weight_method {self.opts['weight_method']!r} is "
                             f"unknown; allowed: max, percentile, sawb")
        if self.opts["scale_rule"] not in SCALE_RULES:
            raise LayerError(f"quantize: scale_rule {self.opts['scale_rule']!r} is unknown; "
                             f"allowed: {', '.join(SCALE_RULES)}")
        self.fa, self.fb = pe.a_format, pe.b_format
        self.out_unit = self.fa.fine.lsb
        self.acc_unit = self.fa.fine.lsb * self.fb.fine.lsb
        self.grid = int_grid([self.fa.fine, self.fa.wide])
        if self.grid is None:
            raise LayerError(f"quantize: pe.a_fine_frac_bits {self.fa.fine_frac_bits} and "
                             f"a_wide_frac_bits {self.fa.wide_frac_bits} leave no integers in "
                             f"the activation format (the network input's integer grid)")

    def _clip(self, stats, method, bits):
        return clip_range(stats, method, bits, percentile=self.opts["percentile"])

    def weights(self, w, axis):
        w = np.asarray(w, dtype=np.float64)
        wm = np.moveaxis(w, axis, 0)
        values = np.empty_like(wm)
        scales = np.empty(wm.shape[0])
        f = self.fb
        for c, row in enumerate(wm):
            st = Stats()
            st.add(row)
            if not np.any(row):
                scales[c], values[c] = 1.0, 0.0
                continue
            alpha = self._clip(st, self.opts["weight_method"], f.bits)
            s = biscaled_scale(row, f, alpha, self.opts["scale_rule"])
            codes, sw = f.encode(row / s, threshold=np.inf)
            scales[c], values[c] = s, f.decode(codes, sw)
        return np.moveaxis(values, 0, axis), scales

    def weight_info(self, values, axis):
        """The share of scale-wide weights and the storage's effective bits (block index
        lists along K, as `BiScaledFormat.store`)."""
        f = self.fb
        cols = np.moveaxis(np.asarray(values), axis, 0).reshape(np.shape(values)[axis], -1)
        wide = ~((np.ldexp(cols, f.fine_frac_bits) % 1 == 0)
                 & (cols >= float(f.fine.min_value)) & (cols <= float(f.fine.max_value)))
        st = f.store(np.zeros(cols.size, dtype=np.uint64), wide.ravel().astype(np.int64))
        return {"w_wide_fraction": float(wide.mean()), "w_effective_bits": st.effective_bits}

    def act(self, stats):
        f = self.fa
        alpha = self._clip(stats, self.opts["method"], f.bits)
        s = biscaled_scale(stats.sample, f, alpha, self.opts["scale_rule"])
        lo, hi = (-(1 << (f.bits - 1)) << f.d), (((1 << (f.bits - 1)) - 1) << f.d)
        return ActScale(s * float(f.fine.lsb), 0, lo, hi, f.fine.lsb)

    def on_grid(self, cur, level):
        """Beyond the code range a scale-fine level is re-rounded to scale-wide (ties away
        from zero, the epilogue's rule); the integer input grid holds every level."""
        f = self.fa
        top = 1 << (f.bits - 1)
        if cur.unit == 1 or -top <= level < top:
            return level
        w = int(np.trunc(level / (1 << f.d) + np.copysign(0.5, level)))
        return min(max(w, -top), top - 1) << f.d

    def input_act(self, stats):
        lo, hi = self.grid
        alpha = self._clip(stats, self.opts["method"], (hi - lo).bit_length())
        return ActScale.symmetric(stats, lo, hi, 1, alpha=alpha)

