"""`tessera unit`: single units (a MAC, an array, a scratchpad) emitted alone with a manifest.

The manifest's port table is the unit's signature (`signature.members.flatten()`), checked
against the module header of the Verilog it writes: ``clk`` and ``rst`` are listed only when
the Verilog has them (a combinational unit has neither), and a port whose signature shape is a
`data.StructLayout` or `data.ArrayLayout` lists its fields or lanes (docs/manifest.md).
"""

import dataclasses
import re

from tessera.generators.emit import (MANIFEST_SCHEMA, check_output_dir, file_table, manifest_json,
                                     sha256, to_verilog, tool_versions, write_outputs)
# The entry types live in a leaf module (the kinds import it, never this registry).
from tessera.generators.kinds.unitspec import Option, Unit


__all__ = ["Option", "Unit", "UNITS", "register", "generate_unit", "UnitError", "get_unit",
           "resolve_options", "verilog_ports", "unit_ports", "option_flag", "PORT_ROLES"]


class UnitError(ValueError):
    """Unknown unit or bad unit option; the message names the option, value and allowed."""


UNITS = {}


def register(unit):
    UNITS[unit.name] = unit
    return unit


def _scratchpad(*, width, depth):
    from tessera.hdl.mem.scratchpad import Scratchpad
    return Scratchpad(width=width, depth=depth)


register(Unit(
    name="scratchpad",
    summary="simple dual-port scratchpad bank on lib.memory (maps to BRAM), read latency 1",
    options=(Option("width", int, 32, "word width in bits (1..4096)"),
             Option("depth", int, 1024, "words (2..65536)")),
    build=_scratchpad))


def option_flag(name):
    """The command-line spelling of option ``name``: ``acc_bits`` -> ``--acc-bits``."""
    return "--" + name.replace("_", "-")


def _hint(word, choices, fmt=repr):
    from tessera.generators.config import did_you_mean
    return did_you_mean(word, choices, fmt)


def resolve_options(unit, given):
    """Fill defaults and check option names; values are validated by the unit's constructor."""
    known = {o.name: o for o in unit.options}
    for k in given:
        if k not in known:
            raise UnitError(f"unit {unit.name}: unknown option {k!r}; {_hint(k, known)}allowed: "
                            + (", ".join(repr(n) for n in known) or "none"))
    opts = {}
    for o in unit.options:
        v = given.get(o.name, o.default)
        if o.choices and v not in o.choices:
            raise UnitError(f"unit {unit.name}: {option_flag(o.name)} {v!r} is not allowed; "
                            f"{_hint(v, o.choices)}allowed: "
                            + ", ".join(repr(c) for c in o.choices))
        opts[o.name] = v
    return opts


def get_unit(name):
    """The registered unit ``name``; an unknown name raises `UnitError` naming the closest."""
    if not isinstance(name, str) or name not in UNITS:
        what = "is not a unit name" if name == "" else "is unknown"
        raise UnitError(f"unit: {name!r} {what}; {_hint(name, sorted(UNITS))}allowed: "
                        + ", ".join(repr(n) for n in sorted(UNITS)))
    return UNITS[name]


def _option_names_to_flags(unit, text):
    """A constructor's or PE kind's message in terms of the unit's options: ``pe.acc_bits`` and
    ``acc_bits`` become ``--acc-bits`` (one-word names only where they are the subject)."""
    names = sorted((o.name for o in unit.options), key=len, reverse=True)
    for n in names:
        flag = option_flag(n)
        text = re.sub(rf"(?<![\w.-])pe\.{re.escape(n)}\b", flag, text)
        if "_" in n:
            text = re.sub(rf"(?<![\w.-]){re.escape(n)}\b", flag, text)
        else:
            text = re.sub(rf"^{re.escape(n)}(?= must |: )", flag, text)
    return text


#: Port roles beyond "data", by unit and port name: what a port carries that its name and
#: width do not say (docs/manifest.md, the units table).
PORT_ROLES = {
    "fusion_unit": {
        "mode": "run-time mode, a struct: a_prec bits 0-1, b_prec bits 2-3 (precision code: "
                "0 = 2 bits, 1 = 4 bits, 2 = 8 bits), a_signed bit 4, b_signed bit 5",
    },
    "bitfusion_pe": {
        "mode": "run-time mode: an index into formats.modes (precision and signedness of a "
                "and b), held for a whole accumulation",
    },
    "multiprec_pe": {
        "mode": "run-time mode: an index into formats.modes (precision and signedness of a "
                "and b), held for a whole accumulation",
    },
    "ternary_adder_tree": {
        "tag": "user tag carried alongside the word (1 bit, ignored: this unit is built "
               "with tag_bits = 0)",
        "out_tag": "tag delayed by the latency (constant 0: this unit is built with "
                   "tag_bits = 0)",
    },
    "biscaled_decoder": {
        "i__payload": "element code (code_bits)",
        "idx__payload": "index-list word: per block the count of scale-wide elements, then "
                        "their in-block indices in ascending order (log2(block) + 1 bits)",
        "o__payload": "struct: code bits 0..code_bits-1, sw bit code_bits (1: scale-wide)",
    },
    "biscaled_dot": {
        "a": "activation code (a_bits, two's complement)",
        "sw": "activation scale selector (1: scale-wide), travels with a",
        "b": "weight code (b_bits, two's complement) with its scale selector in bit b_bits "
             "(1: scale-wide)",
    },
}


_PORT_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:(?:wire|reg|signed)\s+)*"
                        r"(?:\[(\d+):(\d+)\]\s*)?(\\\S+|[A-Za-z_][\w$]*)\s*;", re.M)


