"""`tessera unit`: single units (a MAC, an array, a scratchpad) emitted alone with a manifest."""

import dataclasses
from dataclasses import dataclass

from tessera.generators.emit import (MANIFEST_SCHEMA, manifest_json, port_table, sha256, to_verilog,
                             tool_versions, write_outputs)


__all__ = ["Option", "Unit", "UNITS", "register", "generate_unit", "UnitError"]


class UnitError(ValueError):
    """Unknown unit or bad unit option; the message names the option, value and allowed."""


@dataclass(frozen=True)
class Option:
    name: str
    type: type
    default: object
    help: str
    choices: tuple = ()


@dataclass(frozen=True)
class Unit:
    name: str
    summary: str
    options: tuple
    build: object          # callable(**options) -> component
    formats: object = None  # callable(**options) -> manifest "formats" data


UNITS = {}


def register(unit):
    UNITS[unit.name] = unit
    return unit


def _int_mac(*, a_bits, b_bits, acc_bits):
    from tessera.hdl.arith.intmac import IntMacPE
    return IntMacPE(a_bits=a_bits, b_bits=b_bits, acc_bits=acc_bits)


def _int_formats(*, a_bits, b_bits, acc_bits):
    return {"a": {"kind": "int", "bits": a_bits, "signed": True},
            "b": {"kind": "int", "bits": b_bits, "signed": True},
            "acc": {"kind": "int", "bits": acc_bits, "signed": True, "overflow": "wrap"}}


register(Unit(
    name="int_mac",
    summary="signed integer MAC processing element (PE interface, latency 2)",
    options=(Option("a_bits", int, 8, "activation width in bits (2..32)"),
             Option("b_bits", int, 8, "weight width in bits (2..32)"),
             Option("acc_bits", int, 32, "accumulator width (a_bits+b_bits..64)")),
    build=_int_mac, formats=_int_formats))


def _int_array(*, rows, cols, a_bits, b_bits, acc_bits):
    from tessera.hdl.arith.intmac import IntMacPE
    from tessera.hdl.array.systolic import SystolicArray
    return SystolicArray(rows=rows, cols=cols,
                         pe=lambda: IntMacPE(a_bits=a_bits, b_bits=b_bits, acc_bits=acc_bits))


register(Unit(
    name="int_array",
    summary="output-stationary systolic array of integer MAC PEs with overlapped drain",
    options=(Option("rows", int, 4, "array rows (1..64)"),
             Option("cols", int, 4, "array columns (1..64)"),
             Option("a_bits", int, 8, "activation width in bits"),
             Option("b_bits", int, 8, "weight width in bits"),
             Option("acc_bits", int, 32, "accumulator width")),
    build=_int_array,
    formats=lambda rows, cols, **kw: _int_formats(**kw)))


def _scratchpad(*, width, depth):
    from tessera.hdl.mem.scratchpad import Scratchpad
    return Scratchpad(width=width, depth=depth)


register(Unit(
    name="scratchpad",
    summary="simple dual-port scratchpad bank on lib.memory (maps to BRAM), read latency 1",
    options=(Option("width", int, 32, "word width in bits (1..4096)"),
             Option("depth", int, 1024, "words (2..65536)")),
    build=_scratchpad))


def resolve_options(unit, given):
    """Fill defaults and check option names; values are validated by the unit's constructor."""
    known = {o.name: o for o in unit.options}
    for k in given:
        if k not in known:
            raise UnitError(f"unit {unit.name}: unknown option {k!r}; allowed: "
                            + ", ".join(repr(n) for n in known))
    opts = {}
    for o in unit.options:
        v = given.get(o.name, o.default)
        if o.choices and v not in o.choices:
            raise UnitError(f"unit {unit.name}: option {o.name} = {v!r}; allowed: "
                            + ", ".join(repr(c) for c in o.choices))
        opts[o.name] = v
    return opts


def get_unit(name):
    if name not in UNITS:
        raise UnitError(f"unit: {name!r} is unknown; allowed: "
                        + ", ".join(repr(n) for n in sorted(UNITS)))
    return UNITS[name]


def generate_unit(name, options, out_dir):
    """Build unit ``name`` with ``options`` and write Verilog + manifest into ``out_dir``."""
    unit = get_unit(name)
    opts = resolve_options(unit, options)
    try:
        comp = unit.build(**opts)
    except (ValueError, TypeError) as e:
        raise UnitError(f"unit {name}: {e}") from None
    top = f"tessera_{name}"
    text = to_verilog(comp, top)
    latency = getattr(comp, "latency", None)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "kind": "unit",
        "unit": name,
        "top": top,
        "verilog": f"{top}.v",
        "verilog_sha256": sha256(text),
        "clock": {"name": "clk"},
        "reset": {"name": "rst", "active": "high", "synchronous": True},
        "ports": port_table(comp),
        "latency": latency if isinstance(latency, int) else None,
        "initiation_interval": 1,
        "options": {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
                    for k, v in opts.items()},
        "formats": unit.formats(**opts) if unit.formats else None,
        "tools": tool_versions(),
    }
    write_outputs(out_dir, {f"{top}.v": text, "manifest.json": manifest_json(manifest)})
    return manifest


