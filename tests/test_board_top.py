# amaranth: UnusedElaboratable=no
"""Board tops: clocking (PLL plans, the PLL in the build), any host interface, and real builds of
PLL tops and stream presets (slow)."""

import pytest

from tessera.fpga.boards import get_board
from tessera.fpga.build import build_bitstream, build_plan
from tessera.fpga.top import BoardTop, LinkTop, core_component, link_sizes, pll_plan
from tessera.generators.config import load_config
from tessera.tb.selftest_design import EchoPlusOne


def _check_ice40(p, fout):
    fpfd = 12e6 / (p["DIVR"] + 1)
    fvco = fpfd * (p["DIVF"] + 1)
    assert 10e6 <= fpfd <= 133e6 and 533e6 <= fvco <= 1066e6
    assert fvco / 2 ** p["DIVQ"] == pytest.approx(fout)


def test_pll_plans():
    assert pll_plan("icebreaker", 12e6) is None and pll_plan("ulx3s-85f", 25e6) is None
    ice = pll_plan("icebreaker", 24e6)
    assert ice.out_hz == 24e6 and ice.params == {"DIVR": 0, "DIVF": 63, "DIVQ": 5,
                                                 "FILTER_RANGE": 1}
    _check_ice40(ice.params, 24e6)
    for f in (18e6, 30e6, 48e6, 100e6):
        _check_ice40(pll_plan("icebreaker", f).params, pll_plan("icebreaker", f).out_hz)
    ecp = pll_plan("ulx3s-85f", 50e6)
    p = ecp.params
    assert ecp.out_hz == 50e6 == 25e6 * p["CLKFB_DIV"] / p["CLKI_DIV"]
    assert 400e6 <= ecp.vco_hz == 50e6 * p["CLKOP_DIV"] <= 800e6
    assert pll_plan("ulx3s-85f", 33.3e6).out_hz == pytest.approx(33.333e6, rel=1e-4)
    with pytest.raises(ValueError, match=r"^core\.clock_mhz: 14 MHz cannot be made by the "
                                         r"icebreaker's PLL from its 12 MHz clock within 0\.5% "
                                         r"\(it makes 16\.\.275 MHz; nearest it can make: "
                                         r"16\.12 MHz\); allowed: the board clock 12 MHz or a "
                                         r"frequency the PLL makes$"):
        pll_plan("icebreaker", 14e6)


@pytest.mark.parametrize("board,hz,cell", [("icebreaker", 24e6, "SB_PLL40_PAD"),
                                           ("ulx3s-85f", 50e6, "EHXPLLL")])
def test_build_plan_with_a_pll(board, hz, cell):
    top = BoardTop(EchoPlusOne(), board, clk_hz=hz)
    assert top.clk_hz == hz and top.pll is not None
    assert top.divisor == round(hz / 115200)              # the UART runs on the PLL clock
    plan, _, _ = build_plan(top, board=board)
    rtlil = next(v for k, v in plan.files.items() if k.endswith(".il"))
    assert f"cell \\{cell} \\pll" in rtlil
    for name, value in top.pll.params.items():
        assert f"parameter \\{name} {value}\n" in rtlil
    if board == "icebreaker":
        assert f"set_frequency clk_out {hz / 1e6:g}" in plan.files["tessera.pcf"]
    else:
        assert f'FREQUENCY NET "clk_out" {hz / 1e6:g}' in plan.files["tessera.lpf"] or \
            "clk_out" in plan.files["tessera.lpf"]
    assert "ResetSynchronizer" in rtlil or "reset_sync" in rtlil


def test_board_top_wraps_a_stream_core():
    """The default preset is a `stream` core listed for the ULX3S 85F: its board top (framed
    UART link, clocking, LEDs) elaborates into a build plan like any other."""
    cfg = load_config("int8-8x8")
    assert cfg.host.interface == "stream"
    plan, key, _ = build_plan(core_component(cfg), board="ulx3s-85f", name=cfg.core.name,
                              baud=cfg.host.baud, clk_hz=cfg.core.clock_mhz * 1e6)
    rtlil = plan.files[f"{cfg.core.name}.il"]
    assert "FramedLink" in rtlil or "\\link" in rtlil
    assert 'LOCATE COMP "uart_0__rx__io" SITE "M1"' in plan.files[f"{cfg.core.name}.lpf"]


def test_link_sizes_and_link_top_checks():
    assert link_sizes("icebreaker") == {"max_payload": 512, "rx_buffer": 1024,
                                        "tx_buffer": 1024}
    assert link_sizes(get_board("ulx3s-85f"))["max_payload"] == 1024
    with pytest.raises(ValueError, match=r"^rx_buffer must be a power of two in 16\.\.32768, "
                                         r"not 1000$"):
        LinkTop(EchoPlusOne(), divisor=8, clk_hz=1e6, rx_buffer=1000)
    with pytest.raises(ValueError, match=r"^divisor must be an integer >= 4, not 2$"):
        LinkTop(EchoPlusOne(), divisor=2, clk_hz=1e6)
    with pytest.raises(ValueError, match=r"^tx_buffer must be at least max_payload \(512\), "
                                         r"not 256$"):
        BoardTop(EchoPlusOne(), "icebreaker", link={"tx_buffer": 256})


@pytest.mark.slow
@pytest.mark.parametrize("board,hz", [("icebreaker", 24e6), ("ulx3s-85f", 50e6)])
def test_pll_bitstream(tmp_path, board, hz):
    r = build_bitstream(BoardTop(EchoPlusOne(), board, clk_hz=hz), board=board,
                        out_dir=tmp_path / "out", progress=None)
    assert r.target_mhz == hz / 1e6
    assert r.timing_met and r.fmax_mhz >= hz / 1e6


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["int8-8x8", "multiprec"])
def test_preset_bitstream_on_the_ulx3s(tmp_path, preset):
    """Presets that are not `uart` cores (the default, int8-8x8) or name no board (multiprec)
    build for the ULX3S 85F all the same."""
    cfg = load_config(preset)
    r = build_bitstream(core_component(cfg), board="ulx3s-85f", out_dir=tmp_path / "out",
                        name=cfg.core.name, baud=cfg.host.baud,
                        clk_hz=cfg.core.clock_mhz * 1e6, progress=None)
    assert 0 < r.luts <= r.luts_total and r.timing_met
