"""The protocol as data: argument layouts, the INFO layout, and the driver's version check."""

import asyncio

import pytest

from tessera.generators.config import load_config, preset_names
from tessera.hdl.ctrl.protocol import (COMMANDS, ArgLayout, CoreInfo, Err, Field, Op, VERSION,
                                       command)
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver, VersionError


def test_command_table_is_consistent():
    ops = [c.op for c in COMMANDS]
    assert ops == sorted(set(ops)) == [Op.INFO, Op.STATUS, Op.WRITE, Op.READ, Op.RUN]
    assert command("RUN").engine_args and command(Op.RUN).args.nbytes == 1
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
    assert raw[0] == VERSION and raw[1] == len(raw) - 2
    assert CoreInfo.unpack(raw) == info
    g = cfg.geometry
    assert [(s.lanes, s.lane_bits, s.depth, s.result) for s in info.stores] == \
        [(s.lanes, s.lane_bits, s.depth, s.result) for s in g.stores]


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


def test_driver_refuses_a_v1_core():
    # A v1 core answered INFO with OK and 16 bytes starting with version 1.
    v1 = bytes([Err.OK, 1, 8, 8, 8, 8, 32, 1, 2]) + bytes(8)
    drv = TesseraDriver(_ScriptedTransport(v1))
    with pytest.raises(VersionError, match=r"^the core speaks command set v1 and this driver v2; "
                                           r"regenerate the core"):
        asyncio.run(drv.connect())


def test_driver_refuses_a_core_the_config_does_not_describe():
    other = load_config("int8-4x4")
    drv = TesseraDriver(GoldenTransport(GoldenCore(load_config("icebreaker"))), other)
    with pytest.raises(VersionError, match="is not the one the config preset:int8-4x4 describes"):
        asyncio.run(drv.connect())
    ok = TesseraDriver(GoldenTransport(GoldenCore(other)), other)
    assert asyncio.run(ok.connect()) == other.core_info()


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
    with pytest.raises(RuntimeError, match="has no GEMM cases or no config"):
        importlib.import_module("tessera.tb.core_cocotb")
    sys.modules.pop("tessera.tb.core_cocotb", None)


def test_regression_refuses_an_empty_case_list(tmp_path):
    from tessera.generators.regress import run_regression
    with pytest.raises(ValueError, match="no GEMM cases given"):
        run_regression(load_config("int8-4x4"), cases=[], out_dir=tmp_path / "r",
                       progress=lambda m: None)
