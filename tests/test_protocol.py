"""The protocol as data: argument layouts, the INFO layout, and the driver's version check."""

import asyncio
import dataclasses
import pathlib
import re

import numpy as np
import pytest

from tessera.generators.config import DEFAULT_PRESET, config_from_dict, load_config, preset_names
from tessera.hdl.ctrl.protocol import (COMMANDS, EPILOGUE_CAPS, FORMAT_OPERANDS, INFO_HEADER,
                                       INFO_HEADER_BYTES, LAYER_TYPES, STORE_ROLES, ArgLayout,
                                       CoreInfo, Err, Field, FormatInfo, Op, VERSION, command,
                                       epilogue_caps, info_layout)
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver, VersionError


def test_command_table_is_consistent():
    ops = [c.op for c in COMMANDS]
    assert ops == sorted(set(ops)) == [Op.INFO, Op.STATUS, Op.WRITE, Op.READ, Op.RUN,
                                       Op.COUNTERS]
    assert command("RUN").engine_args and command(Op.RUN).args.nbytes == 3
    assert command("WRITE").args == command("READ").args
    assert command("WRITE").args.nbytes == 5


def test_arg_layout_pack_unpack():
    lay = ArgLayout([Field("x", 2), Field("y", 1), Field("z", 4)])
    assert lay.nbytes == 7 and lay.offset("z") == 3 and lay.bit_slice("y") == (16, 24)
    raw = lay.pack(x=0x1234, y=7, z=0xDEADBEEF)
    assert raw == bytes([0x34, 0x12, 7, 0xEF, 0xBE, 0xAD, 0xDE])
    assert lay.unpack(raw) == {"x": 0x1234, "y": 7, "z": 0xDEADBEEF}
    assert lay.pack(y=1) == bytes([0, 0, 1, 0, 0, 0, 0])       # missing fields are 0
    with pytest.raises(ValueError, match=r"argument y must be an integer 0\.\.255, not 256"):
        lay.pack(y=256)
    with pytest.raises(ValueError, match=r"unknown argument fields \['w'\]"):
        lay.pack(w=1)
    with pytest.raises(ValueError, match="unique"):
        ArgLayout([Field("x", 1), Field("x", 2)])


@pytest.mark.parametrize("preset", preset_names())
def test_info_round_trip(preset):
    cfg = load_config(preset)
    info = cfg.core_info()
    raw = info.pack()
    assert raw[0] == VERSION == 4 and int.from_bytes(raw[1:3], "little") == len(raw) - 3
    assert CoreInfo.unpack(raw) == info
    g = cfg.geometry
    assert [(s.name, s.id, s.lanes, s.lane_bits, s.word_bits, s.depth, s.banks, s.result)
            for s in info.stores] == \
        [(s.name, s.id, s.lanes, s.lane_bits, s.word_bits, s.depth, s.banks, s.result)
         for s in g.stores]
    assert (info.engine, info.engine_name) == (cfg.engine.code, cfg.engine.name)
    assert (info.pe_kind, info.pe_name) == (cfg.pe.code, cfg.pe.name)
    assert info.layer_types == tuple(cfg.engine.layer_types)
    assert info.epilogue == epilogue_caps(cfg.engine.epilogue())
    assert [f.bits for f in info.formats][2] == cfg.pe.result_bits
    assert [s.role for s in info.stores][:2] == ["operand", "operand"]
    assert [s.name for s in info.stores if s.role == "result"] == \
        [s.name for s in g.result_stores]


@pytest.mark.parametrize("preset", ["ternary", "ternary-rle"])
def test_info_names_the_tree_stores(preset):
    """On a tree core store id 2 holds the scales: the result store is found by name."""
    info = CoreInfo.unpack(load_config(preset).core_info().pack())
    assert [(s.name, s.id, s.role) for s in info.stores] == \
        [("a", 0, "operand"), ("w", 1, "operand"), ("s", 2, "parameter"), ("c", 3, "result")]
    assert info.store("c").id == 3 and info.store(2).name == "s"
    assert info.result_store is info.stores_by_name["c"]
    assert (info.engine_name, info.pe_name) == ("tree", "ternary")
    fa, fb, facc = info.formats
    assert fa == FormatInfo("int", 8, signed=False)
    assert (fb.kind, fb.name, fb.bits) == ("other", "ternary", 2)
    assert (facc.kind, facc.signed, facc.frac_bits) == ("int", True, 8)


