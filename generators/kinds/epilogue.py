"""Epilogue descriptors: what a PE kind's on-chip epilogue is, for the output stage, the twins,
the host (parameter packing) and the manifest.

`IntEpilogueSpec` is the integer kinds' epilogue (bias, TFLite/gemmlowp requantization,
zero point, activation clamp; ``docs/epilogue.md``), shaped like the kinds' combiners
(`tessera.generators.kinds.int.WrapAddCombiner`): ``latency``, ``hdl()``, ``twin(...)``,
``as_dict()``.
"""

from dataclasses import dataclass

import numpy as np


__all__ = ["Epilogue", "IntEpilogueSpec", "ParamField"]


@dataclass(frozen=True)
class ParamField:
    """One epilogue parameter: ``name``, ``bits``, ``signed``, and ``scope`` (``"channel"``: a
    field of a parameter-store lane, one per output channel; ``"run"``: a RUN argument)."""
    name: str
    bits: int
    signed: bool
    scope: str
    doc: str = ""

    def as_dict(self):
        return {"name": self.name, "bits": self.bits, "signed": self.signed,
                "scope": self.scope, "doc": self.doc}


class Epilogue:
    """Base of epilogue descriptors.

    ``latency`` cycles from a result word to the epilogue's output word; `hdl` returns a new
    one-lane `wiring.Component`; `twin` is the bit-exact NumPy function; `param_fields` lists
    the parameters; `pack_params`/`unpack_params` convert per-channel parameters to and from
    parameter-store lane codes (``lanes_per_channel`` lanes of ``lane_bits`` each per output
    channel); `as_dict` describes it for the manifest.
    """
    latency: int = 0
    out_bits: int = 0
    lane_bits: int = 0
    lanes_per_channel: int = 1

    def hdl(self):
        raise NotImplementedError

    def twin(self, *args, **kwargs):
        raise NotImplementedError

    @property
    def param_fields(self):
        raise NotImplementedError

    def pack_params(self, *args, **kwargs):
        raise NotImplementedError

    def unpack_params(self, lanes):
        raise NotImplementedError

    def as_dict(self):
        raise NotImplementedError


def _ranged(name, x, bits, signed):
    x = np.asarray(x, dtype=np.int64)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"{name} must hold integers {lo}..{hi}")
    return x


class IntEpilogueSpec(Epilogue):
    """The integer epilogue of an ``acc_bits`` accumulator into ``out_bits`` signed outputs.

    Per output channel: ``bias`` (signed acc_bits), ``mult`` (signed 32), ``shift`` (unsigned
    ``shift_bits``, a right shift 0..acc_bits+31). Per RUN: ``zero_point``, ``lo``, ``hi``
    (signed out_bits). A channel's parameters take two parameter-store lanes of
    ``lane_bits = max(acc_bits, 32 + shift_bits)``: lane 2c holds the bias, lane 2c+1 the
    multiplier (bits 0..31) and the shift above it. Two lanes, not one packed lane, because
    lane codes are uint64 on the host path and a packed channel takes up to 103 bits.

    Parameters
    ----------
    acc_bits : int
        8..64.
    out_bits : int
        2..32.
    """

    MULT_BITS = 32
    lanes_per_channel = 2
    #: INFO's epilogue capabilities (`tessera.hdl.ctrl.protocol.EPILOGUE_CAPS`).
    capabilities = ("bias", "requantize", "relu_clip")

    def __init__(self, acc_bits, out_bits):
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 8 <= acc_bits <= 64:
            raise ValueError(f"acc_bits must be an integer 8..64, not {acc_bits!r}")
        if isinstance(out_bits, bool) or not isinstance(out_bits, int) or not 2 <= out_bits <= 32:
            raise ValueError(f"out_bits must be an integer 2..32, not {out_bits!r}")
        self.acc_bits, self.out_bits = acc_bits, out_bits
        self.shift_bits = (acc_bits + 31).bit_length()
        self.lane_bits = max(acc_bits, self.MULT_BITS + self.shift_bits)
        self.latency = 5        # IntEpilogue: bias add, product, high half, shift, clamp

    def hdl(self):
        from tessera.hdl.arith.epilogue import IntEpilogue
        return IntEpilogue(acc_bits=self.acc_bits, out_bits=self.out_bits)

    def twin(self, acc, bias, mult, shift, zero_point, lo, hi):
        """Signed values in, signed ``out_bits`` values out (`tessera.sim.epilogue`)."""
        from tessera.sim.epilogue import int_epilogue
        return int_epilogue(acc, bias, mult, shift, zero_point, lo, hi,
                            acc_bits=self.acc_bits, out_bits=self.out_bits)

    @property
    def param_fields(self):
        a, o = self.acc_bits, self.out_bits
        return (ParamField("bias", a, True, "channel", "added to the accumulator, wrapping"),
                ParamField("mult", self.MULT_BITS, True, "channel",
                           "fixed-point multiplier M (scale = M * 2**-(31 + shift))"),
                ParamField("shift", self.shift_bits, False, "channel", "right shift"),
                ParamField("zero_point", o, True, "run", "output zero point"),
                ParamField("lo", o, True, "run", "clamp low (ReLU: the zero point)"),
                ParamField("hi", o, True, "run", "clamp high (ReLU6, clip)"))

    def pack_params(self, bias, mult, shift):
        """Per-channel parameters (each of shape (..., C)) -> lane codes (..., 2*C), uint64."""
        bias = _ranged("bias", bias, self.acc_bits, True)
        mult = _ranged("mult", mult, self.MULT_BITS, True)
        shift = _ranged("shift", shift, self.shift_bits, False)
        bias, mult, shift = np.broadcast_arrays(bias, mult, shift)
        b = bias.astype(np.uint64)
        if self.acc_bits < 64:
            b &= np.uint64((1 << self.acc_bits) - 1)
        ms = (mult.astype(np.uint64) & np.uint64(0xFFFFFFFF)) \
            | (shift.astype(np.uint64) << np.uint64(self.MULT_BITS))
        out = np.empty(bias.shape[:-1] + (2 * bias.shape[-1],), dtype=np.uint64)
        out[..., 0::2] = b
        out[..., 1::2] = ms
        return out

    def unpack_params(self, lanes):
        """Inverse of `pack_params`: lane codes (..., 2*C) -> (bias, mult, shift), int64."""
        lanes = np.asarray(lanes, dtype=np.uint64)
        b, ms = lanes[..., 0::2], lanes[..., 1::2]
        sh = np.uint64(64 - self.acc_bits)
        bias = (b << sh).view(np.int64) >> np.int64(64 - self.acc_bits)
        mult = (ms & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32).astype(np.int64)
        shift = ((ms >> np.uint64(self.MULT_BITS))
                 & np.uint64((1 << self.shift_bits) - 1)).astype(np.int64)
        return bias, mult, shift

    def as_dict(self):
        return {"kind": "int_requant", "rule": "tflite_gemmlowp", "acc_bits": self.acc_bits,
                "out_bits": self.out_bits, "mult_bits": self.MULT_BITS,
                "shift_bits": self.shift_bits, "latency": self.latency,
                "param_lane_bits": self.lane_bits,
                "param_lanes_per_channel": self.lanes_per_channel,
                "params": [f.as_dict() for f in self.param_fields]}
