# amaranth: UnusedElaboratable=no
"""Manifests say what the Verilog has (issue 20 item 3).

Every unit of the registry, with its default options and with width variants: the manifest's
port table (`tessera.generators.units.unit_ports`, what `generate_unit` writes) is compared
with the module header of the unit's Verilog (names, directions, widths), parsed here
independently of `tessera.generators.units`. `clk`/`rst` must be listed exactly when the
Verilog has them, a struct port lists fields that tile its width, and every port is named in
the unit's row of docs/manifest.md. The cores' manifests get the same comparison.

For speed, the units' RTLIL goes through one Yosys run (the conversion `to_verilog` does, one
module per unit); a few units are also written end to end by `generate_unit`.
"""

import os
import pathlib
import re

import pytest

from tessera.generators.units import UNITS, generate_unit, resolve_options, unit_ports

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


REPO = pathlib.Path(__file__).resolve().parent.parent

#: Width variants: options that change port widths or remove ports.
VARIANTS = [
    ("int_array", {"rows": 3, "cols": 5, "a_bits": 4, "b_bits": 6, "acc_bits": 20}),
    ("scratchpad", {"width": 72, "depth": 512}),
    ("fusion_unit", {"stages": 0}),
    ("fusion_unit", {"mode": "a4s_w2u", "stages": 2}),
    ("biscaled_dot", {"a_bits": 7, "b_bits": 3, "acc_bits": 30}),
    ("biscaled_decoder", {"code_bits": 9, "block": 16}),
    ("ternary_tree", {"inputs": 1}),
    ("ternary_adder_tree", {"inputs": 5, "act_bits": 3}),
    ("fpfma", {"format": "bf16", "acc": "fp32", "sr_bits": 4}),
]

CASES = [(n, {}) for n in sorted(UNITS)] + VARIANTS
IDS = [n + "".join(f"-{k}{v}" for k, v in o.items()) for n, o in CASES]


def _top(i, name):
    return f"tessera_{name}_{i}"


@pytest.fixture(scope="module")
def converted():
    """{case index: component}, and the Verilog of every case's module (one Yosys run)."""
    from amaranth.back import rtlil
    from amaranth.back.verilog import _convert_rtlil_text
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    comps, texts = {}, []
    for i, (name, options) in enumerate(CASES):
        u = UNITS[name]
        comps[i] = u.build(**resolve_options(u, options))
        texts.append(rtlil.convert(comps[i], name=_top(i, name), emit_src=False))
    return comps, _convert_rtlil_text("\n".join(texts))


def header_ports(text, module):
    """``{name: (direction, width)}`` of ``module``'s ports, from ``module m(...);`` and the
    ``input``/``output`` declarations Yosys writes after it."""
    m = re.search(rf"^module {re.escape(module)}\(([^)]*)\);(.*?)^endmodule", text, re.M | re.S)
    assert m, f"no module {module} in the Verilog"
    names = [n.strip().lstrip("\\") for n in m.group(1).split(",") if n.strip()]
    decl = {}
    for d, rng, name in re.findall(r"^\s*(input|output)\s*(\[\d+:\d+\])?\s*(\S+)\s*;",
                                   m.group(2), re.M):
        hi, lo = map(int, rng[1:-1].split(":")) if rng else (0, 0)
        decl[name.lstrip("\\")] = ("in" if d == "input" else "out", hi - lo + 1)
    assert sorted(decl) == sorted(names), (names, decl)
    return decl


