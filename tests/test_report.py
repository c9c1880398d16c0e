"""`tessera report` per layer and per mode: the cases it plans (every run-time mode) and one
real report on a small core's RTL."""

import pytest

from tessera.generators.config import load_config
from tessera.generators.report import REPORT_LAYERS, report_cases, report_layers


def test_every_mode_is_reported():
    """A run-time-mode kind gets the reference GEMM and every report layer in each mode."""
    cfg = load_config("bitfusion")
    modes = cfg.pe.modes
    assert len(modes) == 36
    gemms = report_cases(cfg)
    assert [c["mode"] for c in gemms] == list(modes)
    layers = report_layers(cfg)
    assert len(layers) == len(modes) * len(REPORT_LAYERS)
    assert {c["mode"] for c in layers} == set(modes)


def test_layers_the_engine_does_not_run_are_refused():
    cfg = load_config("int8-4x4")
    with pytest.raises(ValueError, match=r"^report: layer 'p' is a MaxPool2d; the systolic "
                                         r"engine runs Dense, Conv2d$"):
        report_layers(cfg, [("p", {"type": "MaxPool2d"}, [1, 1, 4, 4])])


def test_report_on_the_rtl(tmp_path, capsys):
    """The int8-4x4 core (its Verilator build is shared with the preset regressions): one row
    per workload, utilization = ideal / measured RTL cycles, the mapping as GEMM shapes; the
    JSON keeps the reference GEMM's figures at the top."""
    import json
    from tessera.generators.cli import main
    (tmp_path / "l.toml").write_text(
        '[[layer]]\nname = "dw"\ntype = "Conv2d"\nin_channels = 2\nout_channels = 2\n'
        'kernel = 3\npadding = 1\ngroups = 2\ninput = [1, 2, 4, 4]\n')
    assert main(["report", "int8-4x4", "--layers", str(tmp_path / "l.toml"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    rows = {r["workload"]: r for r in rep["rows"]}
    assert set(rows) == {"GEMM 64x64x64", "Conv2d dw 2->2 3x3/s1/p1 on 1x2x4x4"}
    dw = rows["Conv2d dw 2->2 3x3/s1/p1 on 1x2x4x4"]
    assert dw["mapping"] == [[16, 1, 9], [16, 1, 9]] and dw["runs"] == 2
    assert dw["ideal_cycles"] == 2 * 16 * 9 / 16
    assert dw["utilization"] == pytest.approx(dw["ideal_cycles"] / dw["cycles"])
    g = rows["GEMM 64x64x64"]
    assert (rep["cycles"], rep["ideal_cycles"]) == (g["cycles"], g["ideal_cycles"]) \
        and g["ideal_cycles"] == 64 ** 3 / 16 and g["cycles"] == 16415


def test_regress_table_says_when_the_accumulator_may_wrap():
    """A case whose K can overflow the accumulator is not silently "bit-exact": the table
    adds the worst-case bound (the testbench records `PEKind.acc_bound` per case)."""
    from tessera.generators.cli import _wraps
    assert _wraps({"acc_bound": [442368, 32767]}) == \
        " (accumulator may wrap: worst case 442368 > 32767)"
    assert _wraps({"acc_bound": [16384, 32767]}) == ""
    assert _wraps({"acc_bound": None}) == ""
