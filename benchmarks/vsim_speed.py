"""Simulated clock cycles per second of a whole core under Verilator (`tessera.sim.vsim`).

Runs an M x K @ K x N int8 GEMM (default 64x64x64) ``--repeat`` times through one
`VerilatorCore` of a preset (default ``int8-8x8``) with the unchanged host driver and mapper,
checks every result against the reference and the RUN cycles against the golden core, and
prints the cycles simulated per wall second of the GEMMs (host Python included), with the
harness's own figure per wall and per CPU second (the latter does not depend on machine load)::

    .venv/bin/python benchmarks/vsim_speed.py [--preset int8-8x8] [--m 64 --n 64 --k 64]
"""

import argparse
import sys

from tessera.generators.config import load_config
from tessera.sim.vsim import measure_gemm


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="int8-8x8", help="preset name or config TOML")
    for dim in ("m", "n", "k"):
        p.add_argument(f"--{dim}", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5, help="GEMMs on one core (default 5)")
    p.add_argument("--build-root", default="build/vsim")
    args = p.parse_args(argv)
    r = measure_gemm(load_config(args.preset), args.m, args.n, args.k, repeat=args.repeat,
                     build_root=args.build_root)
    print(f"{r['config']}: {r['m']}x{r['k']} @ {r['k']}x{r['n']} GEMM in {r['runs']} RUN(s), "
          f"{r['run_cycles']} engine cycles, {min(r['sim_cycles'])}-{max(r['sim_cycles'])} "
          f"clock cycles with the host transfers; x{r['repeat']}: median "
          f"{r['cycles_per_s']:,.0f}, best {r['best_cycles_per_s']:,.0f} simulated cycles per "
          f"wall second (build {r['build_s']:.1f} s{'' if r['rebuilt'] else ', cached'})")
    if r["harness"]:
        print(f"harness: {r['harness'].removeprefix('vharness: ')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
