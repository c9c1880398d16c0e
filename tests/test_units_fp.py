# amaranth: UnusedElaboratable=no
"""`tessera unit` for the floating-point units: Verilog + manifest, options validated."""

import json

import pytest

from tessera.generators.cli import main
from tessera.generators.units import UnitError, generate_unit
from tessera.hdl.arith.formats import FORMATS


@pytest.mark.parametrize("name,opts,widths,latency", [
    ("fpmac", {"format": "fp8_e4m3", "acc": "fp16", "chunk": 64, "stages": 3},
     {"a": 8, "b": 8, "result": 16}, 3),
    ("fpmac", {"format": "dlfloat16", "acc": "dlfloat16", "stages": 2},
     {"a": 16, "b": 16, "result": 16}, 2),
    ("fpfma", {"format": "fp16", "stages": 3}, {"a": 16, "b": 16, "c": 16, "result": 16}, 3),
    ("fpmul", {"format": "fp8_e5m2", "out": "fp16"}, {"a": 8, "b": 8, "result": 16}, 1),
    ("fpadd", {"format": "bf16", "stages": 2}, {"a": 16, "b": 16, "result": 16}, 2),
    ("fpconv", {"src": "fp32", "dst": "fp8_e4m3"}, {"a": 32, "result": 8}, 1),
])
def test_fp_unit_manifest(tmp_path, name, opts, widths, latency):
    m = generate_unit(name, opts, tmp_path / name)
    assert m["latency"] == latency
    ports = {p["name"]: p for p in m["ports"]}
    for port, w in widths.items():
        assert ports[port]["width"] == w, port
    assert (tmp_path / name / m["verilog"]).is_file()
    written = json.loads((tmp_path / name / "manifest.json").read_text())
    assert written == m


def test_fpmac_manifest_formats(tmp_path):
    m = generate_unit("fpmac", {"format": "hfp8", "acc": "fp16", "chunk": 16}, tmp_path / "u")
    f = m["formats"]
    assert f["chunk"] == 16
    assert (f["a"]["exp_bits"], f["a"]["man_bits"], f["a"]["bias"]) == (4, 3, 11)
    assert f["acc"]["name"] == "fp16" and f["acc"]["bias"] == FORMATS["fp16"].bias


def test_bad_options(tmp_path, capsys):
    with pytest.raises(UnitError, match=r"^unit fpmac: --acc 'fp12' is not allowed; allowed: "):
        generate_unit("fpmac", {"acc": "fp12"}, tmp_path / "x")
    with pytest.raises(UnitError, match=r"^unit fpmac: .*stages"):
        generate_unit("fpmac", {"stages": 0}, tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert main(["unit", "fpmac", "--chunk", "many", "-o", str(tmp_path / "z")]) == 2
    assert "option --chunk = 'many' is not an integer" in capsys.readouterr().err


def test_cli_fpmac_with_lint(tmp_path, capsys):
    out = tmp_path / "mac"
    assert main(["unit", "fpmac", "--format", "fp8_e4m3", "--acc", "fp16", "--chunk", "64",
                 "--stages", "2", "-o", str(out), "--lint"]) == 0
    assert "lint: clean" in capsys.readouterr().out
