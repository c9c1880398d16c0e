"""`tessera unit`: single units (a MAC, an array, a scratchpad) emitted alone with a manifest."""

import dataclasses

from tessera.generators.emit import (MANIFEST_SCHEMA, check_output_dir, file_table, manifest_json,
                                     port_table, sha256, to_verilog, tool_versions,
                                     write_outputs)
# The entry types live in a leaf module (the kinds import it, never this registry).
from tessera.generators.kinds.unitspec import Option, Unit


__all__ = ["Option", "Unit", "UNITS", "register", "generate_unit", "UnitError"]


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
    check_output_dir(out_dir)
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
    from tessera.generators.kinds import PE_KINDS
    for kind in PE_KINDS.values():
        for unit in kind.units():
            register(unit)


_register_kind_units()
