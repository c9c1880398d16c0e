"""Output stationary against weight stationary on the same layers and the same scratchpads.

Presets: ``int8-8x8`` (the default, output stationary) and ``int8-ws`` (the same core with
``array.dataflow = "weight_stationary"``). Workloads: `utilization.workloads` on the 8x8 array
(the digits CNN's layers at batch 50, a VGG-style 32x32 stack, a dense stack that fills the
array). Every layer runs on each preset's Verilated RTL (`tessera.sim.vsim.VerilatorCore`)
through the host driver's layer mapper, one RUN after another; its outputs are checked against
the engine's independent layer reference (a direct convolution / a matrix product) and its
RUNs' cycles against the golden core's. The golden core's run also counts every RUN's
scratchpad reads per store (the twins' ``reads``, which `tests/test_ws_engine.py` checks
against the engines' read enables in RTL simulation).

Per layer: RUN cycles (measured on the RTL), utilization (the layer's MACs at 64 per cycle
over the RUN cycles) and bytes read from the scratchpads per useful MAC (A, B, C: the output
stage's reads of combining words). Area and Fmax come from ``benchmarks/core_fmax.py`` rows
(``core_fmax.json``: the ``read-register`` label of ``int8-8x8``, the ``weight-stationary``
label of ``int8-ws``) and ``ws_area.json`` (the WS array with edge accumulators), beside the
open peers' figures measured by the same flow (issue 19: OpenTPU's and tinyTPU's arrays).

Writes ``benchmarks/results/dataflows.{json,md,png}``.

Usage::

    .venv/bin/python benchmarks/dataflows.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

RESULTS = ROOT / "benchmarks" / "results"
PRESETS = {"output_stationary": "int8-8x8", "weight_stationary": "int8-ws"}
#: The peers' arrays through the same yosys/nextpnr flow on the ECP5-85F (issue 19).
PEERS = [("OpenTPU (WS, no accumulators in the array)", 40.5, 66.0),
         ("tinyTPU (WS, no accumulators in the array)", 23.7, 105.8)]


def say(msg, _t0=time.monotonic()):
    print(f"[{time.monotonic() - _t0:7.1f}s] {msg}", flush=True)


def derive(preset):
    from tessera.generators.config import config_from_dict, load_config
    d = load_config(preset).to_dict()
    d["core"]["boards"] = []
    return config_from_dict(d, source=f"preset:{preset}")


def counting_golden(cfg):
    """A golden core whose engine twin adds each RUN's reads into ``reads``."""
    from tessera.sim.core import GoldenCore
    gold = GoldenCore(cfg)
    reads = {"a": 0, "b": 0, "c": 0, "p": 0}
    run = gold.engine.run

    def counted(stores, args):
        for k, v in gold.engine.reads(args).items():
            reads[k] += v
        return run(stores, args)
    gold.engine.run = counted
    return gold, reads


def run_preset(dataflow, preset, quick):
    from tessera.sim.core import GoldenTransport
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.vsim import VerilatorCore
    from utilization import workloads
    cfg = derive(preset)
    g = cfg.geometry
    wbytes = {s.name: s.word_bits / 8 for s in g.stores}
    nets = workloads(cfg.cols, cfg.rows)
    if quick:
        nets = {k: v[:1] for k, v in list(nets.items())[:1]}
    out = []
    with VerilatorCore(cfg, progress=say) as core:
        drv = TesseraDriver(core.transport, cfg)
        for net, layers in nets.items():
            for i, (name, layer, shape) in enumerate(layers):
                x, w = cfg.engine.layer_operands(layer, list(shape), kind="random", seed=40 + i)
                t0 = time.monotonic()
                y, st = asyncio.run(drv.run_layer(layer, x, w, raw=True))
                wall = time.monotonic() - t0
                want = cfg.engine.layer_reference(layer, x, w)
                if not np.array_equal(np.asarray(y), np.asarray(want)):
                    raise SystemExit(f"{preset} {net} {name}: outputs differ from the reference")
                gold, reads = counting_golden(cfg)
                gdrv = TesseraDriver(GoldenTransport(gold), cfg)
                _, gst = asyncio.run(gdrv.run_layer(layer, x, w, raw=True))
                if st.run_cycles != gst.run_cycles:
                    raise SystemExit(f"{preset} {net} {name}: RUN cycles differ from the golden "
                                     f"core's")
                per_mac = {k: reads[k] * wbytes[k] / st.macs for k in reads if k in wbytes}
                row = {"dataflow": dataflow, "preset": preset, "network": net, "layer": name,
                       "shape": list(shape), "what": repr(layer), "macs": st.macs,
                       "runs": st.runs, "cycles": st.cycles, "ideal_cycles": st.ideal_cycles,
                       "utilization": st.ideal_cycles / st.cycles, "reads_words": reads,
                       "read_bytes_per_mac": per_mac,
                       "read_bytes_per_mac_total": sum(per_mac.values()), "rtl_wall_s": wall}
                out.append(row)
                say(f"{dataflow:<18} {net:<26} {name:<8} {st.cycles:>9} cycles "
                    f"{100 * row['utilization']:5.1f} % of peak, "
                    f"{row['read_bytes_per_mac_total']:.3f} B read/MAC")
    return out


