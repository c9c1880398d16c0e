"""Floating-point multiplier for any pair of `FloatFormat` (operands ``fmt_in``, result
``fmt_out``)."""

from amaranth import Module

from .fpcommon import (Pipeline, check_format, multiply, normalize, plan_cuts, register_inputs,
                       round_pack, unpack)
from .fpunit import FPUnit


__all__ = ["FPMul"]


class FPMul(FPUnit):
    """Pipelined floating-point multiplier ``result = round_out(a * b)``.

    The exact product is rounded once into ``fmt_out`` (its rounding, overflow and underflow
    rules), bit-exact with ``tessera.sim.fp.mul(fmt_in, a, b, fmt_out, ftz=ftz)``. One result per cycle;
    ``result`` belongs to the operands presented ``latency`` cycles earlier.

    Parameters
    ----------
    fmt_in : FloatFormat
        Operand format.
    fmt_out : FloatFormat or None
        Result format (default ``fmt_in``).
    ftz : bool
        Subnormal inputs read as zero, results below the smallest normal flush to zero.
    stages : int
        Pipeline registers, 1..4 (= ``latency``). Register placement, by stage count: output;
        + after the multiplier; + after the normaliser; + on the inputs.

    Members
    -------
    a : In(fmt_in.width)
    b : In(fmt_in.width)
    result : Out(fmt_out.width)
    """

    def __init__(self, *, fmt_in, fmt_out=None, ftz=False, stages=1):
        self._fmt_in = check_format("fmt_in", fmt_in)
        self._fmt_out = fmt_in if fmt_out is None else check_format("fmt_out", fmt_out)
        self._fp_params(ftz=ftz, stages=stages)
        super().__init__(self._members({"a": self._fmt_in.width, "b": self._fmt_in.width},
                                       {"result": self._fmt_out.width}))

    fmt_in = property(lambda self: self._fmt_in)
    fmt_out = property(lambda self: self._fmt_out)

    def elaborate(self, platform):
        m = Module()
        cuts, n_in = plan_cuts(self._stages, ["mul", "norm"])
        pipe = Pipeline(m, "mul")
        a, b = register_inputs(m, [self.a, self.b], n_in)
        prod = multiply(unpack(self._fmt_in, a, ftz=self._ftz),
                        unpack(self._fmt_in, b, ftz=self._ftz))
        prod = pipe.cut("mul" in cuts, prod)
        exp, sig = normalize(m, prod.exp, prod.sig)
        prod = pipe.cut("norm" in cuts, prod.replace(exp=exp, sig=sig))
        code = round_pack(m, self._fmt_out, prod, ftz=self._ftz)
        m.d.sync += self.result.eq(code)
        return m