def test_info_formats():
    fp8 = load_config("fp8").core_info().format_by_operand
    assert fp8["a"] == FormatInfo("float", 8, True, exp_bits=4, man_bits=3, name="fp8_e4m3")
    assert fp8["acc"] == FormatInfo("float", 16, True, exp_bits=5, man_bits=10, name="fp16")
    bf = load_config("bitfusion").core_info()
    assert bf.has_modes and bf.modes == 36
    assert bf.formats[0] == FormatInfo("int", 8, signed=False, by_mode=True)
    assert str(load_config("int8-8x8").core_info().formats[2]) == "int32 (s)"
    assert str(fp8["a"]) == "fp8_e4m3 (e4m3)"


def test_info_code_tables():
    assert LAYER_TYPES == ("Dense", "Conv2d", "MaxPool2d", "AvgPool2d", "Relu", "Clip",
                           "Flatten", "Pad2d")
    assert STORE_ROLES == ("operand", "result", "parameter")
    assert EPILOGUE_CAPS == ("bias", "requantize", "relu_clip", "fp_convert",
                             "ternary_quantizer")
    assert FORMAT_OPERANDS == ("a", "b", "acc")
    assert INFO_HEADER_BYTES == 18 and [f for f, _, _ in INFO_HEADER][:2] == ["version", "length"]
    lay = info_layout()
    assert lay["version"] == VERSION and lay["layer_types"] == list(LAYER_TYPES)
    assert sum(f["bytes"] for f in lay["header"]) == INFO_HEADER_BYTES

    class Epi:
        capabilities = ("relu_clip", "bias")
    assert epilogue_caps(None) == () and epilogue_caps(Epi()) == ("bias", "relu_clip")
    Epi.capabilities = ("softmax",)
    with pytest.raises(ValueError, match=r"^epilogue capability 'softmax' is unknown; allowed: "
                                         r"bias, requantize"):
        epilogue_caps(Epi())


def test_info_with_an_epilogue_and_every_layer_type_round_trips():
    info = dataclasses.replace(load_config("int8-4x4").core_info(), layer_types=LAYER_TYPES,
                               epilogue=EPILOGUE_CAPS, rows=300, cols=1000)
    assert CoreInfo.unpack(info.pack()) == info


def test_info_unpack_refuses_bad_bytes():
    raw = load_config("int8-4x4").core_info().pack()
    with pytest.raises(ValueError, match=r"^INFO length says 79 bytes follow, but 78 do$"):
        CoreInfo.unpack(raw[:-1])
    with pytest.raises(ValueError, match=r"^INFO payload of 10 bytes ends inside cols$"):
        CoreInfo.unpack(raw[:10])
    bad_role = bytearray(raw)
    bad_role[raw.index(b"\x01a") - 9 + 1] = 7         # store a: role byte
    with pytest.raises(ValueError, match=r"^INFO store 0 role 7 is unknown; allowed: 0\.\.2 "):
        CoreInfo.unpack(bytes(bad_role))
    with pytest.raises(ValueError, match=r"^INFO rows must be an integer 0\.\.65535, not 70000$"):
        dataclasses.replace(CoreInfo.unpack(raw), rows=70000).pack()


