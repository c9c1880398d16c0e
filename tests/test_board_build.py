"""Bitstreams of real cores in their board tops (clocking, framed UART link, LEDs): the iCEBreaker
preset in the default suite, the others marked slow."""

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
