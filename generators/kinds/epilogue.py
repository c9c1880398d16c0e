"""Epilogue descriptors: what a PE kind's on-chip epilogue is, for the output stage, the twins,
the host (parameter packing, user parameters, regression cases, the independent reference)
and the manifest.

The seam (``docs/epilogue.md``): an `Epilogue` declares its parameters (`param_fields`, each
per output channel, per RUN, or a RUN flag bit), how a channel's parameters sit in
parameter-store lanes (`channel_layout`), its one-lane HDL unit (`hdl`: members ``valid``,
``acc``, one input per parameter, ``out_valid``, ``out``), its code-level twin
(`apply_codes`), how a user's epilogue dict becomes the mapper's parameters (`user_params`),
the regression's example cases (`example_cases`, `case_bias`), the independent reference on
accumulator codes (`reference_codes`) and how its outputs decode (`decode`). The output
stage, the engines, the mapper and the testbench ask it and hard-code none of its fields.

`IntEpilogueSpec` is the integer kinds' epilogue (bias, TFLite/gemmlowp requantization,
zero point, activation clamp), `FPEpilogueSpec` the floating-point one, `TernaryEpilogueSpec`
the ternary kind's (bias, then the k-bit bounded-ReLU activation quantizer).
"""

from dataclasses import dataclass

import numpy as np


__all__ = ["Epilogue", "IntEpilogueSpec", "FPEpilogueSpec", "TernaryEpilogueSpec", "ParamField",
           "FLAG_FIRST_BIT", "SCOPES"]

#: Where a parameter comes from: a field of the channel's parameter-store lanes, a RUN
#: argument field, or one bit of the RUN flags.
SCOPES = ("channel", "run", "flag")

#: RUN flags bit of an epilogue's first ``flag`` parameter (bit 0: accumulate, bit 1:
#: epilogue); its i-th flag parameter is bit ``FLAG_FIRST_BIT + i``.
FLAG_FIRST_BIT = 2


@dataclass(frozen=True)
class ParamField:
    """One epilogue parameter: ``name``, ``bits``, ``signed``, and ``scope`` (``"channel"``: a
    field of the parameter-store lanes, one per output channel; ``"run"``: a RUN argument;
    ``"flag"``: one RUN flags bit)."""
    name: str
    bits: int
    signed: bool
    scope: str
    doc: str = ""

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"ParamField.scope must be one of {SCOPES}, not {self.scope!r}")
        if self.scope == "flag" and (self.bits != 1 or self.signed):
            raise ValueError(f"flag parameter {self.name!r} must be 1 unsigned bit")

    def as_dict(self):
        return {"name": self.name, "bits": self.bits, "signed": self.signed,
                "scope": self.scope, "doc": self.doc}


def _mask(bits):
    return np.uint64((1 << bits) - 1)


def _ranged(name, x, bits, signed):
    x = np.asarray(x, dtype=np.int64)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"{name} must hold integers {lo}..{hi}")
    return x


def _code(value, bits):
    """A signed or unsigned integer -> its ``bits``-bit two's complement code."""
    return int(value) & ((1 << bits) - 1)


def _value(code, bits, signed):
    code = int(code) & ((1 << bits) - 1)
    return code - (1 << bits) if signed and code >> (bits - 1) else code