def doc_row(unit):
    doc = (REPO / "docs" / "manifest.md").read_text()
    m = re.search(rf"^\| `{unit}` \|(.*)$", doc, re.M)
    assert m, f"docs/manifest.md has no row for {unit}"
    return m.group(1)


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_unit_manifest_ports_are_the_verilog_ports(i, converted):
    name, _ = CASES[i]
    comps, text = converted
    top = _top(i, name)
    ports = unit_ports(name, comps[i], text, top)
    verilog = header_ports(text, top)
    listed = {p["name"]: (p["direction"], p["width"]) for p in ports}
    assert listed == verilog
    assert len(listed) == len(ports)                      # no port twice
    names = [p["name"] for p in ports]
    assert names[:2] == ["clk", "rst"] or "clk" not in names
    for p in ports:
        if "fields" in p:                                 # a struct: fields tile the port
            spans = sorted((f["offset"], f["width"]) for f in p["fields"])
            assert sum(w for _, w in spans) == p["width"]
            assert all(a + w == b for (a, w), (b, _) in zip(spans, spans[1:]))
        if "lanes" in p:
            assert p["lanes"] * p["lane_bits"] == p["width"]
    # Every port (streams by their name) is named in the unit's docs/manifest.md row.
    row = doc_row(name)
    for n in names:
        if n in ("clk", "rst"):
            continue
        stem = n.split("__")[0]
        assert f"`{n}`" in row or f"`{stem}`" in row, f"{name}: port {n} is not documented"


@pytest.mark.parametrize("name, options, clocked", [
    ("bitbrick", {}, False), ("fpadd", {"sr_bits": 2}, True)])
def test_generate_unit_writes_those_ports(name, options, clocked, tmp_path):
    """End to end: the manifest file next to the Verilog file, clock and reset included."""
    m = generate_unit(name, options, tmp_path / "u")
    text = (tmp_path / "u" / m["verilog"]).read_text()
    assert {p["name"]: (p["direction"], p["width"]) for p in m["ports"]} == \
        header_ports(text, m["top"])
    assert (m["clock"] is not None, m["reset"] is not None) == (clocked, clocked)
    rand = [p for p in m["ports"] if p["name"] == "rand"]
    if rand:        # `rand` is a SystemVerilog keyword: Yosys escapes it, the manifest says so
        assert rand[0]["verilog_name"] == "\\rand " and "\\rand " in text


def test_fusion_unit_mode_is_documented_as_a_struct(converted):
    comps, text = converted
    i = CASES.index(("fusion_unit", {}))
    mode = next(p for p in unit_ports("fusion_unit", comps[i], text, _top(i, "fusion_unit"))
                if p["name"] == "mode")
    assert mode["fields"] == [
        {"name": "a_prec", "offset": 0, "width": 2, "signed": False},
        {"name": "b_prec", "offset": 2, "width": 2, "signed": False},
        {"name": "a_signed", "offset": 4, "width": 1, "signed": False},
        {"name": "b_signed", "offset": 5, "width": 1, "signed": False}]
    assert "a_prec bits 0-1" in mode["role"] and "b_signed bit 5" in mode["role"]
    doc = (REPO / "docs" / "manifest.md").read_text()
    assert "mode = a_prec | b_prec << 2 | a_signed << 4 | b_signed << 5" in doc


def test_documented_latency_formulas():
    """The latencies docs/manifest.md gives for the tree units, against the components."""
    import math
    from tessera.generators.units import resolve_options
    row = doc_row("ternary_tree")
    assert "`max(1, ceil(log2(inputs)))` + 3" in row
    for n in (1, 2, 3, 16, 17, 256):
        u = UNITS["ternary_tree"]
        t = u.build(**resolve_options(u, {"inputs": n}))
        assert t.latency == max(1, math.ceil(math.log2(n))) + 3
        u = UNITS["ternary_adder_tree"]
        t = u.build(**resolve_options(u, {"inputs": n}))
        assert t.latency == max(1, math.ceil(math.log2(n)))


@pytest.mark.parametrize("preset", ["icebreaker", "ternary"])
def test_core_manifest_ports_are_the_verilog_ports(preset, tmp_path):
    from tessera.generators.config import load_config
    from tessera.generators.generate import generate_core
    m = generate_core(load_config(preset), tmp_path / "c")
    text = (tmp_path / "c" / m["verilog"]).read_text()
    listed = {p["name"]: (p["direction"], p["width"]) for p in m["ports"]}
    assert listed == header_ports(text, m["top"])
    doc = (REPO / "docs" / "manifest.md").read_text()
    table = doc[doc.index("A core has exactly these ports"):doc.index("### Timing")]
    documented = {r[0]: (r[1], int(r[2])) for r in
                  re.findall(r"^\| `(\w+)` \| (in|out) \| (\d+) \|", table, re.M)}
    assert documented == listed
