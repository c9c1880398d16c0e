"""Figures of the walking skeleton: generation and regression times, RTL utilization of the
reference GEMM, and board utilization/Fmax. Writes benchmarks/results/skeleton.{json,md}.

Board builds: the ``icebreaker`` and ``ulx3s`` presets (`fpga.build.build_bitstream`, the core
with its UART bridge) once per nextpnr seed 1, 2, 3 (`benchmarks/seeds.py`), in
``build/bench/skeleton/<preset>-<board>-sN`` (a folder holding the same build is reused);
resources of seed 1, Fmax the median of the seeds with min..max. The ULX3S place and route
takes close to an hour per seed.

    .venv/bin/python benchmarks/skeleton.py                # everything
    .venv/bin/python benchmarks/skeleton.py --no-builds
    .venv/bin/python benchmarks/skeleton.py --only-builds  # keep the other figures of the JSON
    .venv/bin/python benchmarks/skeleton.py --only-builds --boards icebreaker
"""

import argparse
import json
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import seeds as S  # noqa: E402

from tessera.generators.config import load_config  # noqa: E402
from tessera.generators.generate import generate_core  # noqa: E402
from tessera.generators.regress import REFERENCE_GEMM, run_regression  # noqa: E402

OUT = ROOT / "benchmarks" / "results"

#: NVDLA's smallest open configuration on FPGA spends about this many LUTs per int8 MAC.
NVDLA_LUTS_PER_MAC = 1190


def say(msg):
    print(msg, flush=True)


def time_generate(preset, repeats=3):
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            t = time.monotonic()
            generate_core(load_config(preset), pathlib.Path(d) / "out")
            times.append(time.monotonic() - t)
    return statistics.median(times)


def reference_gemm(preset):
    m, n, k = REFERENCE_GEMM
    cfg = load_config(preset)
    s = run_regression(cfg, cases=[{"name": "reference_64", "m": m, "n": n, "k": k,
                                    "kind": "random", "seed": 1}],
                       test_filter="test_gemm", progress=lambda x: None,
                       out_dir=ROOT / "build" / "bench" / f"ref-{preset}")
    g = s["gemms"][0]
    assert g["mismatches"] == 0 and g["cycles"] == g["golden_cycles"], g
    return {"preset": preset, "array": f"{cfg.rows}x{cfg.cols}", "gemm": f"{m}x{n}x{k}",
            "cycles": g["cycles"], "ideal_cycles": g["ideal_cycles"],
            "utilization": g["ideal_cycles"] / g["cycles"]}


def regression_time(preset):
    cfg = load_config(preset)
    root = pathlib.Path(tempfile.mkdtemp(prefix="bench-sim-"))
    try:
        t = time.monotonic()
        cold = run_regression(cfg, build_root=root, progress=lambda x: None,
                              out_dir=ROOT / "build" / "bench" / f"reg-{preset}")
        t_cold = time.monotonic() - t
        t = time.monotonic()
        warm = run_regression(cfg, build_root=root, progress=lambda x: None,
                              out_dir=ROOT / "build" / "bench" / f"reg-{preset}")
        t_warm = time.monotonic() - t
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert cold["ok"] and warm["ok"]
    return {"preset": preset, "tests": cold["passed"], "cold_s": round(t_cold, 1),
            "warm_s": round(t_warm, 1), "verilator_build_s": cold["build_seconds"]}


