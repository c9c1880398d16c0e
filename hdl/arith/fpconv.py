"""Format converter between any two `FloatFormat` (fp16 <-> dlfloat16, fp32 -> fp8, bf16, ...)."""

from amaranth import Module

from .fpcommon import (FormatInfo, Pipeline, check_choice, check_format, normalize, plan_cuts,
                       register_inputs, round_pack, unpack)
from .fpunit import FPUnit


__all__ = ["FPConvert"]


class FPConvert(FPUnit):
    """Pipelined conversion ``result = round_to(a)`` from ``fmt_from`` to ``fmt_to`` codes.

    One rounding of the exact input value with ``fmt_to``'s rules (or the ``rounding`` /
    ``overflow`` overrides); bit-exact with ``tessera.sim.fp.convert(fmt_from, fmt_to, a, ftz=ftz,
    overflow=overflow, rounding=rounding)``. NaN -> canonical NaN/NINF; Inf stays Inf (canonical
    NaN/NINF in formats without Inf), also with ``overflow="saturate"``.

    Parameters
    ----------
    fmt_from, fmt_to : FloatFormat
        Source and destination formats.
    ftz : bool
        Subnormal inputs read as zero; results below the smallest normal flush to zero.
    overflow : "inf" | "saturate" | None
        Finite-overflow policy; ``None`` uses ``fmt_to.overflow``.
    rounding : "rne" | "rnu" | None
        Rounding; ``None`` uses ``fmt_to.rounding``.
    stages : int
        Pipeline registers, 1..4 (= ``latency``): output; + after the normaliser; + inputs.

    Members
    -------
    a : In(fmt_from.width)
    result : Out(fmt_to.width)
    """

    def __init__(self, *, fmt_from, fmt_to, ftz=False, overflow=None, rounding=None, stages=1):
        self._fmt_from = check_format("fmt_from", fmt_from)
        self._fmt_to = check_format("fmt_to", fmt_to)
        self._fp_params(ftz=ftz, stages=stages)
        self._overflow = check_choice("overflow", overflow, (None, "inf", "saturate"))
        self._rounding = check_choice("rounding", rounding, (None, "rne", "rnu"))
        super().__init__(self._members({"a": fmt_from.width}, {"result": fmt_to.width}))

    fmt_from = property(lambda self: self._fmt_from)
    fmt_to = property(lambda self: self._fmt_to)
    overflow = property(lambda self: self._overflow)
    rounding = property(lambda self: self._rounding)

    def elaborate(self, platform):
        m = Module()
        cuts, n_in = plan_cuts(self._stages, ["norm"])
        pipe = Pipeline(m, "cvt")
        a, = register_inputs(m, [self.a], n_in)
        v = unpack(self._fmt_from, a, ftz=self._ftz)
        if FormatInfo(self._fmt_from).subnormals and not self._ftz:
            exp, sig = normalize(m, v.exp, v.sig)
            v = v.replace(exp=exp, sig=sig)
        v = pipe.cut("norm" in cuts, v)
        code = round_pack(m, self._fmt_to, v, ftz=self._ftz, overflow=self._overflow,
                          rounding=self._rounding)
        m.d.sync += self.result.eq(code)
        return m
