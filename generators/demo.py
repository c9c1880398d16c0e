"""`make demo`: generate the default core and co-simulate a sample layer on it."""

import sys
import time

from tessera.generators.config import load_config
from tessera.generators.generate import generate_core
from tessera.generators.regress import run_regression


def main(argv=None):
    """`make demo`; errors end in one line, as for `tessera` (`tessera.generators.cli`)."""
    import os
    from tessera.generators.cli import guarded
    argv = sys.argv[1:] if argv is None else argv
    debug = os.environ.get("TESSERA_DEBUG", "") not in ("", "0")
    return guarded(lambda: _demo(argv), debug=debug)


def _demo(argv):
    spec = argv[0] if argv else None
    t0 = time.monotonic()
    cfg = load_config(spec)
    print(f"tessera demo: {cfg.core.name} ({cfg.source})")
    keys = ", ".join(f"{k}={v}" for k, v in cfg.array.to_dict().items() if k != "kind")
    print(f"  array {cfg.array.kind} ({keys}), "
          f"PE {cfg.pe.describe()}, "
          f"scratchpads A/B/C {cfg.memory.a_depth}/{cfg.memory.b_depth}/{cfg.memory.c_depth} "
          f"words")
    out = f"build/demo/{cfg.core.name}"
    t = time.monotonic()
    man = generate_core(cfg, out)
    print(f"\n[1/2] generated {out}/{man['verilog']} in {time.monotonic() - t:.1f}s "
          f"(sha256 {man['verilog_sha256'][:12]}..., manifest.json, "
          f"{man['top']}_defs.h)")
    # A 3x3 convolution, 16 -> 32 channels, on an 8x8 feature map after a ReLU, lowered to a
    # GEMM (im2col: 64 output pixels x 144 taps x 32 filters), plus the reference GEMM.
    cases = [
        {"name": "conv3x3_16to32", "m": 64, "n": 32, "k": 144, "kind": "relu", "seed": 11},
        {"name": "fc_256to64", "m": 16, "n": 64, "k": 256, "kind": "random", "seed": 12},
        {"name": "reference_64", "m": 64, "n": 64, "k": 64, "kind": "random", "seed": 13},
    ]
    print("[2/2] co-simulating on Verilator (cocotb) against the NumPy golden model...")
    s = run_regression(cfg, cases=cases, test_filter="test_gemm|test_info",
                       out_dir=f"build/demo/{cfg.core.name}-regress",
                       progress=lambda m: print("      " + m))
    print(f"\n{'layer':<16} {'M x N x K':>14} {'cycles':>7} {'ideal':>7} {'util':>7}  result")
    for g in s["gemms"]:
        shape = f"{g['m']}x{g['n']}x{g['k']}"
        ok = "bit-exact" if g["mismatches"] == 0 else f"{g['mismatches']} MISMATCHES"
        cyc = "= golden model" if g["cycles"] == g["golden_cycles"] else \
            f"!= golden {g['golden_cycles']}"
        print(f"{g['case']:<16} {shape:>14} {g['cycles']:>7} {g['ideal_cycles']:>7.0f} "
              f"{100 * g['utilization']:>6.2f}%  {ok}, cycles {cyc}")
    print(f"\n{s['passed']} passed, {s['failed']} failed; Verilator build "
          f"{'compiled' if s['rebuilt'] else 'cached'} ({s['build_seconds']}s); "
          f"total {time.monotonic() - t0:.1f}s")
    print("next: `make test`, `.venv/bin/tessera regress`, "
          "`.venv/bin/tessera build --board icebreaker icebreaker`")
    return 0 if s["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