def area_rows():
    """(label, what, LUT, FF, DSP, BRAM, Fmax median, min, max, COMB per MAC) from the
    benchmarks' JSON files, where measured."""
    rows = []
    path = RESULTS / "core_fmax.json"
    data = json.loads(path.read_text()) if path.exists() else []
    data = data.get("rows", data) if isinstance(data, dict) else data
    want = [("read-register", "int8-8x8", "OS"), ("weight-stationary", "int8-ws", "WS")]
    for label, preset, df in want:
        for part in ("array", "core"):
            r = next((r for r in data if r.get("label") == label and r.get("preset") == preset
                      and r.get("part") == part and r.get("arch") == "ecp5"
                      and "error" not in r), None)
            if r is None and part == "array" and preset == "int8-8x8":
                r = next((r for r in reversed(data) if r.get("preset") == preset
                          and r.get("part") == "array" and r.get("arch") == "ecp5"
                          and "error" not in r), None)
            if r is not None:
                rows.append(dict(what=f"{df} {part} ({preset})", **_fig(r)))
    ws = RESULTS / "ws_area.json"
    if ws.exists():
        for r in json.loads(ws.read_text()):
            if r.get("acc_depth") == 1 and "error" not in r:
                rows.append(dict(what="WS array with edge accumulators (ws_area.py, depth 1)",
                                 **_fig(r)))
    return rows


def _fig(r):
    luts = r.get("luts") or r.get("lut") or r.get("comb")
    fmax = r.get("fmax_mhz") or r.get("fmax")
    keys = ("ffs", "dsps", "brams")
    out = {"luts": luts, "fmax_mhz": fmax, "fmax_min": r.get("fmax_min"),
           "fmax_max": r.get("fmax_max"), **{k: r.get(k) for k in keys}}
    out["comb_per_mac"] = None if luts is None else luts / 64
    return out


def write(rows, area):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dataflows.json").write_text(json.dumps(
        {"layers": rows, "area": area, "peers": [
            {"what": w, "comb_per_mac": c, "fmax_mhz": f} for w, c, f in PEERS]},
        indent=1) + "\n")
    by = {}
    for r in rows:
        by.setdefault((r["network"], r["layer"]), {})[r["dataflow"]] = r
    lines = ["# Output stationary against weight stationary (8x8 int8, same scratchpads)", "",
             "`python benchmarks/dataflows.py`: every layer on both presets' Verilated RTL, "
             "outputs equal to the layer reference, RUN cycles equal to the golden core's; "
             "scratchpad reads counted per RUN (A, B and the output stage's C reads of "
             "combining words).", "",
             "| network | layer | MACs | OS cycles | WS cycles | OS % peak | WS % peak | "
             "OS B read/MAC | WS B read/MAC | WS A / B / C B/MAC |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (net, name), d in by.items():
        o, w = d.get("output_stationary"), d.get("weight_stationary")
        if o is None or w is None:
            continue
        pm = w["read_bytes_per_mac"]
        lines.append(f"| {net} | {name} | {o['macs']} | {o['cycles']} | {w['cycles']} | "
                     f"{100 * o['utilization']:.1f} | {100 * w['utilization']:.1f} | "
                     f"{o['read_bytes_per_mac_total']:.3f} | "
                     f"{w['read_bytes_per_mac_total']:.3f} | "
                     f"{pm['a']:.3f} / {pm['b']:.3f} / {pm['c']:.3f} |")
    for df in ("output_stationary", "weight_stationary"):
        sel = [r for r in rows if r["dataflow"] == df]
        if sel:
            cyc = sum(r["cycles"] for r in sel)
            ideal = sum(r["ideal_cycles"] for r in sel)
            lines.append(f"\nAll layers, {df}: {cyc} cycles, {100 * ideal / cyc:.1f} % of peak.")
    lines += ["", "## Area and Fmax (ECP5-85F, DSPs allowed, median of nextpnr seeds 1-3)", "",
              "| what | LUTs | FFs | DSPs | BRAMs | COMB per MAC | Fmax MHz |",
              "|---|---|---|---|---|---|---|"]
    for a in area:
        rng = (f" ({a['fmax_min']:.2f}..{a['fmax_max']:.2f})"
               if a.get("fmax_min") is not None else "")
        fm = f"{a['fmax_mhz']:.2f}{rng}" if a.get("fmax_mhz") else "-"
        lines.append(f"| {a['what']} | {a['luts']} | {a.get('ffs') or '-'} | "
                     f"{a.get('dsps') if a.get('dsps') is not None else '-'} | "
                     f"{a.get('brams') if a.get('brams') is not None else '-'} | "
                     f"{a['comb_per_mac']:.1f} | {fm} |")
    for w, c, f in PEERS:
        lines.append(f"| {w} | - | - | - | - | {c} | {f} |")
    (RESULTS / "dataflows.md").write_text("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [k for k, d in by.items() if len(d) == 2]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    xs = np.arange(len(keys))
    for j, (df, lab) in enumerate((("output_stationary", "OS"),
                                   ("weight_stationary", "WS"))):
        ax[0].bar(xs + 0.4 * j, [100 * by[k][df]["utilization"] for k in keys], 0.4,
                  label=lab)
        ax[1].bar(xs + 0.4 * j, [by[k][df]["read_bytes_per_mac_total"] for k in keys],
                  0.4, label=lab)
    for a, t in zip(ax, ("% of peak (RUN cycles)", "scratchpad bytes read per MAC")):
        a.set_xticks(xs + 0.2, [f"{n.split()[0]} {l}" for n, l in keys], rotation=70,
                     fontsize=7)
        a.set_title(t)
        a.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "dataflows.png", dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one layer per preset")
    args = ap.parse_args(argv)
    rows = []
    for df, preset in PRESETS.items():
        rows += run_preset(df, preset, args.quick)
    write(rows, area_rows())
    say(f"wrote {RESULTS / 'dataflows.md'}")


if __name__ == "__main__":
    main()