def _info_dump(info):
    """The annotated hex dump of ``info``'s INFO response (status byte first), as in
    docs/commands.md."""
    raw = info.pack()
    lines, pos = ["00 | status OK"], 0

    def take(n, label):
        nonlocal pos
        lines.append(f"{raw[pos:pos + n].hex(' ')} | {label}")
        pos += n
    take(3, f"version {info.version}, length {len(raw) - 3} (u16)")
    take(5, f"engine {info.engine}, pe_kind {info.pe_kind}, pe_latency {info.pe_latency}, "
            f"pe_ii {info.pe_ii}, capabilities {info.capabilities}")
    take(4, f"rows {info.rows}, cols {info.cols} (u16 each)")
    take(6, f"combiner_latency {info.combiner_latency}, modes {info.modes}, layer types "
            f"{'+'.join(info.layer_types)}, epilogue {'+'.join(info.epilogue) or 'none'}, "
            f"{len(info.stores)} stores")
    for name in (info.engine_name, info.pe_name):
        take(1 + len(name), f"{name!r}")
    for o, f in zip(FORMAT_OPERANDS, info.formats):
        take(6 + len(f.name), f"format {o}: {f}")
    for s in info.stores:
        take(10 + len(s.name), f"store {s.name!r}: id {s.id}, {s.role}, {s.lanes} x "
                               f"{s.lane_bits} bits, {s.word_bits}-bit words, depth {s.depth}, "
                               f"{s.banks} bank{'s' if s.banks > 1 else ''}")
    assert pos == len(raw)
    return "\n".join(lines)


def test_docs_info_example_is_the_default_preset():
    """docs/commands.md shows the INFO of the default preset; recompute it from the config."""
    doc = (pathlib.Path(__file__).parents[1] / "docs" / "commands.md").read_text()
    m = re.search(r"<!-- info-example: (\S+) -->\n```text\n(.*?)```", doc, re.S)
    assert m, "docs/commands.md has no <!-- info-example: PRESET --> block"
    assert m.group(1) == DEFAULT_PRESET
    want = _info_dump(load_config(DEFAULT_PRESET).core_info())
    assert m.group(2).rstrip("\n") == want, f"update docs/commands.md with:\n{want}"
    hexed = bytes.fromhex("".join(line.split("|")[0] for line in want.splitlines()))
    assert hexed == bytes([Err.OK]) + load_config(DEFAULT_PRESET).core_info().pack()


class _ScriptedTransport:
    """Answers INFO with fixed bytes (a core of another version)."""

    def __init__(self, answer):
        self.answer, self.rx = answer, bytearray()

    async def send(self, data):
        if data[:1] == bytes([Op.INFO]):
            self.rx += self.answer

    async def recv(self, n):
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    async def idle(self, cycles):
        return None


_REFUSAL = (r"^the core speaks command set v{v} and this driver v4; regenerate the core \(or its "
            r"bitstream\) with this tessera, or drive it with the tessera that generated it$")


def test_driver_refuses_a_v1_core():
    # A v1 core answered INFO with OK and 16 bytes starting with version 1.
    v1 = bytes([Err.OK, 1, 8, 8, 8, 8, 32, 1, 2]) + bytes(8)
    drv = TesseraDriver(_ScriptedTransport(v1))
    with pytest.raises(VersionError, match=_REFUSAL.format(v=1)):
        asyncio.run(drv.connect())


def test_driver_refuses_a_v2_core():
    # A v2 int8-4x4 core: version 2, a one-byte length, the 10-byte header, 6 bytes per store.
    v2 = bytes.fromhex("00 02 1c 01 01 02 01 01 04 04 00 00 03 00 04 08 00 04 00 01 04 08 00 04 "
                       "00 02 04 20 00 04 01")
    drv = TesseraDriver(_ScriptedTransport(v2))
    with pytest.raises(VersionError, match=_REFUSAL.format(v=2)):
        asyncio.run(drv.connect())
    assert drv.info is None


def test_driver_refuses_a_core_the_config_does_not_describe():
    other = load_config("int8-4x4")
    drv = TesseraDriver(GoldenTransport(GoldenCore(load_config("icebreaker"))), other)
    with pytest.raises(VersionError, match="is not the one the config preset:int8-4x4 describes"):
        asyncio.run(drv.connect())
    ok = TesseraDriver(GoldenTransport(GoldenCore(other)), other)
    assert asyncio.run(ok.connect()) == other.core_info()


