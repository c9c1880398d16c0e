"""The ``biscaled`` kind's epilogue descriptor: bias and the integer (TFLite/gemmlowp)
requantization onto the next layer's scale-fine grid, then the BiScaled element choice
(scale-fine when the level is a code, else re-rounded to scale-wide), written as the next
layer's A lane element (code | selector << bits). Rule: ``docs/epilogue.md`` ("biscaled"),
`tessera.hdl.arith.biscaled_epilogue`."""

import numpy as np

from tessera.generators.kinds.epilogue import Epilogue, ParamField


__all__ = ["BiScaledEpilogueSpec"]


class BiScaledEpilogueSpec(Epilogue):
    """The BiScaled epilogue of an ``acc_bits`` accumulator into the A format ``fmt``
    (`tessera.sim.biscaled.BiScaledFormat`).

    Per output channel: ``bias`` (signed acc_bits), ``mult`` (signed 32), ``shift`` (unsigned
    ``shift_bits``), exactly as `IntEpilogueSpec` (two parameter lanes of ``max(acc_bits, 32 +
    shift_bits)`` bits: the bias; the multiplier and the shift above it). Per RUN:
    ``zero_point``, ``lo``, ``hi``: signed ``level_bits = bits + D`` scale-fine levels (the
    scale-wide range in scale-fine units fits). Output: ``bits + 1``-bit A lane element codes.

    Parameters
    ----------
    acc_bits : int
        8..64.
    fmt : BiScaledFormat
        The next layer's A operand format (the kind's ``a_format``).
    b_fmt : BiScaledFormat or None
        The kind's B format, used only to size the example cases' scales and biases.
    """

    MULT_BITS = 32
    lanes_per_channel = 2
    capabilities = ("bias", "requantize", "relu_clip")

    def __init__(self, acc_bits, fmt, *, b_fmt=None):
        from tessera.sim.epilogue import shift_bits_for
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 8 <= acc_bits <= 64:
            raise ValueError(f"acc_bits must be an integer 8..64, not {acc_bits!r}")
        if fmt.d > 16:
            raise ValueError(f"the A format's scale distance must be at most 16, not {fmt.d}")
        self.acc_bits, self.fmt = acc_bits, fmt
        self.b_fmt = b_fmt if b_fmt is not None else fmt
        self.bits, self.d = fmt.bits, fmt.d
        self.level_bits = fmt.bits + fmt.d
        self.out_bits = fmt.bits + 1
        self.shift_bits = shift_bits_for(acc_bits)
        self.lane_bits = max(acc_bits, self.MULT_BITS + self.shift_bits)
        self.latency = 6        # IntEpilogue's 5 stages, then the scale choice

    @property
    def param_fields(self):
        a, lb = self.acc_bits, self.level_bits
        return (ParamField("bias", a, True, "channel", "added to the accumulator, wrapping"),
                ParamField("mult", self.MULT_BITS, True, "channel",
                           "fixed-point multiplier M (scale = M * 2**-(31 + shift))"),
                ParamField("shift", self.shift_bits, False, "channel", "right shift"),
                ParamField("zero_point", lb, True, "run", "output zero point (scale-fine "
                                                          "levels)"),
                ParamField("lo", lb, True, "run", "clamp low, scale-fine levels (ReLU: the "
                                                  "zero point)"),
                ParamField("hi", lb, True, "run", "clamp high, scale-fine levels"))

    def channel_layout(self):
        bias, mult, shift = self.channel_fields
        lb = self.lane_bits
        return ((bias, 0), (mult, lb), (shift, lb + self.MULT_BITS))

    def resources(self):
        """`IntEpilogueSpec`'s floor (one ``acc_bits`` x 32 multiplier, 8 LUTs per accumulator
        bit) plus 4 LUTs per level bit for the scale choice (a floor, not measured)."""
        from tessera.generators.kinds.base import PEResources
        return PEResources(multiplier=(self.acc_bits, self.MULT_BITS),
                           luts=8 * self.acc_bits + 4 * self.level_bits)

    def hdl(self):
        from tessera.hdl.arith.biscaled_epilogue import BiScaledEpilogue
        return BiScaledEpilogue(acc_bits=self.acc_bits, bits=self.bits, d=self.d)

    def twin(self, acc, bias, mult, shift, zero_point, lo, hi):
        """Signed values in, lane element codes out (`tessera.sim.biscaled_epilogue`)."""
        from tessera.sim.biscaled_epilogue import biscaled_epilogue
        return biscaled_epilogue(acc, bias, mult, shift, zero_point, lo, hi,
                                 acc_bits=self.acc_bits, bits=self.bits, d=self.d)

    def apply_codes(self, acc_codes, chan, run):
        from tessera.sim.intmac import from_codes
        return self.twin(from_codes(acc_codes, self.acc_bits), chan["bias"], chan["mult"],
                         chan["shift"], run["zero_point"], run["lo"], run["hi"])

    def level_range(self):
        """Scale-fine levels of the format's values: scale-wide's range in scale-fine units."""
        return (-(1 << (self.bits - 1)) << self.d, ((1 << (self.bits - 1)) - 1) << self.d)

    def user_params(self, epilogue, bias, channels, *, mode=None):
        """``epilogue`` is a dict: ``scale`` (one real scale in (0, 1), or one per output
        channel, from accumulator units to the next layer's scale-fine units; turned into
        ``mult``/``shift`` by `tessera.sim.epilogue.quantize_multiplier`) or ``mult`` and
        ``shift``; ``zero_point`` (default 0), ``lo``/``hi`` in scale-fine levels (default the
        format's whole range, `level_range`; ``activation = "relu"`` sets ``lo`` to the zero
        point). ``bias``: one integer per output channel, accumulator units."""
        from tessera.sim.epilogue import quantize_multiplier
        from tessera.sim.layers import LayerError
        e = dict(epilogue)
        unknown = set(e) - {"scale", "mult", "shift", "zero_point", "lo", "hi", "activation"}
        if unknown:
            raise LayerError(f"epilogue: unknown keys {sorted(unknown)}; allowed: scale (or "
                             f"mult and shift), zero_point, lo, hi, activation")
        if "scale" in e:
            if "mult" in e or "shift" in e:
                raise LayerError("epilogue: give scale, or mult and shift, not both")
            scales = np.broadcast_to(np.asarray(e.pop("scale"), dtype=np.float64), (channels,))
            try:
                pairs = [quantize_multiplier(float(sc)) for sc in scales]
            except ValueError as err:
                raise LayerError(f"epilogue.scale: {err}") from None
            e["mult"] = np.array([p[0] for p in pairs], dtype=np.int64)
            e["shift"] = np.array([p[1] for p in pairs], dtype=np.int64)
        elif "mult" not in e or "shift" not in e:
            raise LayerError("epilogue: needs scale, or mult and shift")
        act = e.pop("activation", None)
        if act not in (None, "relu"):
            raise LayerError(f"epilogue.activation: {act!r} is unknown; allowed: None, 'relu' "
                             f"(other clips: lo and hi)")
        f_lo, f_hi = self.level_range()
        e.setdefault("zero_point", 0)
        e.setdefault("lo", e["zero_point"] if act == "relu" else f_lo)
        e.setdefault("hi", f_hi)
        top = 1 << (self.level_bits - 1)
        for k in ("zero_point", "lo", "hi"):
            if not -top <= int(e[k]) < top:
                raise LayerError(f"epilogue.{k}: {e[k]} is outside the {self.level_bits}-bit "
                                 f"scale-fine levels; allowed: {-top}..{top - 1}")
            e[k] = int(e[k])
        b = np.zeros(channels, dtype=np.int64) if bias is None else np.asarray(bias)
        half = 1 << (self.acc_bits - 1)
        if b.shape != (channels,) or not np.all(np.equal(np.mod(b, 1), 0)) \
                or b.min() < -half or b.max() >= half:
            raise LayerError(f"bias: {channels} integers (accumulator units, signed "
                             f"{self.acc_bits} bits) expected with an epilogue, not "
                             f"{b.tolist()!r}")
        e["bias"] = b.astype(np.int64)
        for k in ("mult", "shift"):
            e[k] = np.broadcast_to(np.asarray(e[k], dtype=np.int64), (channels,))
        return e

    def _level_std(self, k):
        """Rough standard deviation, in the next layer's scale-fine levels, of a K-term dot
        product of the kind's random operands (Laplace with a scale of a quarter of each
        scale-fine range) before any scale: used to size the example scales."""
        sa = np.sqrt(2) * float(self.fmt.fine.max_value) / 4
        sb = np.sqrt(2) * float(self.b_fmt.fine.max_value) / 4
        return float(np.sqrt(k) * sa * sb) * 2.0 ** self.fmt.fine_frac_bits

    def example_cases(self, cols, *, mode=None):
        """A dense layer with one scale per channel, a convolution with ReLU, a depthwise one
        with a clip; scales put the outputs' spread near the scale-fine code range, so a good
        share of them (the tail) leave it and are written at scale-wide."""
        from tessera.sim.layers import Conv2d, Dense
        C = cols
        top = 1 << (self.bits - 1)
        # accumulator units per scale-fine level of the output
        per_level = 2.0 ** self.b_fmt.fine_frac_bits

        def sc(k, f):                # scale with an output spread of f code ranges
            return float(min(0.9, f * top / (self._level_std(k) * per_level)))
        f_lo, f_hi = self.level_range()
        return [
            ("dense_bsquant", Dense(in_features=29, out_features=C + 2), (2, 29),
             {"scale": [sc(29, 0.5 + 0.4 * i) for i in range(C + 2)]}),
            ("conv3x3_bsquant_relu", Conv2d(3, C + 1, kernel=3, padding=1), (1, 3, 5, 6),
             {"scale": sc(27, 1.5), "activation": "relu"}),
            ("depthwise_bsquant_clip", Conv2d(2, 4, kernel=3, stride=2, padding=1, groups=2),
             (1, 2, 7, 7), {"scale": sc(9, 2.0), "lo": f_lo // 2, "hi": f_hi // 3}),
        ]

    def case_bias(self, rng, channels, *, mode=None):
        """Integers in +- a quarter of a 20-term accumulator's spread (accumulator units),
        within the accumulator's range."""
        per_level = 2.0 ** self.b_fmt.fine_frac_bits
        top = min(int(0.25 * self._level_std(20) * per_level) + 1,
                  (1 << (self.acc_bits - 1)) - 1)
        return rng.integers(-top, top + 1, channels)

    def reference_codes(self, acc_codes, params, *, mode=None):
        """`tessera.sim.biscaled_epilogue_ref.reference_layer_codes_biscaled` (exact
        Fractions, element by element)."""
        from tessera.sim.biscaled_epilogue_ref import reference_layer_codes_biscaled
        return reference_layer_codes_biscaled(acc_codes, params, acc_bits=self.acc_bits,
                                              bits=self.bits, d=self.d)

    def decode(self, codes, *, mode=None):
        """A lane element codes -> their values (float64, exact: `BiScaledFormat.decode`)."""
        return self.fmt.decode(*self.fmt.split_lane_codes(codes))

    def out_format(self, mode=None):
        return {"kind": "biscaled", **self.fmt.as_dict()}

    def as_dict(self):
        return {"kind": "biscaled_requant", "rule": "tflite_gemmlowp, then fine-or-wide",
                "acc_bits": self.acc_bits, "out_bits": self.out_bits, "bits": self.bits,
                "d": self.d, "level_bits": self.level_bits, "mult_bits": self.MULT_BITS,
                "shift_bits": self.shift_bits, "latency": self.latency,
                "param_lane_bits": self.lane_bits,
                "param_lanes_per_channel": self.lanes_per_channel,
                "params": [f.as_dict() for f in self.param_fields]}
