"""The ``fpec`` kind's epilogue descriptor: bias, the integer requantizer's exact quotient,
ReLU/clip, and the FPEC compensation bits derived on chip from the exact remainder by the
host quantizer's rule (``docs/epilogue.md``, section "fpec")."""

import numpy as np

from tessera.generators.kinds.epilogue import Epilogue, IntEpilogueSpec, ParamField


__all__ = ["FpecEpilogueSpec"]


class FpecEpilogueSpec(Epilogue):
    """FPEC requantizing epilogue of an ``acc_bits`` result code into the next layer's FPEC
    activation code (``fmt``: the kind's ``a_format``; ``w + 2 + emb_bits`` bits).

    Parameters are the integer epilogue's (`IntEpilogueSpec`: per channel ``bias``, ``mult``,
    ``shift`` in the same two parameter-store lanes; per RUN ``zero_point``, ``lo``, ``hi``),
    with ``zero_point``, ``lo`` and ``hi`` signed ``w``-bit levels of the output's fixed-point
    format. The value ``x = wrap(acc + bias) * M / 2**(31 + shift) + zero_point`` is in output
    LSBs; with ``M / 2**(31 + shift) = scale``, a result code ``O`` (units of ``2**-(FBa + FBb
    + s)``) maps to the output value ``(O + bias) * scale * 2**-FBa``.
    """

    #: INFO's capabilities (`EPILOGUE_CAPS` has no FPEC-specific name; the output format,
    #: FPEC codes, is the kind's ``a`` format that INFO describes).
    capabilities = ("bias", "requantize", "relu_clip")

    def __init__(self, acc_bits, fmt, *, b_max_int=1):
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 8 <= acc_bits <= 64:
            raise ValueError(f"acc_bits must be an integer 8..64, not {acc_bits!r}")
        self.fmt = fmt
        self.w, self.emb_bits, self.threshold = fmt.w, fmt.emb_bits, float(fmt.threshold)
        self._int = IntEpilogueSpec(acc_bits, fmt.w)
        self.acc_bits = acc_bits
        self.out_bits = fmt.bits
        self.MULT_BITS = IntEpilogueSpec.MULT_BITS
        self.shift_bits = self._int.shift_bits
        self.lane_bits = self._int.lane_bits
        self.lanes_per_channel = self._int.lanes_per_channel
        self.b_max_int = b_max_int
        self.latency = 5        # FpecEpilogue: bias, product, shift+sticky, clip/round, code

    @property
    def param_fields(self):
        return self._int.param_fields

    def channel_layout(self):
        return self._int.channel_layout()

    def resources(self):
        """As the integer epilogue (one ``acc_bits`` x 32 multiplier, 8 LUTs per accumulator
        bit; a floor, the FPEC lane not measured)."""
        return self._int.resources()

    def hdl(self):
        from tessera.hdl.arith.fpec_epilogue import FpecEpilogue
        return FpecEpilogue(acc_bits=self.acc_bits, w=self.w, emb_bits=self.emb_bits,
                            threshold=self.threshold)

    def twin(self, acc, bias, mult, shift, zero_point, lo, hi):
        """Signed values in, FPEC element codes out (`tessera.sim.fpec_epilogue`)."""
        from tessera.sim.fpec_epilogue import fpec_epilogue
        return fpec_epilogue(acc, bias, mult, shift, zero_point, lo, hi,
                             acc_bits=self.acc_bits, w=self.w, emb_bits=self.emb_bits,
                             threshold=self.threshold)

    def apply_codes(self, acc_codes, chan, run):
        from tessera.sim.intmac import from_codes
        out = self.twin(from_codes(acc_codes, self.acc_bits), chan["bias"], chan["mult"],
                        chan["shift"], run["zero_point"], run["lo"], run["hi"])
        return np.asarray(out, dtype=np.int64).astype(np.uint64)

    def user_params(self, epilogue, bias, channels, *, mode=None):
        """As `IntEpilogueSpec.user_params` with a ``w``-bit signed output: ``scale`` (or
        ``mult`` and ``shift``), ``zero_point``, ``lo``/``hi`` (levels), ``activation``."""
        return self._int.user_params(epilogue, bias, channels, mode=mode)

    def _case_scale(self, k):
        """A scale that spreads ``k``-term results over about a third of the output range per
        sigma (operands drawn by `FpecKind.operands`: levels of sigma ``max_int / 3``)."""
        sb = max(self.b_max_int / 3, 0.3)
        return min(0.9, 1.0 / (np.sqrt(k) * sb * (1 << self.fmt.s)))

    def example_cases(self, cols, *, mode=None):
        """A dense layer with a per-channel scale, a convolution with ReLU, a depthwise one
        with a clip and a zero point."""
        from tessera.sim.layers import Conv2d, Dense
        C = cols
        top = (1 << (self.w - 1)) - 1
        return [
            ("dense_fpec_requant", Dense(in_features=29, out_features=C + 2), (2, 29),
             {"scale": [self._case_scale(29) * (0.7 + 0.13 * i) for i in range(C + 2)]}),
            ("conv3x3_fpec_relu", Conv2d(3, C + 1, kernel=3, padding=1), (1, 3, 5, 6),
             {"scale": self._case_scale(27) * 1.7, "activation": "relu"}),
            ("depthwise_fpec_clip", Conv2d(2, 4, kernel=3, stride=2, padding=1, groups=2),
             (1, 2, 7, 7), {"scale": self._case_scale(9) * 1.3, "zero_point": 1,
                            "lo": -(top // 2), "hi": top // 2}),
        ]

    def case_bias(self, rng, channels, *, mode=None):
        """Integers within about one result-code sigma of a 20-term dot product."""
        lim = (1 << (self.acc_bits - 1)) - 1
        sd = np.sqrt(20) * max(self.b_max_int / 3, 0.3) * (1 << self.fmt.s) * \
            (self.fmt.fixed.max_int / 3)
        top = int(min(lim, max(1, sd)))
        return rng.integers(-top, top + 1, channels)

    def reference_codes(self, acc_codes, params, *, mode=None):
        """`tessera.sim.fpec_epilogue_ref.reference_layer_codes_fpec` (exact Fractions)."""
        from tessera.sim.fpec_epilogue_ref import reference_layer_codes_fpec
        return reference_layer_codes_fpec(acc_codes, params, acc_bits=self.acc_bits, w=self.w,
                                          emb_bits=self.emb_bits, threshold=self.threshold)

    def decode(self, codes, *, mode=None):
        """Element codes -> the values they stand for (level plus error estimate, float64)."""
        level, est = self.fmt.decode(np.asarray(codes, dtype=np.uint64))
        return level + est

    def out_format(self, mode=None):
        return self.fmt.as_dict()

    def as_dict(self):
        return {"kind": "fpec_requant", "rule": "exact quotient, clip, fpec_quantize",
                "acc_bits": self.acc_bits, "out_bits": self.out_bits,
                "format": self.fmt.as_dict(), "mult_bits": self.MULT_BITS,
                "shift_bits": self.shift_bits, "latency": self.latency,
                "param_lane_bits": self.lane_bits,
                "param_lanes_per_channel": self.lanes_per_channel,
                "params": [f.as_dict() for f in self.param_fields]}
