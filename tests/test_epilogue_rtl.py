"""The epilogues on the RTL (cocotb + Verilator): each epilogue family's example layer cases
(`Epilogue.example_cases`) through `run_regression` on a small core, bit-exact against the
epilogue's independent reference applied to the engine's layer reference, and cycle-exact
against the golden core. Layers only (``cases=[]``), so each core builds and runs in well
under a minute."""

import pytest

from tessera.generators.config import config_from_dict
from tessera.generators.regress import run_regression


def _epilogue_layers(cfg):
    return [c for c in cfg.engine.layer_cases() if c.get("epilogue")]


def _check_layers(s, n):
    failed = [t for t in s["tests"] if t["status"] != "passed"]
    assert not failed, failed
    assert s["ok"]
    assert len(s["layers"]) == n
    for g in s["layers"]:
        assert g["mismatches"] == 0, g
        assert g["cycles"] == g["golden_cycles"], g


CONFIGS = {
    "int8": {"core": {"name": "epi_int8"}, "array": {"rows": 2, "cols": 3},
             "pe": {"kind": "int", "a_bits": 8, "b_bits": 8, "acc_bits": 24},
             "memory": {"a_depth": 64, "b_depth": 64, "c_depth": 64, "p_depth": 4}},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_epilogue_layers_on_rtl(name, tmp_path):
    cfg = config_from_dict(CONFIGS[name])
    layers = _epilogue_layers(cfg)
    assert layers
    s = run_regression(cfg, cases=[], layers=layers, test_filter="test_layer",
                       out_dir=tmp_path / "reg", progress=lambda m: None)
    _check_layers(s, len(layers))
