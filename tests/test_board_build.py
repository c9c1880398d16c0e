"""Bitstreams of real cores in their board tops (clocking, framed UART link, LEDs): a small int8
core on the iCEBreaker in the default suite (about half a minute of place and route), the
presets marked slow (the iCEBreaker preset fills 94 % of the UP5K: two to three minutes)."""

import json

import pytest

from tessera.generators.cli import main
from tessera.generators.config import load_config
from tessera.generators.report import last_build


def _build(preset, board, tmp_path, capsys):
    out = tmp_path / f"{preset}-{board}"
    rc = main(["build", preset, "--board", board, "-o", str(out), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    return out, res


SMALL_ICE = """
[core]
name = "tessera_small_ice"
clock_mhz = 12.0
boards = ["icebreaker"]

[array]
rows = 1
cols = 2

[pe]
kind = "int"
acc_bits = 16

[memory]
read_register = false
a_depth = 256
b_depth = 256
c_depth = 256

[host]
interface = "uart"
baud = 115200
"""


def test_small_core_bitstream(tmp_path, capsys):
    """A 1x2 int8 core with the framed UART link in the iCEBreaker top, placed and routed on
    the UP5K: the bitstream, one SB_MAC16 per PE, timing met at the board's 12 MHz."""
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL_ICE)
    out = tmp_path / "small"
    assert main(["build", str(cfg), "--board", "icebreaker", "-o", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    bit = out / "tessera_small_ice.bin"
    assert bit.is_file() and bit.stat().st_size > 100_000
    assert r["board"] == "icebreaker" and r["device"] == "iCE40UP5K"
    assert 0 < r["luts"] < 4500 and r["luts_total"] == 5280
    assert r["dsps"] == 2
    assert r["timing_met"] and r["fmax_mhz"] >= 12


@pytest.mark.slow
def test_icebreaker_preset_bitstream(tmp_path, capsys):
    """The whole icebreaker core (2x4 int8 PEs, framed UART link) placed and routed on a UP5K."""
    out, r = _build("icebreaker", "icebreaker", tmp_path, capsys)
    bit = out / "tessera_icebreaker.bin"
    assert bit.is_file() and bit.stat().st_size > 100_000     # a UP5K image is ~104 kB
    assert r["board"] == "icebreaker" and r["device"] == "iCE40UP5K"
    assert 0 < r["luts"] <= r["luts_total"] == 5280
    assert r["dsps"] == 8                 # one SB_MAC16 per int8 PE
    assert r["brams"] >= 3 + 4            # scratchpads A, B, C and the link's buffers in EBR
    assert r["target_mhz"] == 12
    assert r["timing_met"] and r["fmax_mhz"] >= 12


def test_report_reads_last_build(tmp_path, monkeypatch):
    """`tessera report` takes luts/dsps/brams/fmax from build/fpga/<core>-<board>."""
    cfg = load_config("icebreaker")
    d = tmp_path / "build" / "fpga" / "tessera_icebreaker-icebreaker"
    d.mkdir(parents=True)
    (d / "build_result.json").write_text(json.dumps(
        {"board": "icebreaker", "luts": 1234, "dsps": 8, "brams": 9, "fmax_mhz": 20.5}))
    assert last_build(cfg, root=tmp_path / "build" / "fpga")["luts"] == 1234
    assert last_build(cfg, root=tmp_path / "nothing") is None


@pytest.mark.slow
def test_ulx3s_preset_bitstream(tmp_path, capsys):
    """12x12 int8 on ECP5-85F: 144 MULT18X18D, LUTs per MAC (the framed link included: 128.6
    measured) about a ninth of NVDLA's 1190."""
    out, r = _build("ulx3s", "ulx3s-85f", tmp_path, capsys)
    assert (out / "tessera_ulx3s.bit").is_file()
    assert r["dsps"] >= 144
    assert r["luts"] / 144 < 132
    assert r["timing_met"]


@pytest.mark.slow
def test_ternary_preset_bitstream(tmp_path, capsys):
    """The ternary core (one 16-input adder tree, run-time weights and scales) on the UP5K
    with the framed link: the scaling multipliers in SB_MAC16s, the tree in logic cells,
    timing met at 12 MHz (one to four minutes of place and route)."""
    out, r = _build("ternary", "icebreaker", tmp_path, capsys)
    assert (out / "tessera_ternary.bin").is_file()
    assert 0 < r["luts"] <= r["luts_total"] == 5280
    assert 1 <= r["dsps"] <= 8
    assert r["timing_met"] and r["fmax_mhz"] >= 12


@pytest.mark.slow
def test_ternary_rle_preset_bitstream(tmp_path, capsys):
    """The run-length ternary core on the ECP5-85F."""
    out, r = _build("ternary-rle", "ulx3s-85f", tmp_path, capsys)
    assert (out / "tessera_ternary_rle.bit").is_file()
    assert r["timing_met"]
