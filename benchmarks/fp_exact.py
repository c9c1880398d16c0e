"""Figures of exact FP accumulation: the E4M3 -> FP16 MAC per accumulation mode, and the
two exact-mode presets on their boards.

Units (the flow and harness of `benchmarks/fp_units.py`: registered inputs and outputs,
YoWASP yosys + nextpnr with seeds 1, 2, 3) on ECP5-85F and iCE40 UP5K:

* ``step``: `FPMac`, round into FP16 at every product (2 stages, the seeds' semantics);
* ``chunk``: `FPMac` with chunk-based accumulation, CL = 64 (3 stages);
* ``exact``: `FPExactMac`, products summed exactly in a 52-bit window, one rounding
  (3 stages: the fewest LUTs; 5 stages: the fastest).

Presets (`fpga.build.build_bitstream`, as ``tessera build PRESET --board B --seed N``: the
the whole core in its framed-link board top), once per seed: ``icebreaker-fp8`` on the iCEBreaker (12 MHz)
and ``ulx3s-fp8`` on the ULX3S 85F (25 MHz). The ECP5 place and route takes about ten minutes
per seed with the WebAssembly nextpnr.

Every Fmax is the median of nextpnr seeds 1, 2 and 3, with min..max (`benchmarks/seeds.py`);
"x step" is the ratio of the medians.

Usage::

    .venv/bin/python benchmarks/fp_exact.py [--jobs N] [--no-units] [--no-builds]

Writes ``benchmarks/results/fp_exact.json`` and ``fp_exact.md`` and prints the tables.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import fp_units  # noqa: E402
import seeds as S  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BUILD = ROOT / "build" / "bench" / "fp_exact"

#: (mode label, unit name, stages, unit class, keyword arguments)
MACS = [
    ("step", "mac_e4m3_fp16", 2, "FPMac", {"fmt_in": "fp8_e4m3", "fmt_acc": "fp16"}),
    ("chunk CL=64", "mac_e4m3_fp16_cl64", 3, "FPMac",
     {"fmt_in": "fp8_e4m3", "fmt_acc": "fp16", "chunk": 64}),
    ("exact", "mac_e4m3_fp16_exact", 3, "FPExactMac", {"fmt_in": "fp8_e4m3", "fmt_acc": "fp16"}),
    ("exact", "mac_e4m3_fp16_exact", 5, "FPExactMac", {"fmt_in": "fp8_e4m3", "fmt_acc": "fp16"}),
]
#: (preset, board, array override or None): the exact-mode presets on their boards.
PRESETS = [("icebreaker-fp8", "icebreaker", None), ("ulx3s-fp8", "ulx3s-85f", None)]


def units(jobs):
    out = []
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        futs = {pool.submit(fp_units.synth, name, st, (cls, kw), arch): (mode, name, st, arch)
                for mode, name, st, cls, kw in MACS for arch in ("ecp5", "ice40")}
        for fut in concurrent.futures.as_completed(futs):
            mode, name, st, arch = futs[fut]
            r = fut.result()
            r["mode"] = mode
            out.append(r)
            print(f"  {name} stages={st} {arch}: {r['lut4']} LUT4, {S.mhz(r, 2)} MHz",
                  flush=True)
    out.sort(key=lambda r: ([m[1] for m in MACS].index(r["unit"]), r["stages"], r["arch"]))
    return out


def build(preset, board, array=None):
    from tessera.generators.config import config_from_dict, load_config
    cfg = load_config(preset)
    tag = f"{preset}-{board}"
    if array:
        d = cfg.to_dict()
        d["array"]["rows"], d["array"]["cols"] = array
        cfg = config_from_dict(d, source=f"{preset} laid out {array[0]}x{array[1]}")
        tag += f"-{array[0]}x{array[1]}"
    t0 = time.time()
    res = S.core_builds(preset, board, lambda seed: BUILD / f"{tag}-s{seed}",
                        say=lambda m: print(m, flush=True), cfg=cfg)
    res.update(preset=preset, pes=cfg.pes, array=f"{cfg.rows}x{cfg.cols}",
               layout_override=bool(array), stages=cfg.pe.stages,
               wall_seconds=round(time.time() - t0, 1))
    if res["fits"]:
        print(f"  {preset} on {board}: {res['luts']}/{res['luts_total']} LUTs, "
              f"{S.mhz(res, 2)} MHz (target {res['target_mhz']})", flush=True)
    return res


def _spram(b):
    return f" + {b['sprams']} / {b['sprams_total']} SPRAM" if b.get("sprams") else ""


def markdown(res):
    lines = ["# Exact FP accumulation: E4M3 -> FP16 MAC per accumulation mode, and the "
             "exact-mode presets", ""]
    if res.get("units"):
        lines += ["MAC units in the harness of `benchmarks/fp_units.py` (registered inputs and "
                  f"outputs). MHz: {S.WHAT}. ECP5 LUT4 counts the carry cells' LUTs; "
                  "x step = median Fmax over the round-every-step MAC's median Fmax.", "",
                  "| mode | stages | ECP5 LUT4 | ECP5 MULT18 | ECP5 MHz | x step | UP5K LC | "
                  "UP5K DSP | UP5K MHz | x step |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        by = {}
        for r in res["units"]:
            by.setdefault((r["mode"], r["unit"], r["stages"]), {})[r["arch"]] = r
        base = next(v for k, v in by.items() if k[0] == "step")
        for (mode, unit, st), v in by.items():
            e, i = v["ecp5"], v["ice40"]
            lines.append(
                f"| {mode} | {st} | {e['lut4']} | {e['mult18']} | {S.mhz(e, 2)} | "
                f"{S.ratio(e, base['ecp5']):.2f} | {i['lut4']} | {i['dsp']} | "
                f"{S.mhz(i, 2)} | {S.ratio(i, base['ice40']):.2f} |")
        lines.append("")
    if res.get("builds"):
        lines += ["Presets (`tessera build PRESET --board B --seed N`, the whole core in its "
                  f"framed-link board top; resources of seed 1, Fmax: {S.WHAT}; timing met at "
                  "every seed):",
                  "",
                  "| preset | board | array (MACs) | PE stages | LUTs | DSPs | BRAMs | FFs | "
                  "Fmax (board clock) | timing |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for b in res["builds"]:
            layout = f" laid out {b['array']}" if b.get("layout_override") else ""
            if not b.get("fits", True):
                lines.append(
                    f"| `{b['preset']}`{layout} | {b['board']} | {b['array']} ({b['pes']}) | "
                    f"{b['stages']} | **does not fit**"
                    + (f": needs {b['needs']}" if b.get("needs") else "")
                    + f" (seed {b['seed']}) | | | | | failed |")
                continue
            lines.append(
                f"| `{b['preset']}`{layout} | {b['board']} ({b['device']}) | {b['array']} "
                f"({b['pes']}) "
                f"| {b['stages']} | {b['luts']} / {b['luts_total']} | {b['dsps']} / "
                f"{b['dsps_total']} | {b['brams']} / {b['brams_total']}"
                f"{_spram(b)} | {b['ffs']} | "
                f"{S.mhz(b, 2)} MHz ({b['target_mhz']:g} MHz) | "
                f"{'met' if b['timing_met'] else 'FAILED'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="parallel place-and-route jobs")
    ap.add_argument("--no-units", action="store_true", help="skip the MAC unit runs")
    ap.add_argument("--no-builds", action="store_true", help="skip the preset builds")
    args = ap.parse_args(argv)
    path = RESULTS / "fp_exact.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    t0 = time.time()
    if not args.no_units:
        print("MAC units:")
        res["units"] = units(args.jobs)
    if not args.no_builds:
        print("preset builds:")
        BUILD.mkdir(parents=True, exist_ok=True)   # before two builds race to create it
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            res["builds"] = list(pool.map(lambda pb: build(*pb), PRESETS))
    res["seconds"] = round(time.time() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2) + "\n")
    md = markdown(res)
    (RESULTS / "fp_exact.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
