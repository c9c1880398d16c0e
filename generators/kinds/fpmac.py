"""PE kind ``fpmac``: floating-point MAC (any `FloatFormat`), optionally chunk-based, with an
FP adder in the accumulator format as its combiner across RUNs."""

import dataclasses
from dataclasses import dataclass

import numpy as np

from tessera.generators.kinds.base import (Combiner, ConfigError, OperandLayout, PEKind,
                                           check_int, fmt_allowed)


__all__ = ["FPMacKind", "FPAddCombiner"]


def _formats():
    from tessera.hdl.arith.formats import FORMATS
    return FORMATS


def _fd(fmt):
    return {"kind": "float", **fmt.as_dict()}


class FPAddCombiner(Combiner):
    """``round_acc(old + new)`` in the accumulator format (`FPAdd`, ``stages`` cycles).

    Accumulation across RUNs therefore rounds once per RUN and once per combine: for K split
    into pieces with results P1, P2, P3 the core stores ``round(round(P1 + P2) + P3)``, which
    differs from one long sequential accumulation (the order of the roundings changes).
    """

    def __init__(self, fmt, stages):
        self.fmt, self.latency = fmt, stages

    def hdl(self):
        from tessera.hdl.arith.fpadd import FPAdd
        return FPAdd(fmt=self.fmt, stages=self.latency)

    def twin(self, old, new):
        from tessera.sim import fp
        return fp.add(self.fmt, np.asarray(old, dtype=np.uint32),
                      np.asarray(new, dtype=np.uint32)).astype(np.uint64)

    def as_dict(self):
        return {"kind": "fp_add", "format": self.fmt.name, "latency": self.latency}


@dataclass(frozen=True)
class FPMacKind(PEKind):
    """``[pe] kind = "fpmac"``: ``input_format`` x ``input_format`` products accumulated in
    ``acc_format`` (round every step), optionally chunk-based (``chunk`` products per inner
    sum); ``stages`` is the PE latency; ``combine_stages`` the latency of the FP adder that
    accumulates across RUNs."""
    name = "fpmac"
    code = 2
    input_format: str = "fp8_e4m3"
    acc_format: str = "fp16"
    chunk: int = 0
    stages: int = 2
    combine_stages: int = 2

    def __post_init__(self):
        formats = _formats()
        names = tuple(formats)
        for key in ("input_format", "acc_format"):
            v = getattr(self, key)
            if not isinstance(v, str) or v not in formats:
                raise ConfigError(f"pe.{key}: {v!r} is unknown; allowed: {fmt_allowed(names)}")
        if formats[self.acc_format].width < formats[self.input_format].width:
            raise ConfigError(f"pe.acc_format: {self.acc_format!r} is narrower than "
                              f"pe.input_format {self.input_format!r}; allowed: a format at "
                              f"least as wide as the input format")
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) \
                or not (self.chunk == 0 or 2 <= self.chunk <= 65535):
            raise ConfigError(f"pe.chunk: {self.chunk!r} is out of range; allowed: "
                              f"0 (no chunking) or 2..65535")
        check_int("pe.stages", self.stages, 2 if self.chunk else 1, 4)
        check_int("pe.combine_stages", self.combine_stages, 1, 4)

    @property
    def fmt_in(self):
        return _formats()[self.input_format]

    @property
    def fmt_acc(self):
        return _formats()[self.acc_format]

    def layout(self, mode=None):
        self.mode_code(mode)
        w = self.fmt_in.width
        return OperandLayout(a_elems=1, a_bits=w, b_elems=1, b_bits=w)

    @property
    def result_bits(self):
        return self.fmt_acc.width

    @property
    def latency(self):
        return self.stages

    def make_pe(self):
        from tessera.hdl.arith.fpmac import FPMac
        return FPMac(fmt_in=self.fmt_in, fmt_acc=self.fmt_acc, chunk=self.chunk or None,
                     stages=self.stages)

    def twin(self):
        from tessera.sim.fparray import FPArrayModel
        return FPArrayModel(input_format=self.fmt_in, acc_format=self.fmt_acc, chunk=self.chunk)

    def combiner(self):
        return FPAddCombiner(self.fmt_acc, self.combine_stages)

    def formats(self):
        return {"a": _fd(self.fmt_in), "b": _fd(self.fmt_in), "acc": _fd(self.fmt_acc),
                "chunk": self.chunk or None}

    def operands(self, m, n, k, *, kind, rng, mode=None):
        """FP operand codes: normal data (``random``), every code including NaN/Inf and
        subnormals (``extremes``), the largest negative value (``min``), zeros, ReLU data."""
        from tessera.sim import fp
        fi = self.fmt_in

        def normal(shape):
            return fp.encode(fi, rng.normal(0.0, 1.0, shape))
        if kind == "extremes":
            a = rng.integers(0, 1 << fi.width, (m, k)).astype(np.uint32)
            b = rng.integers(0, 1 << fi.width, (k, n)).astype(np.uint32)
        elif kind == "min":
            code = fi.max_code(1)
            a = np.full((m, k), code, dtype=np.uint32)
            b = np.full((k, n), code, dtype=np.uint32)
        else:
            a, b = normal((m, k)), normal((k, n))
            if kind == "zeros_a":
                a[:] = fp.encode(fi, np.zeros(1))[0]
            if kind == "zeros_b":
                b[:] = fp.encode(fi, np.zeros(1))[0]
            if kind == "relu":
                a = fp.encode(fi, np.maximum(rng.normal(0.0, 1.0, (m, k)), 0.0))
        return a.astype(np.uint64), b.astype(np.uint64)

    def reference(self, a, b, *, k_split=None, mode=None):
        """`tessera.sim.fpref.reference_fp_gemm`: float64 steps with exact error terms and its
        own rounder, sharing no code with the twin (`tessera.sim.fp`)."""
        from tessera.sim.fpref import reference_fp_gemm
        return reference_fp_gemm(self.fmt_in, self.fmt_acc, a, b, chunk=self.chunk,
                                 k_split=k_split)

    @classmethod
    def units(cls):
        from tessera.generators.kinds import fpunits
        return fpunits.UNITS