def test_driver_names_only_the_fields_that_differ():
    data = load_config("int8-4x4").to_dict()
    data["memory"]["c_depth"] = 512
    core = config_from_dict(data, source="deeper.toml")
    drv = TesseraDriver(GoldenTransport(GoldenCore(core)), load_config("int8-4x4"))
    with pytest.raises(VersionError) as e:
        asyncio.run(drv.connect())
    assert str(e.value) == ("the core is not the one the config preset:int8-4x4 describes "
                            "(core != config): store c.depth: 512 != 1024")


@pytest.mark.parametrize("preset", ["int8-4x4", "ternary", "ternary-rle"])
def test_driver_without_config_uses_info_store_names(preset):
    """No config: stores come from INFO by name; "c" is the result store on every engine."""
    cfg = load_config(preset)
    golden = GoldenCore(cfg)
    drv = TesseraDriver(GoldenTransport(golden))
    rng = np.random.default_rng(5)

    async def body():
        info = await drv.connect()
        c = info.stores_by_name["c"]
        words = rng.integers(0, 1 << c.lane_bits, (3, c.lanes), dtype=np.uint64)
        await drv.write("c", 1, words)
        return info, words, await drv.read("c", 1, 3), await drv.read(c.id, 1, 3)
    info, words, back, by_id = asyncio.run(body())
    assert info == cfg.core_info() and drv._store("c").id == cfg.geometry.store("c").id
    np.testing.assert_array_equal(back, words)
    np.testing.assert_array_equal(by_id, words)
    np.testing.assert_array_equal(golden.stores["c"][1:4], words)
    for s in cfg.geometry.stores:
        if s.name != "c":
            assert not np.any(golden.stores[s.name]), f"store {s.name} was written"
    with pytest.raises(KeyError, match=r"store 'z': no store 'z'; this core has stores a \(id 0\)"):
        drv._store("z")


def test_cocotb_gemm_module_refuses_to_run_without_a_plan(tmp_path, monkeypatch):
    """Without a plan the cocotb GEMM module fails at import instead of passing vacuously."""
    import importlib
    import sys
    monkeypatch.delenv("TESSERA_PLAN", raising=False)
    sys.modules.pop("tessera.tb.core_cocotb", None)
    with pytest.raises(RuntimeError, match="needs TESSERA_PLAN"):
        importlib.import_module("tessera.tb.core_cocotb")
    empty = tmp_path / "plan.json"
    empty.write_text('{"config": {}, "cases": []}')
    monkeypatch.setenv("TESSERA_PLAN", str(empty))
    sys.modules.pop("tessera.tb.core_cocotb", None)
    with pytest.raises(RuntimeError, match="has no GEMM or layer cases, or no config"):
        importlib.import_module("tessera.tb.core_cocotb")
    sys.modules.pop("tessera.tb.core_cocotb", None)


def test_regression_refuses_an_empty_case_list(tmp_path):
    from tessera.generators.regress import run_regression
    with pytest.raises(ValueError, match="no GEMM or layer cases given"):
        run_regression(load_config("int8-4x4"), cases=[], out_dir=tmp_path / "r",
                       progress=lambda m: None)


def test_rtl_tree_core_info_and_store_names_without_config():
    """The HDL decoder sends v4 INFO from its table; a driver without the config writes and
    reads the tree core's result store "c" (id 3) by name and leaves the scales (id 2) alone."""
    from tessera.generators.assemble import build_core
    from tessera.sim.pysim import run_with_driver
    cfg = load_config("ternary")

    async def body(t):
        drv = TesseraDriver(t)
        info = await drv.connect()
        c = info.store("c")
        w = np.arange(3 * c.lanes, dtype=np.uint64).reshape(3, c.lanes) + 1
        await drv.write("c", 0, w)
        return info, w, await drv.read("c", 0, 3), await drv.read("s", 0, 3)
    info, w, back, scales = run_with_driver(build_core(cfg), body)
    assert info == cfg.core_info() and info.store("c").id == 3
    np.testing.assert_array_equal(back, w)
    assert not scales.any()