# -- floating point ------------------------------------------------------------------------------
def _format_names():
    from tessera.hdl.arith.formats import FORMATS
    return tuple(FORMATS)


def _fmt(name):
    from tessera.hdl.arith.formats import FORMATS
    return FORMATS[name]


def _fd(name):
    return {"kind": "float", **_fmt(name).as_dict()} if hasattr(_fmt(name), "as_dict") \
        else {"kind": "float", **dataclasses.asdict(_fmt(name))}


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


register(Unit(
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
    formats=lambda format, acc, chunk, **kw: {"a": _fd(format), "b": _fd(format),
                                               "acc": _fd(acc), "chunk": chunk or None}))


def _fpfma(*, format, acc, stages, ftz, sr_bits):
    from tessera.hdl.arith.fpfma import FPFMA
    return FPFMA(fmt_in=_fmt(format), fmt_acc=_fmt(acc or format), ftz=ftz, sr_bits=sr_bits,
                 stages=stages)


register(Unit(
    name="fpfma",
    summary="fused multiply-add a*b+c with one rounding",
    options=(Option("format", str, "fp16", "operand format", _FORMATS),
             Option("acc", str, "", "addend/result format (default: the operand format)",
                    ("",) + _FORMATS),
             Option("stages", int, 3, "pipeline stages = latency (1..4)"),
             Option("ftz", _bool, False, "flush subnormals to zero"),
             Option("sr_bits", int, 0, "stochastic rounding bits")),
    build=_fpfma,
    formats=lambda format, acc, **kw: {"a": _fd(format), "b": _fd(format),
                                       "acc": _fd(acc or format)}))


def _fpmul(*, format, out, stages, ftz):
    from tessera.hdl.arith.fpmul import FPMul
    return FPMul(fmt_in=_fmt(format), fmt_out=_fmt(out or format), ftz=ftz, stages=stages)


register(Unit(
    name="fpmul",
    summary="floating-point multiplier, exact product rounded once into the output format",
    options=(Option("format", str, "fp8_e4m3", "operand format", _FORMATS),
             Option("out", str, "", "result format (default: the operand format)",
                    ("",) + _FORMATS),
             Option("stages", int, 1, "pipeline stages = latency"),
             Option("ftz", _bool, False, "flush subnormals to zero")),
    build=_fpmul,
    formats=lambda format, out, **kw: {"a": _fd(format), "b": _fd(format),
                                       "result": _fd(out or format)}))


def _fpadd(*, format, stages, ftz, sr_bits):
    from tessera.hdl.arith.fpadd import FPAdd
    return FPAdd(fmt=_fmt(format), ftz=ftz, sr_bits=sr_bits, stages=stages)


register(Unit(
    name="fpadd",
    summary="floating-point adder with one rounding",
    options=(Option("format", str, "fp16", "format", _FORMATS),
             Option("stages", int, 1, "pipeline stages = latency"),
             Option("ftz", _bool, False, "flush subnormals to zero"),
             Option("sr_bits", int, 0, "stochastic rounding bits")),
    build=_fpadd,
    formats=lambda format, **kw: {"a": _fd(format), "b": _fd(format), "result": _fd(format)}))


def _fpconv(*, src, dst, stages, ftz, overflow):
    from tessera.hdl.arith.fpconv import FPConvert
    return FPConvert(fmt_from=_fmt(src), fmt_to=_fmt(dst), ftz=ftz,
                     overflow=overflow or None, stages=stages)


register(Unit(
    name="fpconv",
    summary="floating-point format converter (e.g. fp16 -> dlfloat16, fp32 -> fp8)",
    options=(Option("src", str, "fp16", "input format", _FORMATS),
             Option("dst", str, "dlfloat16", "output format", _FORMATS),
             Option("stages", int, 1, "pipeline stages = latency"),
             Option("ftz", _bool, False, "flush subnormals to zero"),
             Option("overflow", str, "", "override the output format's overflow policy",
                    ("", "inf", "saturate"))),
    build=_fpconv,
    formats=lambda src, dst, **kw: {"a": _fd(src), "result": _fd(dst)}))
