"""`tessera unit` entries of the floating-point family (contributed by the ``fpmac`` kind)."""

from tessera.generators.kinds.unitspec import Option, Unit


__all__ = ["UNITS"]

_UNITS = []


def _format_names():
    from tessera.hdl.arith.formats import FORMATS
    return tuple(FORMATS)


def _fmt(name):
    from tessera.hdl.arith.formats import FORMATS
    return FORMATS[name]


def _fd(name, *, ftz=False, overflow=None, sr_bits=0):
    """Manifest descriptor of format ``name`` as a unit implements it, options applied:
    ``ftz`` (subnormal inputs and results flushed to zero), an ``overflow`` override, and
    stochastic rounding with ``sr_bits`` random bits instead of the format's rounding."""
    d = {"kind": "float", **_fmt(name).as_dict(), "ftz": bool(ftz)}
    if overflow:
        d["overflow"] = overflow
    if sr_bits:
        d["rounding"] = "stochastic"
        d["sr_bits"] = sr_bits
    return d


def _bool(text):
    if isinstance(text, bool):
        return text
    if str(text).lower() in ("1", "true", "yes", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


_FORMATS = _format_names()


def _fpmac(*, format, acc, chunk, stages, ftz, product_rounding, sr_bits):
    from tessera.hdl.arith.fpmac import FPMac
    return FPMac(fmt_in=_fmt(format), fmt_acc=_fmt(acc), chunk=chunk or None,
                 product_rounding=product_rounding, sr_bits=sr_bits, ftz=ftz, stages=stages)


_UNITS.append(Unit(
    name="fpmac",
    summary="floating-point MAC, wide accumulator, optional chunk-based accumulation and SR",
    options=(Option("format", str, "fp8_e4m3", "operand format", _FORMATS),
             Option("acc", str, "fp16", "accumulator format", _FORMATS),
             Option("chunk", int, 0, "chunk length CL (0: plain accumulation)"),
             Option("stages", int, 2, "pipeline stages = latency (1..4; 2..4 with chunk)"),
             Option("ftz", _bool, False, "flush subnormal inputs and results to zero"),
             Option("product_rounding", str, "exact_fused", "product into the accumulator",
                    ("exact_fused", "round_to_acc")),
             Option("sr_bits", int, 0, "stochastic rounding bits (0: round to nearest)")),
    build=_fpmac,
    formats=lambda format, acc, chunk, ftz, sr_bits, product_rounding, **kw: {
        "a": _fd(format, ftz=ftz), "b": _fd(format, ftz=ftz),
        "acc": _fd(acc, ftz=ftz, sr_bits=sr_bits), "chunk": chunk or None,
        "product_rounding": product_rounding}))


def _fpfma(*, format, acc, stages, ftz, sr_bits):
    from tessera.hdl.arith.fpfma import FPFMA
    return FPFMA(fmt_in=_fmt(format), fmt_acc=_fmt(acc or format), ftz=ftz, sr_bits=sr_bits,
                 stages=stages)


_UNITS.append(Unit(
    name="fpfma",
    summary="fused multiply-add a*b+c with one rounding",
    options=(Option("format", str, "fp16", "operand format", _FORMATS),
             Option("acc", str, "", "addend/result format (default: the operand format)",
                    ("",) + _FORMATS),
             Option("stages", int, 3, "pipeline stages = latency (1..4)"),
             Option("ftz", _bool, False, "flush subnormals to zero"),
             Option("sr_bits", int, 0, "stochastic rounding bits")),
    build=_fpfma,
    formats=lambda format, acc, ftz, sr_bits, **kw: {
        "a": _fd(format, ftz=ftz), "b": _fd(format, ftz=ftz),
        "acc": _fd(acc or format, ftz=ftz, sr_bits=sr_bits)}))


def _fpmul(*, format, out, stages, ftz):
    from tessera.hdl.arith.fpmul import FPMul
    return FPMul(fmt_in=_fmt(format), fmt_out=_fmt(out or format), ftz=ftz, stages=stages)


_UNITS.append(Unit(
    name="fpmul",
    summary="floating-point multiplier, exact product rounded once into the output format",
    options=(Option("format", str, "fp8_e4m3", "operand format", _FORMATS),
             Option("out", str, "", "result format (default: the operand format)",
                    ("",) + _FORMATS),
             Option("stages", int, 1, "pipeline stages = latency"),
             Option("ftz", _bool, False, "flush subnormals to zero")),
    build=_fpmul,
    formats=lambda format, out, ftz, **kw: {"a": _fd(format, ftz=ftz), "b": _fd(format, ftz=ftz),
                                            "result": _fd(out or format, ftz=ftz)}))


def _fpadd(*, format, stages, ftz, sr_bits):
    from tessera.hdl.arith.fpadd import FPAdd
    return FPAdd(fmt=_fmt(format), ftz=ftz, sr_bits=sr_bits, stages=stages)


_UNITS.append(Unit(
    name="fpadd",
    summary="floating-point adder with one rounding",
    options=(Option("format", str, "fp16", "format", _FORMATS),
             Option("stages", int, 1, "pipeline stages = latency"),
             Option("ftz", _bool, False, "flush subnormals to zero"),
             Option("sr_bits", int, 0, "stochastic rounding bits")),
    build=_fpadd,
    formats=lambda format, ftz, sr_bits, **kw: {
        "a": _fd(format, ftz=ftz), "b": _fd(format, ftz=ftz),
        "result": _fd(format, ftz=ftz, sr_bits=sr_bits)}))


def _fpconv(*, src, dst, stages, ftz, overflow):
    from tessera.hdl.arith.fpconv import FPConvert
    return FPConvert(fmt_from=_fmt(src), fmt_to=_fmt(dst), ftz=ftz,
                     overflow=overflow or None, stages=stages)


_UNITS.append(Unit(
    name="fpconv",
    summary="floating-point format converter (e.g. fp16 -> dlfloat16, fp32 -> fp8)",
    options=(Option("src", str, "fp16", "input format", _FORMATS),
             Option("dst", str, "dlfloat16", "output format", _FORMATS),
             Option("stages", int, 1, "pipeline stages = latency"),
             Option("ftz", _bool, False, "flush subnormals to zero"),
             Option("overflow", str, "", "override the output format's overflow policy",
                    ("", "inf", "saturate"))),
    build=_fpconv,
    formats=lambda src, dst, ftz, overflow, **kw: {
        "a": _fd(src, ftz=ftz), "result": _fd(dst, ftz=ftz, overflow=overflow)}))

#: The floating-point units, in listing order.
UNITS = tuple(_UNITS)