def _header(text, module):
    """``[(name, direction, width, verilog_name)]`` of ``module``'s ports in header order;
    ``verilog_name`` is the escaped identifier (``\\rand``) where Yosys had to escape one."""
    m = re.search(rf"^module {re.escape(module)}\s*\(([^)]*)\);(.*?)^endmodule", text,
                  re.M | re.S)
    if m is None:
        raise UnitError(f"the Verilog has no module {module!r}")
    header = [p.strip() for p in m[1].split(",") if p.strip()]
    decl = {}
    for d, hi, lo, name in _PORT_DECL.findall(m[2]):
        width = abs(int(hi) - int(lo)) + 1 if hi else 1
        decl[name] = ({"input": "in", "output": "out"}.get(d, d), width)
    missing = [p for p in header if p not in decl]
    if missing:
        raise UnitError(f"module {module!r}: ports {missing} have no declaration")
    return [(p[1:] if p.startswith("\\") else p, *decl[p], p if p.startswith("\\") else None)
            for p in header]


def verilog_ports(text, module):
    """``{name: (direction, width)}`` of the ports of ``module`` in Verilog ``text`` as Yosys
    writes it (``module m(a, b, ...);`` then one ``input [h:l] a;`` line per port); escaped
    identifiers (``\\rand``, a SystemVerilog keyword) by the name they denote (``rand``)."""
    return {name: (d, w) for name, d, w, _ in _header(text, module)}


def _layout_of(shape):
    """Field or lane detail of a `data.Layout` port shape (None for a plain shape)."""
    from amaranth import Shape
    from amaranth.lib import data
    if isinstance(shape, data.ArrayLayout):
        e = Shape.cast(shape.elem_shape)
        return {"lanes": shape.length, "lane_bits": e.width, "lane_signed": e.signed}
    if isinstance(shape, data.StructLayout):
        fields = []
        for name, f in shape:
            fs = Shape.cast(f.shape)
            fields.append({"name": name, "offset": f.offset, "width": fs.width,
                           "signed": fs.signed})
        return {"fields": fields}
    return None


def unit_ports(unit_name, component, text, top):
    """The manifest port rows of a unit: its signature's ports in order (with `_layout_of`
    detail and `PORT_ROLES`), ``clk``/``rst`` first when the Verilog ``text`` has them.
    Raises `UnitError` if the signature and the Verilog disagree on a name, direction or
    width (a bug in tessera, never a user error)."""
    from amaranth import Shape
    from amaranth.lib import wiring
    roles = PORT_ROLES.get(unit_name, {})
    header = _header(text, top)
    verilog = {name: (d, w) for name, d, w, _ in header}
    escaped = {name: raw for name, _, _, raw in header if raw}
    rows = []
    if "clk" in verilog:
        rows.append({"name": "clk", "direction": "in", "width": 1, "signed": False,
                     "role": "clock"})
    if "rst" in verilog:
        rows.append({"name": "rst", "direction": "in", "width": 1, "signed": False,
                     "role": "reset (active high, synchronous)"})
    for path, member in component.signature.members.flatten():
        if not member.is_port:
            continue
        name = "__".join(str(p) for p in path)
        s = Shape.cast(member.shape)
        row = {"name": name, "direction": "in" if member.flow == wiring.In else "out",
               "width": s.width, "signed": s.signed, "role": roles.get(name, "data")}
        detail = _layout_of(member.shape)
        if detail:
            row.update(detail)
        if name in escaped:
            # e.g. `rand`, a SystemVerilog keyword: the Verilog declares the escaped identifier
            # `\rand`, which an instance in SystemVerilog must spell the same way.
            row["verilog_name"] = escaped[name] + " "
        rows.append(row)
    listed = {r["name"]: (r["direction"], r["width"]) for r in rows}
    if listed != verilog:
        diff = sorted(set(listed.items()) ^ set(verilog.items()))
        raise UnitError(f"unit {unit_name}: the signature and the Verilog of {top} disagree on "
                        f"ports {diff}")
    return rows


def generate_unit(name, options, out_dir):
    """Build unit ``name`` with ``options`` and write Verilog + manifest into ``out_dir``."""
    unit = get_unit(name)
    opts = resolve_options(unit, options)
    check_output_dir(out_dir)
    try:
        comp = unit.build(**opts)
    except (ValueError, TypeError) as e:
        raise UnitError(f"unit {name}: {_option_names_to_flags(unit, str(e))}") from None
    top = f"tessera_{name}"
    text = to_verilog(comp, top)
    ports = unit_ports(name, comp, text, top)
    clocked = any(p["name"] == "clk" for p in ports)
    latency = getattr(comp, "latency", None)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "kind": "unit",
        "unit": name,
        "top": top,
        "verilog": f"{top}.v",
        "verilog_sha256": sha256(text),
        "clock": {"name": "clk"} if clocked else None,
        "reset": ({"name": "rst", "active": "high", "synchronous": True}
                  if any(p["name"] == "rst" for p in ports) else None),
        "ports": ports,
        "latency": latency if isinstance(latency, int) else None,
        "initiation_interval": getattr(comp, "ii", 1),
        "options": {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
                    for k, v in opts.items()},
        "formats": unit.formats(**opts) if unit.formats else None,
        "tools": tool_versions(),
    }
    manifest["files"] = file_table({f"{top}.v": text})
    write_outputs(out_dir, {f"{top}.v": text, "manifest.json": manifest_json(manifest)})
    return manifest


def _register_kind_units():
    """Each PE kind contributes its own `tessera unit` entries (`PEKind.units`)."""
    from tessera.generators.kinds import ENGINES, PE_KINDS
    for kind in PE_KINDS.values():
        for unit in kind.units():
            register(unit)
    for engine in ENGINES.values():          # an engine may contribute units too
        for unit in getattr(engine, "units", lambda: ())():
            register(unit)


_register_kind_units()
