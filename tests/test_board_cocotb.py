"""The whole board top in simulation: `tessera.tb.board_cocotb` on the iCEBreaker preset's core
behind its framed UART link, driven on the UART pins by cocotbext-uart under Verilator."""

import hashlib
import json

import pytest

from tessera.fpga.top import link_sizes, link_top_verilog
from tessera.generators.config import load_config
from tessera.sim.runner import run_cocotb

#: A fast UART for simulation: 16 cycles per bit at a 10 ns clock (6.25 Mbaud). The board's own
#: divisor (104 at 12 MHz and 115200 baud) runs in the virtual board (tests/test_deploy.py).
DIVISOR = 16
PERIOD_NS = 10


def test_board_top_over_uart(tmp_path):
    cfg = load_config("icebreaker")
    link = link_sizes("icebreaker")
    top, text = link_top_verilog(cfg, divisor=DIVISOR, clk_hz=1_000_000, **link)
    src = tmp_path / "src"
    src.mkdir()
    (src / f"{top}.v").write_text(text)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"config": cfg.to_dict(), "divisor": DIVISOR,
                                "period_ns": PERIOD_NS, "link": link}))
    results = tmp_path / "results.jsonl"
    run = run_cocotb(verilog=[src / f"{top}.v"], top=top, test_module="tessera.tb.board_cocotb",
                     extra_env={"TESSERA_BOARD_PLAN": str(plan),
                                "TESSERA_BOARD_RESULTS": str(results)},
                     progress=lambda m: None, keep=2, timeout_s=900)
    failed = [(t.name, t.message) for t in run.tests if t.status != "passed"]
    assert not failed, failed
    assert run.passed == 6
    records = {r["test"]: r for r in map(json.loads, results.read_text().splitlines())}
    eff = records["efficiency"]
    assert eff["write"] >= 0.95 and eff["read"] >= 0.95
