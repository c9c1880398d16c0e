"""Synthesis benchmark: FPEC MAC and BiScaled MAC against plain integer MACs (ECP5-85F, UP5K).

Same harness and flow as ``benchmarks/fp_units.py`` (serial-in registered inputs, registered
XOR-reduced outputs; YoWASP yosys + nextpnr with seeds 1, 2, 3: resources of seed 1, Fmax the
median of the seeds with min..max). Units, all with 32-bit accumulators and 6-bit computation
codes:

* ``int6`` / ``int8``: `IntMacPE` 6 x 6 / 8 x 8 (the plain baselines);
* ``fpec6_emb0`` / ``fpec6_emb1``: `FpecMacPE` with 6 computation bits per operand (plus EZB,
  EDB and 0 / 1 EMB bits);
* ``biscaled6``: `BiScaledMacPE` 6 x 6 with Da = 3, Db = 2 (the ``biscaled`` preset).

Usage::

    .venv/bin/python benchmarks/approx_units.py [--board ecp5|ice40|both] [--jobs N]

Writes ``benchmarks/results/approx_units.{json,md}``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "benchmarks")):
    if p not in sys.path:
        sys.path.insert(0, p)

import fp_units  # noqa: E402
import seeds as S  # noqa: E402

from tessera.hdl.arith.biscaled import BiScaledMacPE  # noqa: E402
from tessera.hdl.arith.fpec import FpecMacPE  # noqa: E402
from tessera.hdl.arith.intmac import IntMacPE  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

UNITS = {
    "int6": lambda: IntMacPE(a_bits=6, b_bits=6, acc_bits=32),
    "int8": lambda: IntMacPE(a_bits=8, b_bits=8, acc_bits=32),
    "fpec6_emb0": lambda: FpecMacPE(a_bits=6, b_bits=6, emb_bits=0, acc_bits=32),
    "fpec6_emb1": lambda: FpecMacPE(a_bits=6, b_bits=6, emb_bits=1, acc_bits=32),
    "biscaled6": lambda: BiScaledMacPE(a_bits=6, b_bits=6, da=3, db=2, acc_bits=32),
}


def synth(name, arch):
    # fp_units.synth builds the unit from a (class, kwargs) spec: hand it ours.
    fp_units.UNITS["_approx_" + name] = lambda stages: UNITS[name]()
    res = fp_units.synth(name, 0, ("_approx_" + name, {}), arch)
    res.pop("stages", None)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", choices=("ecp5", "ice40", "both"), default="both")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    archs = ("ecp5", "ice40") if args.board == "both" else (args.board,)
    jobs = [(n, a) for a in archs for n in UNITS]
    results = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as ex:
        for res in ex.map(lambda j: synth(*j), jobs):
            print(json.dumps(res), flush=True)
            results.append(res)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "approx_units.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [f"Resources of nextpnr seed 1; Fmax: {S.WHAT}.", "",
             "| unit | arch | LUT4 | DSP / MULT18 | FF | Fmax MHz | LUT vs int6 |",
             "|---|---|---|---|---|---|---|"]
    base = {r["arch"]: r["lut4"] for r in results if r["unit"] == "int6"}
    for r in results:
        dsp = r.get("dsp", r.get("mult18"))
        over = (f"{100 * (r['lut4'] / base[r['arch']] - 1):+.0f} %"
                if base.get(r["arch"]) else "")
        lines.append(f"| {r['unit']} | {r['arch']} | {r['lut4']} | {dsp} | {r.get('ff')} | "
                     f"{S.mhz(r, 2)} | {over} |")
    (RESULTS / "approx_units.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
