"""nextpnr seeds of the benchmark figures: every Fmax is the median of `SEEDS`, with min..max.

One seed's Fmax is one placement; another seed can be 10 % off either way. The benchmarks run
nextpnr once per seed on the same synthesized netlist (units) or build the same core once per
seed (`fpga.build.build_bitstream`, cached on its build key), and report the median with the
range. Resources come from seed 1 (packing precedes placement, so they rarely differ; a
difference is flagged).
"""

from __future__ import annotations

import statistics
import time

#: nextpnr placer seeds of every Fmax in ``benchmarks/results``.
SEEDS = (1, 2, 3)

#: How the tables say it.
WHAT = f"median of nextpnr seeds {', '.join(map(str, SEEDS))} (min..max)"


def fmax_stats(values):
    """``{"fmax_mhz": median, "fmax_min", "fmax_max"}`` of the seeds' Fmax values (MHz; None
    where a seed had no clocked path), all None if no seed has one."""
    f = [v for v in values if v is not None]
    if not f:
        return {"fmax_mhz": None, "fmax_min": None, "fmax_max": None}
    return {"fmax_mhz": round(statistics.median(f), 2), "fmax_min": min(f),
            "fmax_max": max(f)}


def mhz(r, digits=1, key="fmax"):
    """``"56.7 (56.0..62.1)"``: the median and the range of a row with `fmax_stats` keys."""
    m = r.get(f"{key}_mhz")
    if m is None:
        return "-"
    lo, hi = r.get(f"{key}_min"), r.get(f"{key}_max")
    if lo is None or hi is None:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ({lo:.{digits}f}..{hi:.{digits}f})"


def ratio(a, b):
    """Median Fmax of ``a`` over that of ``b`` (None if either is missing)."""
    if not a.get("fmax_mhz") or not b.get("fmax_mhz"):
        return None
    return round(a["fmax_mhz"] / b["fmax_mhz"], 3)


def merge_seeds(rows, keep=("luts", "lut4", "dsps", "dsp", "mult18", "ffs", "ff", "ccu2")):
    """One result from per-seed results (each with ``seed`` and ``fmax_mhz``): resources of the
    first seed, `fmax_stats` over all, ``seeds`` (seed -> Fmax) and ``resources_vary``."""
    first = rows[0]
    out = {k: v for k, v in first.items() if k not in ("seed", "fmax_mhz")}
    out.update(fmax_stats([r["fmax_mhz"] for r in rows]))
    out["seeds"] = {str(r["seed"]): r["fmax_mhz"] for r in rows}
    out["resources_vary"] = len({tuple(r.get(k) for k in keep) for r in rows}) > 1
    return out


def core_builds(preset, board, out_dir, say=print, build=True, cfg=None):
    """The core of ``preset`` (or of ``cfg``, a config derived from it) built for ``board`` once
    per seed (``out_dir(seed)`` -> folder; a folder holding the same build is reused by its
    cache key).

    With ``build`` False nothing is built: the results are read from the folders.

    Returns
    -------
    dict
        ``fits`` True and: resources of seed 1 (``luts``, ``luts_total``, ``ffs``, ``dsps``,
        ``dsps_total``, ``brams``, ``brams_total``, ``sprams``, ``sprams_total``,
        ``target_mhz``, ``board``, ``device``), `fmax_stats`, ``seeds`` (seed -> Fmax),
        ``resources_vary``, ``timing_met`` (every seed), ``seconds`` (place-and-route wall
        time per seed). Or, when a build fails (the later seeds are then not tried: the
        netlist is the same), ``fits`` False, ``board``, ``seed``, ``error`` (the toolchain's
        first error line) and ``needs`` (what nextpnr could not place, when it says).
    """
    from tessera.fpga.build import BuildError, BuildResult, build_bitstream
    from tessera.generators.assemble import build_core
    from tessera.generators.config import load_config
    cfg = cfg or load_config(preset)
    results = []
    for seed in SEEDS:
        folder = out_dir(seed)
        if build:
            t0 = time.time()
            try:
                r = build_bitstream(build_core(cfg), board=board, name=cfg.core.name,
                                    seed=seed, baud=cfg.host.baud, out_dir=folder,
                                    progress=lambda m, s=seed: say(f"    [{preset} s{s}] {m}"))
            except BuildError as e:
                say(f"  {preset} on {board}, seed {seed}: FAILED: {e}")
                return _failed(board, seed, str(e))
            say(f"  {preset} on {board}, seed {seed}: {r.luts}/{r.luts_total} LUTs, "
                f"{r.fmax_mhz} MHz{' (cached)' if r.cached else ''} "
                f"[{time.time() - t0:.0f} s]")
        else:
            r = BuildResult.load(folder)
            if r is None:
                raise RuntimeError(f"no build of {preset} for {board} (seed {seed}) at "
                                   f"{folder}; run with --build")
        results.append(r)
    keys = ("board", "device", "luts", "luts_total", "ffs", "dsps", "dsps_total", "brams",
            "brams_total", "sprams", "sprams_total", "target_mhz")
    first = results[0]
    out = {"fits": True, **{k: getattr(first, k) for k in keys}}
    out.update(fmax_stats([r.fmax_mhz for r in results]))
    out.update(seeds={str(s): r.fmax_mhz for s, r in zip(SEEDS, results)},
               resources_vary=len({(r.luts, r.ffs, r.dsps, r.brams) for r in results}) > 1,
               timing_met=all(r.timing_met for r in results),
               seconds=[r.seconds for r in results])
    return out


def _failed(board, seed, error):
    """The record of a build that failed (see `core_builds`)."""
    import re
    m = re.search(r"ERROR: .*?(\d+) (ICESTORM_\w+|TRELLIS_\w+|MULT18X18D|DP16KD)", error)
    return {"fits": False, "board": board, "seed": seed, "error": error[:600],
            "needs": f"{m.group(1)} {m.group(2)}" if m else None}