class Epilogue:
    """Base of epilogue descriptors.

    Attributes: ``acc_bits`` (the result lane it reads), ``out_bits`` (the operand-width code
    it writes), ``latency`` (cycles from a result word to its output word), ``lane_bits`` and
    ``lanes_per_channel`` (a channel's parameters take that many parameter-store lanes),
    ``capabilities`` (INFO's `tessera.hdl.ctrl.protocol.EPILOGUE_CAPS` names).

    A subclass gives `param_fields`, `hdl`, `apply_codes`, `user_params`, `example_cases`,
    `case_bias`, `reference_codes`, `decode`, `as_dict` and, when its channel fields do not
    pack one after another, `channel_layout`.
    """
    latency: int = 0
    #: RUN flags bit of the first flag parameter (the output stage reads it from here, so the
    #: HDL imports nothing from the generators).
    flag_first_bit: int = FLAG_FIRST_BIT
    acc_bits: int = 0
    out_bits: int = 0
    lane_bits: int = 0
    lanes_per_channel: int = 1
    capabilities: tuple = ()

    # -- what it is --------------------------------------------------------------------------
    @property
    def param_fields(self):
        raise NotImplementedError

    def resources(self):
        """The `PEResources` floor of one epilogue lane for the FPGA fit estimate (one lane per
        result lane): its multiplier's operand widths, or None, and a LUT floor well under
        the measured lane (`benchmarks/results/layers.md`)."""
        from tessera.generators.kinds.base import PEResources
        return PEResources(multiplier=None, luts=0)

    def fields_of(self, scope):
        return tuple(f for f in self.param_fields if f.scope == scope)

    @property
    def channel_fields(self):
        return self.fields_of("channel")

    @property
    def run_fields(self):
        return self.fields_of("run")

    @property
    def flag_fields(self):
        return self.fields_of("flag")

    def channel_layout(self):
        """``(field, bit offset)`` per channel field, in the channel's ``lanes_per_channel *
        lane_bits`` bits (lane ``j`` of channel ``c`` is parameter lane ``c * lanes_per_channel
        + j``). Default: one after another, a field never straddling two lanes."""
        out, pos = [], 0
        for f in self.channel_fields:
            if pos % self.lane_bits + f.bits > self.lane_bits:
                pos = -(-pos // self.lane_bits) * self.lane_bits
            out.append((f, pos))
            pos += f.bits
        if pos > self.lanes_per_channel * self.lane_bits:
            raise ValueError(f"channel fields take {pos} bits, more than {self.lanes_per_channel}"
                             f" lanes of {self.lane_bits}")
        return tuple(out)

    @property
    def channel_bits(self):
        return self.lanes_per_channel * self.lane_bits

    def flag_mask(self):
        """RUN flags bits of the flag parameters."""
        return sum(1 << (FLAG_FIRST_BIT + i) for i in range(len(self.flag_fields)))

    def run_arg_fields(self):
        """The RUN argument fields a core with this epilogue adds (`ArgLayout` fields):
        ``p_base``, then one per run parameter (whole bytes, the code in the low bits)."""
        from tessera.hdl.ctrl.protocol import Field
        return [Field("p_base", 2, "epilogue parameter word of the RUN's first output tile")] + [
            Field(f.name, -(-f.bits // 8), f"epilogue: {f.doc} ({f.bits}-bit code)")
            for f in self.run_fields]

    def flags_doc(self):
        bits = "".join(f"; bit {FLAG_FIRST_BIT + i}: epilogue {f.name} ({f.doc})"
                       for i, f in enumerate(self.flag_fields))
        return "; bit 1: epilogue, results to R" + bits

    # -- parameter store -----------------------------------------------------------------------
    def pack_params(self, *args, **kwargs):
        """Per-channel parameters (positional in `channel_fields` order, or by name; each
        array_like of shape (..., C)) -> parameter lane codes (..., lanes_per_channel * C),
        uint64."""
        names = [f.name for f in self.channel_fields]
        if len(args) > len(names):
            raise TypeError(f"pack_params takes at most {len(names)} arrays")
        vals = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names or k in vals:
                raise TypeError(f"pack_params: unexpected or repeated {k!r}; fields: {names}")
            vals[k] = v
        missing = [n for n in names if n not in vals]
        if missing:
            raise TypeError(f"pack_params: missing {missing}")
        arrs = np.broadcast_arrays(*(_ranged(f.name, vals[f.name], f.bits, f.signed)
                                     for f in self.channel_fields))
        L = self.lanes_per_channel
        shape = arrs[0].shape
        out = np.zeros(shape[:-1] + (L * shape[-1],), dtype=np.uint64)
        for (f, off), a in zip(self.channel_layout(), arrs):
            lane, bit = divmod(off, self.lane_bits)
            out[..., lane::L] |= (a.astype(np.uint64) & _mask(f.bits)) << np.uint64(bit)
        return out

    def unpack_params(self, lanes):
        """Inverse of `pack_params`: lane codes (..., lanes_per_channel * C) -> one int64
        array (..., C) per channel field, in `channel_fields` order."""
        lanes = np.asarray(lanes, dtype=np.uint64)
        L = self.lanes_per_channel
        out = []
        for f, off in self.channel_layout():
            lane, bit = divmod(off, self.lane_bits)
            code = (lanes[..., lane::L] >> np.uint64(bit)) & _mask(f.bits)
            if f.signed:
                sh = np.uint64(64 - f.bits)
                out.append((code << sh).view(np.int64) >> np.int64(64 - f.bits))
            else:
                out.append(code.astype(np.int64))
        return tuple(out)

    # -- RUN arguments -------------------------------------------------------------------------
    def run_codes(self, params):
        """The mapper's parameters -> ``(fields, flags)``: RUN argument codes of the run
        parameters and the flags bits of the flag parameters."""
        fields = {f.name: _code(params[f.name], f.bits) for f in self.run_fields}
        flags = sum(1 << (FLAG_FIRST_BIT + i) for i, f in enumerate(self.flag_fields)
                    if params.get(f.name))
        return fields, flags

    def run_values(self, args):
        """RUN arguments (codes, with ``flags``) -> {run or flag parameter: value}."""
        vals = {f.name: _value(args[f.name], f.bits, f.signed) for f in self.run_fields}
        for i, f in enumerate(self.flag_fields):
            vals[f.name] = (int(args["flags"]) >> (FLAG_FIRST_BIT + i)) & 1
        return vals

    # -- behaviour -----------------------------------------------------------------------------
    def hdl(self):
        """A new one-lane `wiring.Component`: ``valid``, ``acc`` (``acc_bits``), one input per
        parameter (named as the field), ``out_valid``, ``out`` (``out_bits``)."""
        raise NotImplementedError

    def apply_codes(self, acc_codes, chan, run):
        """The twin on codes: accumulator codes (..., C) -> output codes (..., C), uint64;
        ``chan``: {channel field: array (C,)}; ``run``: {run/flag field: value}."""
        raise NotImplementedError

    def user_params(self, epilogue, bias, channels):
        """A user's epilogue dict (and the per-channel ``bias``) -> the mapper's parameters
        ({channel field: array (channels,), run/flag field: value})."""
        raise NotImplementedError

    def example_cases(self, cols, *, mode=None):
        """The regression's epilogue layer cases in ``mode``: ``(name, layer, input shape,
        epilogue dict)``."""
        raise NotImplementedError

    def case_bias(self, rng, channels, *, mode=None):
        """The bias of an example case in ``mode``, drawn from ``rng`` (None: no bias)."""
        return None

    def reference_codes(self, acc_codes, params, *, mode=None):
        """The independent reference: a layer's accumulator codes (channel axis 1) and the
        mapper's parameters -> output codes, sharing no code with `apply_codes` or the HDL."""
        raise NotImplementedError

    def decode(self, codes, *, mode=None):
        """Output codes -> values (the next layer's operand values)."""
        raise NotImplementedError

    def twin(self, *args, **kwargs):
        raise NotImplementedError

    def as_dict(self):
        raise NotImplementedError

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
        2..32: the width of the result store's lanes, signed (enough for every mode's
        activation range).
    mode_ranges : dict or None
        For kinds with run-time modes: {mode: (lo, hi)}, the activation range of each mode
        (key None: the default mode). The clamp `user_params` gives is always inside the RUN
        mode's range (a user's ``lo``/``hi`` are intersected with it), so every output is an
        activation of that mode, held as a signed ``out_bits`` code.
    """

    MULT_BITS = 32
    lanes_per_channel = 2
    #: INFO's epilogue capabilities (`tessera.hdl.ctrl.protocol.EPILOGUE_CAPS`).
    capabilities = ("bias", "requantize", "relu_clip")

    def __init__(self, acc_bits, out_bits, *, mode_ranges=None):
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 8 <= acc_bits <= 64:
            raise ValueError(f"acc_bits must be an integer 8..64, not {acc_bits!r}")
        if isinstance(out_bits, bool) or not isinstance(out_bits, int) or not 2 <= out_bits <= 32:
            raise ValueError(f"out_bits must be an integer 2..32, not {out_bits!r}")
        self.acc_bits, self.out_bits = acc_bits, out_bits
        self.mode_ranges = {k: tuple(v) for k, v in (mode_ranges or {}).items()}
        top = (1 << (out_bits - 1))
        for mode, (lo, hi) in self.mode_ranges.items():
            if not -top <= lo < hi < top:
                raise ValueError(f"mode_ranges[{mode!r}] must lie in the signed {out_bits}-bit "
                                 f"range, not {(lo, hi)!r}")
        self.shift_bits = (acc_bits + 31).bit_length()
        self.lane_bits = max(acc_bits, self.MULT_BITS + self.shift_bits)
        self.latency = 5        # IntEpilogue: bias add, product, high half, shift, clamp

    def resources(self):
        """One ``acc_bits`` x 32 multiplier (4 DSP blocks for acc 32 on both FPGA families) and
        8 LUTs per accumulator bit (the measured int32 -> int8 lane: 885 LUT4s with DSPs on
        the ECP5, 901 logic cells on the UP5K)."""
        from tessera.generators.kinds.base import PEResources
        return PEResources(multiplier=(self.acc_bits, self.MULT_BITS), luts=8 * self.acc_bits)

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

    def channel_layout(self):
        bias, mult, shift = self.channel_fields
        lb = self.lane_bits
        return ((bias, 0), (mult, lb), (shift, lb + self.MULT_BITS))

    def apply_codes(self, acc_codes, chan, run):
        from tessera.sim.intmac import from_codes, to_codes
        out = self.twin(from_codes(acc_codes, self.acc_bits), chan["bias"], chan["mult"],
                        chan["shift"], run["zero_point"], run["lo"], run["hi"])
        return to_codes(out, self.out_bits)

    def out_range(self, mode=None):
        """The outputs' range in ``mode`` (the activation range of a run-time mode, else the
        signed ``out_bits`` range)."""
        if mode in self.mode_ranges:
            return self.mode_ranges[mode]
        return -(1 << (self.out_bits - 1)), (1 << (self.out_bits - 1)) - 1

    def user_params(self, epilogue, bias, channels, *, mode=None):
        """``epilogue`` is a dict: ``scale`` (one real scale in (0, 1), or one per output
        channel: turned into ``mult``/``shift`` by `tessera.sim.epilogue.quantize_multiplier`,
        TFLite's rule) or ``mult`` and ``shift`` directly; ``zero_point`` (default 0);
        ``lo``/``hi`` (default the output format's range in ``mode``; ``activation = "relu"``
        sets ``lo`` to the zero point; both are intersected with the range of ``mode``'s
        activations for kinds with run-time modes). ``bias`` (one integer per output channel,
        in accumulator units) is added on chip."""
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
            pairs = [quantize_multiplier(float(sc)) for sc in scales]
            e["mult"] = np.array([p[0] for p in pairs], dtype=np.int64)
            e["shift"] = np.array([p[1] for p in pairs], dtype=np.int64)
        elif "mult" not in e or "shift" not in e:
            raise LayerError("epilogue: needs scale, or mult and shift")
        ob = self.out_bits
        out_lo, out_hi = -(1 << (ob - 1)), (1 << (ob - 1)) - 1
        e.setdefault("zero_point", 0)
        act = e.pop("activation", None)
        if act not in (None, "relu"):
            raise LayerError(f"epilogue.activation: {act!r} is unknown; allowed: None, 'relu' "
                             f"(ReLU6 and other clips: lo and hi)")
        e.setdefault("lo", e["zero_point"] if act == "relu" else out_lo)
        e.setdefault("hi", out_hi)
        for k in ("zero_point", "lo", "hi"):
            if not out_lo <= int(e[k]) <= out_hi:
                raise LayerError(f"epilogue.{k}: {e[k]} is outside the {ob}-bit output "
                                 f"format; allowed: {out_lo}..{out_hi}")
        if self.mode_ranges:        # outputs are activations of the RUN's mode
            m_lo, m_hi = self.out_range(mode)
            e["lo"], e["hi"] = max(int(e["lo"]), m_lo), min(int(e["hi"]), m_hi)
        b = np.zeros(channels, dtype=np.int64) if bias is None else np.asarray(bias)
        if b.shape != (channels,) or not np.all(np.equal(np.mod(b, 1), 0)):
            raise LayerError(f"bias: {channels} integers (accumulator units) expected with an "
                             f"epilogue, not shape {b.shape}")
        e["bias"] = b.astype(np.int64)
        for k in ("mult", "shift"):
            e[k] = np.broadcast_to(np.asarray(e[k], dtype=np.int64), (channels,))
        return e

    def example_cases(self, cols, *, mode=None):
        """A dense layer with a per-channel scale and zero point, a convolution with ReLU and
        a scale whose shift is large, a depthwise one with a clip. Sized for 8-bit outputs;
        narrower output ranges (``mode``'s) get their scales multiplied by 4 per missing bit
        (capped at 0.9) and the clip and zero points scaled down, so outputs still spread."""
        from tessera.sim.layers import Conv2d, Dense
        C = cols
        lo, hi = self.out_range(mode)
        bits = (hi - lo).bit_length()
        f = 1 << (2 * max(0, 8 - bits))

        def sc(x):
            return min(x * f, 0.9)

        def pt(v):                      # a point of the int8 examples, in this range
            return v if bits >= 8 else max(lo, min(hi, lo + (v + 128) * (hi - lo) // 255))
        return [
            ("dense_requant", Dense(in_features=29, out_features=C + 2), (2, 29),
             {"scale": [sc(0.0004 + 0.0001 * i) for i in range(C + 2)],
              "zero_point": pt(3)}),
            ("conv3x3_requant_relu", Conv2d(3, C + 1, kernel=3, padding=1), (1, 3, 5, 6),
             {"scale": sc(0.0011), "zero_point": pt(-4), "activation": "relu"}),
            ("depthwise_requant_clip", Conv2d(2, 4, kernel=3, stride=2, padding=1, groups=2),
             (1, 2, 7, 7), {"scale": sc(0.0009), "lo": pt(-20), "hi": pt(50)}),
        ]

    def case_bias(self, rng, channels, *, mode=None):
        """Integers in +-20000 for 8-bit outputs, divided by the `example_cases` scale factor
        for narrower output ranges."""
        lo, hi = self.out_range(mode)
        top = 20000 >> (2 * max(0, 8 - (hi - lo).bit_length()))
        return rng.integers(-top, top + 1, channels)

    def reference_codes(self, acc_codes, params, *, mode=None):
        """`tessera.sim.epilogue_ref.reference_layer_codes` (exact Fractions, element by
        element)."""
        from tessera.sim.epilogue_ref import reference_layer_codes
        return reference_layer_codes(acc_codes, params, acc_bits=self.acc_bits,
                                     out_bits=self.out_bits)

    def decode(self, codes, *, mode=None):
        """Signed ``out_bits`` values (int64), inside `out_range` of the RUN's mode."""
        from tessera.sim.intmac import from_codes
        return from_codes(codes, self.out_bits)

    def out_format(self, mode=None):
        lo, hi = self.out_range(mode)
        return {"kind": "int", "bits": self.out_bits, "signed": True, "range": [lo, hi]}

    def as_dict(self):
        return {"kind": "int_requant", "rule": "tflite_gemmlowp", "acc_bits": self.acc_bits,
                "out_bits": self.out_bits, "mult_bits": self.MULT_BITS,
                "shift_bits": self.shift_bits, "latency": self.latency,
                "param_lane_bits": self.lane_bits,
                "param_lanes_per_channel": self.lanes_per_channel,
                **({"mode_ranges": {str(k): list(v) for k, v in self.mode_ranges.items()}}
                   if self.mode_ranges else {}),
                "params": [f.as_dict() for f in self.param_fields]}


class FPEpilogueSpec(Epilogue):
    """The floating-point epilogue (``fpmac``): bias add in the accumulator format, conversion
    to the operand format (its rounding and overflow rules), ReLU
    (`tessera.hdl.arith.fpepilogue`; ``docs/epilogue.md``).

    Per output channel: ``bias`` (an ``fmt_acc`` code, one lane of ``fmt_acc.width`` bits).
    Per RUN: the flag ``relu`` (RUN flags bit 2).

    Parameters
    ----------
    fmt_acc, fmt_in : FloatFormat
    add_stages : int
        Latency of the bias adder (the kind's combiner latency), 1..4.
    """

    lanes_per_channel = 1
    capabilities = ("bias", "relu_clip", "fp_convert")
    CONVERT_STAGES = 1

    def __init__(self, fmt_acc, fmt_in, *, add_stages=2):
        self.fmt_acc, self.fmt_in = fmt_acc, fmt_in
        self.add_stages = add_stages
        self.acc_bits = self.lane_bits = fmt_acc.width
        self.out_bits = fmt_in.width
        self.latency = add_stages + self.CONVERT_STAGES + 1

    @property
    def param_fields(self):
        return (ParamField("bias", self.fmt_acc.width, False, "channel",
                           f"{self.fmt_acc.name} code added to the accumulator"),
                ParamField("relu", 1, False, "flag", "ReLU after the conversion"))

    def resources(self):
        """No multiplier; 400 LUTs (the measured lanes: fp16 -> fp8 650 LUT4s on the ECP5 and
        554 logic cells on the UP5K, dlfloat16 508 and 478)."""
        from tessera.generators.kinds.base import PEResources
        return PEResources(multiplier=None, luts=400)

    def hdl(self):
        from tessera.hdl.arith.fpepilogue import FPEpilogue
        return FPEpilogue(fmt_acc=self.fmt_acc, fmt_in=self.fmt_in, add_stages=self.add_stages,
                          convert_stages=self.CONVERT_STAGES)

    def twin(self, acc, bias, relu):
        from tessera.sim.fpepilogue import fp_epilogue
        return fp_epilogue(acc, bias, relu, fmt_acc=self.fmt_acc, fmt_in=self.fmt_in)

    def apply_codes(self, acc_codes, chan, run):
        return self.twin(acc_codes, chan["bias"], run["relu"])

    def user_params(self, epilogue, bias, channels, *, mode=None):
        """``epilogue``: a dict with ``activation`` (None or ``"relu"``); ``bias``: one value per
        output channel (default 0), each exactly representable in the accumulator format
        (a bias the format cannot hold is refused, not rounded)."""
        from tessera.sim import fp
        from tessera.sim.layers import LayerError
        e = dict(epilogue)
        unknown = set(e) - {"activation"}
        if unknown:
            raise LayerError(f"epilogue: unknown keys {sorted(unknown)}; allowed: activation "
                             f"(the {self.fmt_acc.name} -> {self.fmt_in.name} epilogue has no "
                             f"scale: fold it into the weights or the bias)")
        act = e.get("activation")
        if act not in (None, "relu"):
            raise LayerError(f"epilogue.activation: {act!r} is unknown; allowed: None, 'relu'")
        b = np.zeros(channels) if bias is None else np.asarray(bias, dtype=np.float64)
        if b.shape != (channels,):
            raise LayerError(f"bias: {channels} values expected with an epilogue, not shape "
                             f"{b.shape}")
        codes = fp.encode(self.fmt_acc, b).astype(np.uint64)
        back = fp.decode(self.fmt_acc, codes)
        bad = np.flatnonzero(~((back == b) | (np.isnan(back) & np.isnan(b))))
        if bad.size:
            i = int(bad[0])
            raise LayerError(f"bias[{i}]: {float(b[i])!r} is not exactly representable in "
                             f"{self.fmt_acc.name}; allowed: values of the accumulator format")
        return {"bias": codes, "relu": int(act == "relu")}

    def example_cases(self, cols, *, mode=None):
        """A dense layer with a bias, a convolution with ReLU, a depthwise one with ReLU."""
        from tessera.sim.layers import Conv2d, Dense
        C = cols
        return [
            ("dense_fp_bias", Dense(in_features=23, out_features=C + 2), (2, 23), {}),
            ("conv3x3_fp_relu", Conv2d(3, C + 1, kernel=3, padding=1), (1, 3, 4, 5),
             {"activation": "relu"}),
            ("depthwise_fp_relu", Conv2d(2, 4, kernel=3, stride=2, padding=1, groups=2),
             (1, 2, 6, 6), {"activation": "relu"}),
        ]

    def case_bias(self, rng, channels, *, mode=None):
        """Values of the accumulator format near the outputs' scale."""
        from tessera.sim import fp
        return fp.decode(self.fmt_acc, fp.encode(self.fmt_acc, rng.normal(0.0, 2.0, channels)))

    def reference_codes(self, acc_codes, params, *, mode=None):
        """`tessera.sim.fpepilogue_ref.reference_layer_codes_fp` (values via
        `tessera.sim.fpref`)."""
        from tessera.sim.fpepilogue_ref import reference_layer_codes_fp
        return reference_layer_codes_fp(acc_codes, params, fmt_acc=self.fmt_acc,
                                        fmt_in=self.fmt_in)

    def decode(self, codes, *, mode=None):
        from tessera.sim import fp
        return fp.decode(self.fmt_in, np.asarray(codes, dtype=np.uint64))

    def out_format(self, mode=None):
        return {"kind": "float", **self.fmt_in.as_dict()}

    def as_dict(self):
        return {"kind": "fp_convert", "acc_format": self.fmt_acc.name,
                "out_format": self.fmt_in.name, "add_stages": self.add_stages,
                "convert_stages": self.CONVERT_STAGES, "latency": self.latency,
                "param_lane_bits": self.lane_bits,
                "param_lanes_per_channel": self.lanes_per_channel,
                "params": [f.as_dict() for f in self.param_fields]}


class TernaryEpilogueSpec(Epilogue):
    """The ternary kind's epilogue: bias add in the accumulator's fixed point, then the k-bit
    bounded-ReLU activation quantizer of `tessera.sim.ternary` (``k = act_bits``) with a
    per-channel step (`tessera.hdl.arith.ternary_epilogue`; ``docs/epilogue.md``).

    Per output channel: ``bias`` (signed ``acc_bits``, accumulator units), ``mult`` (unsigned
    16) and ``shift`` (unsigned ``shift_bits``): ``y = wrap(acc + bias) * mult / 2**shift`` is
    the quantizer's input in output-code units and the output is ``floor(clip(y, 0, 2**k - 1)
    + 1/2)``, i.e. ``quantize_act(y / (2**k - 1), k)``. No RUN fields, no flags. A channel's
    fields take one parameter lane of ``acc_bits + 16 + shift_bits`` bits (bias, mult, shift
    from bit 0 up) when that is at most 64, else two lanes of ``max(acc_bits, 16 +
    shift_bits)`` (bias; mult and shift).

    Parameters
    ----------
    acc_bits : int
        8..64 (the kind's ``acc_bits``).
    act_bits : int
        1..16: ``k``, the width of the outputs (the kind's activation codes).
    scale_frac : int
        The accumulator's fraction bits (the kind's ``scale_frac``): the default step is
        ``mult = 1``, ``shift = scale_frac`` (the accumulator's value, rounded to a code).
    scale_bits : int or None
        The kind's scale-code width, used only to size the example cases' steps.
    """

    capabilities = ("bias", "ternary_quantizer")

    def __init__(self, acc_bits, act_bits, *, scale_frac=0, scale_bits=None):
        from tessera.sim.ternary_epilogue import MULT_BITS, shift_bits_for
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 8 <= acc_bits <= 64:
            raise ValueError(f"acc_bits must be an integer 8..64, not {acc_bits!r}")
        if isinstance(act_bits, bool) or not isinstance(act_bits, int) or not 1 <= act_bits <= 16:
            raise ValueError(f"act_bits must be an integer 1..16, not {act_bits!r}")
        self.acc_bits, self.act_bits, self.out_bits = acc_bits, act_bits, act_bits
        self.scale_frac, self.scale_bits = scale_frac, scale_bits
        self.MULT_BITS = MULT_BITS
        self.shift_bits = shift_bits_for(acc_bits)
        total = acc_bits + MULT_BITS + self.shift_bits
        if total <= 64:
            self.lanes_per_channel, self.lane_bits = 1, total
        else:
            self.lanes_per_channel = 2
            self.lane_bits = max(acc_bits, MULT_BITS + self.shift_bits)
        self.latency = 4        # TernaryEpilogue: bias add, product, rounding shift, clamp

    @property
    def param_fields(self):
        return (ParamField("bias", self.acc_bits, True, "channel",
                           "added to the accumulator, wrapping"),
                ParamField("mult", self.MULT_BITS, False, "channel",
                           "step multiplier (y = (acc + bias) * mult / 2**shift)"),
                ParamField("shift", self.shift_bits, False, "channel", "step right shift"))

    def resources(self):
        """One ``acc_bits`` x 16 multiplier (the step) and 4 LUTs per accumulator bit (bias
        add, rounding shift, clamp; a floor, not measured)."""
        from tessera.generators.kinds.base import PEResources
        return PEResources(multiplier=(self.acc_bits, 16), luts=4 * self.acc_bits)

    def hdl(self):
        from tessera.hdl.arith.ternary_epilogue import TernaryEpilogue
        return TernaryEpilogue(acc_bits=self.acc_bits, act_bits=self.act_bits)

    def twin(self, acc, bias, mult, shift):
        """Signed accumulator values in, activation codes out
        (`tessera.sim.ternary_epilogue`)."""
        from tessera.sim.ternary_epilogue import ternary_epilogue
        return ternary_epilogue(acc, bias, mult, shift, acc_bits=self.acc_bits,
                                act_bits=self.act_bits)

    def apply_codes(self, acc_codes, chan, run):
        from tessera.sim.intmac import from_codes
        out = self.twin(from_codes(acc_codes, self.acc_bits), chan["bias"], chan["mult"],
                        chan["shift"])
        return np.asarray(out, dtype=np.uint64)

    def user_params(self, epilogue, bias, channels, *, mode=None):
        """``epilogue`` is a dict: ``scale`` (a positive real, or one per output channel: the
        quantizer's input in output codes is ``(acc + bias) * scale``; turned into ``mult``
        and ``shift`` by `tessera.sim.ternary_epilogue.scale_to_mult_shift`), or ``mult`` and
        ``shift`` directly, or neither (``mult = 1``, ``shift = scale_frac``: the
        accumulator's value rounded to an activation code, the step when the weights' scales
        are real magnitudes and the input activations are codes of ``a * (2**k - 1)``).
        ``bias``: one integer per output channel in accumulator units (default 0)."""
        from tessera.sim.layers import LayerError
        from tessera.sim.ternary_epilogue import scale_to_mult_shift
        e = dict(epilogue)
        unknown = set(e) - {"scale", "mult", "shift"}
        if unknown:
            raise LayerError(f"epilogue: unknown keys {sorted(unknown)}; allowed: scale, or "
                             f"mult and shift (the ternary quantizer's step)")
        if "scale" in e:
            if "mult" in e or "shift" in e:
                raise LayerError("epilogue: give scale, or mult and shift, not both")
            sc = np.asarray(e.pop("scale"), dtype=object).reshape(-1)
            if sc.size not in (1, channels):
                raise LayerError(f"epilogue.scale: 1 or {channels} values, not {sc.size}")
            try:
                pairs = [scale_to_mult_shift(v, acc_bits=self.acc_bits) for v in sc]
            except ValueError as err:
                raise LayerError(f"epilogue.scale: {err}") from None
            pairs = pairs * (channels // len(pairs))
            e["mult"] = np.array([p[0] for p in pairs], dtype=np.int64)
            e["shift"] = np.array([p[1] for p in pairs], dtype=np.int64)
        elif ("mult" in e) != ("shift" in e):
            raise LayerError("epilogue: mult and shift go together")
        elif "mult" not in e:
            e["mult"], e["shift"] = 1, self.scale_frac
        for f in self.param_fields[1:]:
            v = np.broadcast_to(np.asarray(e[f.name]), (channels,))
            if not np.all(np.equal(np.mod(v, 1), 0)) or v.min() < 0 or v.max() >= 1 << f.bits:
                raise LayerError(f"epilogue.{f.name}: {channels} integers 0..{(1 << f.bits) - 1}"
                                 f" expected, not {np.asarray(e[f.name]).tolist()!r}")
            e[f.name] = v.astype(np.int64)
        half = 1 << (self.acc_bits - 1)
        b = np.zeros(channels, dtype=np.int64) if bias is None else np.asarray(bias)
        if b.shape != (channels,) or not np.all(np.equal(np.mod(b, 1), 0)) \
                or b.min() < -half or b.max() >= half:
            raise LayerError(f"bias: {channels} integers (accumulator units, signed "
                             f"{self.acc_bits} bits) expected with an epilogue, not "
                             f"{b.tolist()!r}")
        e["bias"] = b.astype(np.int64)
        return e

    def _case_std(self, k):
        """Rough standard deviation of a K-term accumulator of the kind's random operands
        (uniform activation codes and scale codes, a third of the weights zero)."""
        amax = (1 << self.act_bits) - 1
        smax = (1 << (self.scale_bits or 16)) - 1
        return float(np.sqrt(k * 2 / 27) * amax * smax)

    def example_cases(self, cols, *, mode=None):
        """A dense layer with one step per channel, a convolution with one step, a depthwise
        one with ``mult``/``shift`` given: steps that spread the outputs over the code range
        (about half of them clipped to 0 by the bounded ReLU, a few saturated)."""
        from tessera.sim.layers import Conv2d, Dense
        from tessera.sim.ternary_epilogue import scale_to_mult_shift
        C = cols
        top = (1 << self.act_bits) - 1

        def step(k, f=1.0):             # y spread of about the code range
            return f * top / (4.5 * self._case_std(k))
        mult, shift = scale_to_mult_shift(step(9, 2.5), acc_bits=self.acc_bits)
        return [
            ("dense_tquant", Dense(in_features=29, out_features=C + 2), (2, 29),
             {"scale": [step(29, 0.6 + 0.2 * i) for i in range(C + 2)]}),
            ("conv3x3_tquant", Conv2d(3, C + 1, kernel=3, padding=1), (1, 3, 5, 4),
             {"scale": step(27)}),
            ("depthwise_tquant", Conv2d(2, 4, kernel=3, stride=2, padding=1, groups=2),
             (1, 2, 7, 7), {"mult": mult, "shift": shift}),
        ]

    def case_bias(self, rng, channels, *, mode=None):
        """Positive integers of about the accumulator's spread (so that with the example
        steps about a third of the outputs are clipped to 0 and a few saturate)."""
        lim = (1 << (self.acc_bits - 1)) - 1
        std = self._case_std(20)
        return rng.integers(int(min(0.3 * std, lim)), int(min(1.5 * std, lim)) + 1, channels)

    def reference_codes(self, acc_codes, params, *, mode=None):
        """`tessera.sim.ternary_epilogue_ref.reference_layer_codes_ternary` (exact Fractions
        into `tessera.sim.ternary.quantize_act`)."""
        from tessera.sim.ternary_epilogue_ref import reference_layer_codes_ternary
        return reference_layer_codes_ternary(acc_codes, params, acc_bits=self.acc_bits,
                                             act_bits=self.act_bits)

    def decode(self, codes, *, mode=None):
        """Activation codes ``0 .. 2**act_bits - 1`` (int64): the next ternary layer's input
        codes (its value is ``code / (2**k - 1)``, `tessera.sim.ternary.dequantize_act`)."""
        return np.asarray(codes, dtype=np.uint64).astype(np.int64)

    def out_format(self, mode=None):
        return {"kind": "uint", "bits": self.act_bits, "signed": False,
                "range": [0, (1 << self.act_bits) - 1], "value": "code / (2**bits - 1)"}

    def as_dict(self):
        return {"kind": "ternary_quantizer", "rule": "bias, dorefa_quantize_k",
                "acc_bits": self.acc_bits, "out_bits": self.out_bits,
                "mult_bits": self.MULT_BITS, "shift_bits": self.shift_bits,
                "latency": self.latency, "param_lane_bits": self.lane_bits,
                "param_lanes_per_channel": self.lanes_per_channel,
                "params": [f.as_dict() for f in self.param_fields]}