def board_build(preset, board):
    cfg = load_config(preset)
    t = time.monotonic()
    folder = ROOT / "build" / "bench" / "skeleton"
    r = S.core_builds(preset, board, lambda seed: folder / f"{preset}-{board}-s{seed}", say=say)
    r.update(preset=preset, pes=cfg.pes, wall_seconds=round(time.monotonic() - t, 1))
    if r["fits"]:
        r["luts_per_mac"] = round(r["luts"] / cfg.pes, 1)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-builds", action="store_true", help="skip the board builds")
    ap.add_argument("--only-builds", action="store_true",
                    help="only the board builds; the other figures stay as in skeleton.json")
    ap.add_argument("--boards", default="icebreaker,ulx3s",
                    help="presets to build (their board from the preset): the others keep "
                         "their row of skeleton.json")
    args = ap.parse_args()
    res = {}
    if args.only_builds:
        res = {k: v for k, v in json.loads((OUT / "skeleton.json").read_text()).items()
               if k != "boards"}
    else:
        say("[1/4] tessera generate time (default preset, median of 3)")
        res["generate_s"] = round(time_generate(None), 2)
        say(f"      {res['generate_s']} s")
        say("[2/4] reference GEMM cycles on the RTL")
        res["reference_gemm"] = [reference_gemm(p) for p in ("int8-4x4", "int8-8x8", "ulx3s")]
        for r in res["reference_gemm"]:
            say(f"      {r['preset']:<9} {r['array']:>5}: {r['cycles']} cycles vs ideal "
                f"{r['ideal_cycles']:.0f} -> {100 * r['utilization']:.2f}%")
        say("[3/4] full regression wall time (default preset; cold = Verilator compile included)")
        res["regression"] = regression_time("int8-8x8")
        say(f"      {res['regression']}")
    if not args.no_builds:
        say(f"[4/4] board builds (yosys + nextpnr, seeds {', '.join(map(str, S.SEEDS))})")
        boards = {"icebreaker": "icebreaker", "ulx3s": "ulx3s-85f"}
        want = [p for p in args.boards.split(",") if p]
        for p in want:
            if p not in boards:
                raise SystemExit(f"--boards: {p!r}; allowed: {', '.join(boards)}")
        old = {b["preset"]: b for b in json.loads((OUT / "skeleton.json").read_text())
               .get("boards", [])} if (OUT / "skeleton.json").exists() else {}
        res["boards"] = [board_build(p, boards[p]) if p in want else old[p]
                         for p in boards if p in want or p in old]
        for b in res["boards"]:
            say(f"      {b}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "skeleton.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = ["| preset | array | 64x64x64 cycles | ideal | utilization |", "|---|---|---|---|---|"]
    for r in res["reference_gemm"]:
        lines.append(f"| {r['preset']} | {r['array']} | {r['cycles']} | {r['ideal_cycles']:.0f} "
                     f"| {100 * r['utilization']:.2f} % |")
    if "boards" in res:
        lines += ["", f"Board builds: resources of seed 1, Fmax {S.WHAT}.", "",
                  "| preset | board | PEs | LUTs | DSPs | BRAMs | Fmax (target) | LUTs/MAC |",
                  "|---|---|---|---|---|---|---|---|"]
        for b in res["boards"]:
            if not b.get("fits", True):
                lines.append(f"| {b['preset']} | {b['board']} | {b['pes']} | **does not fit**"
                             + (f": needs {b['needs']}" if b.get("needs") else "")
                             + f" (seed {b['seed']}) | | | | |")
                continue
            spram = (f" + {b['sprams']}/{b['sprams_total']} SPRAM" if b.get("sprams") else "")
            lines.append(f"| {b['preset']} | {b['board']} | {b['pes']} | {b['luts']}/"
                         f"{b['luts_total']} | {b['dsps']}/{b['dsps_total']} | {b['brams']}/"
                         f"{b['brams_total']}{spram} | {S.mhz(b, 2)} MHz "
                         f"({b['target_mhz']:.0f}){'' if b['timing_met'] else ' FAILED'} | "
                         f"{b['luts_per_mac']} |")
    lines += ["", f"generate (default preset): {res['generate_s']} s; regression "
              f"({res['regression']['tests']} tests): {res['regression']['cold_s']} s cold, "
              f"{res['regression']['warm_s']} s warm"]
    (OUT / "skeleton.md").write_text("\n".join(lines) + "\n")
    say(f"wrote {OUT / 'skeleton.json'} and skeleton.md")


if __name__ == "__main__":
    main()
