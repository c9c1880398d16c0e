"""`tessera regress`: the cocotb + Verilator regression of one core config."""

import json
import pathlib
import time

from tessera.generators.generate import generate_core


__all__ = ["default_cases", "run_regression", "check_regression", "REFERENCE_GEMM",
           "JUNIT_MARKER"]

#: The reference GEMM of `tessera report` (M, N, K).
REFERENCE_GEMM = (64, 64, 64)


def default_cases(cfg, *, quick=False):
    """GEMM cases for a core: ragged shapes, K past the scratchpads, extremes, zeros, reference.

    Shapes are derived from the geometry so every config gets M and N that are not multiples of
    the array, a K larger than scratchpads A/B hold (split into accumulating RUNs on cores that
    accumulate), the extreme operand values and all-zero operands.
    """
    R, C = cfg.rows, cfg.cols
    cases = [
        ("one", 1, 1, 1, "random"),
        ("tile", R, C, 8, "random"),
        ("ragged", R + 1, 2 * C + 3, 5, "random"),
        ("ragged_k17", max(1, 2 * R - 1), C + 1, 17, "random"),
        ("extremes", 2 * R + 1, C + 2, 33, "extremes"),
        ("zeros_a", R, C + 1, 9, "zeros_a"),
        ("zeros_b", R + 2, C, 9, "zeros_b"),
        ("relu", 3 * R, 2 * C, 40, "relu"),
        ("long_k_min", R, C, None, "min"),
        ("long_k", R + 1, C - 1 if C > 1 else 1, None, "random"),
        ("reference_64", *REFERENCE_GEMM, "random"),
    ]
    if quick:
        keep = {"one", "ragged", "extremes", "zeros_a", "long_k_min", "long_k", "reference_64"}
        cases = [c for c in cases if c[0] in keep]
    modes = cfg.pe.regress_modes()
    out = []
    for mode in modes:
        suffix = "" if mode is None or len(modes) == 1 else f"@{mode}"
        # K past what one RUN holds (the engine says how much, per mode): split into
        # accumulating RUNs on every kind with a combiner.
        cap = cfg.engine.k_capacity(mode)
        long_k = 2 * cap + 3 if cfg.pe.combiner() is not None else cap
        for i, (n, m, nn, k, kind) in enumerate(cases):
            if n in ("long_k_min", "long_k"):
                k = long_k
            case = {"name": n + suffix, "m": m, "n": nn, "k": k, "kind": kind,
                    "seed": 1000 + i}
            if mode is not None:
                case["mode"] = mode
            out.append(case)
    return out


#: Put into every JUnit file `tessera regress --junit` writes: an existing file is replaced
#: only if it carries this mark (docs/cli.md, output paths).
JUNIT_MARKER = b"<!-- written by tessera regress -->"

#: The record of a regression work folder (lists the files in it, see `write_outputs`).
RECORD = "summary.json"


def _work_dir(cfg, out_dir):
    return pathlib.Path(out_dir or f"build/regress/{cfg.core.name}-{cfg.digest()}")


def check_location(path, what):
    """``path`` must be a folder tessera can write in (existing, or creatable)."""
    import os
    from tessera.generators.emit import OutputPathError, _check_writable, check_output_dir, quote
    p = pathlib.Path(os.path.abspath(path))
    if os.path.lexists(p):
        if not p.is_dir():
            raise OutputPathError(f"{what}: {quote(str(path))} is not a folder")
        _check_writable(p, what)
        return
    check_output_dir(p, records=(), what=what)


def check_regression(cfg, *, cases=None, junit=None, out_dir=None, build_root="build/sim"):
    """Everything `run_regression` can decide before it generates Verilog or compiles: the
    cases, the work folder, the simulation cache and the JUnit path (raises
    `tessera.generators.emit.OutputPathError` or ValueError)."""
    from tessera.generators.emit import check_output_dir, check_output_file
    if cases is not None and not cases:
        raise ValueError("regression: no GEMM or layer cases given")
    check_output_dir(_work_dir(cfg, out_dir), records=(RECORD,), what="regression folder")
    check_location(build_root, "simulation cache")
    if junit is not None:
        check_output_file(junit, marker=JUNIT_MARKER, what="JUnit file")


def _tag_junit(data):
    """JUnit XML bytes with `JUNIT_MARKER` after the XML declaration."""
    if data.startswith(b"<?xml"):
        end = data.index(b"?>") + 2
        return data[:end] + b"\n" + JUNIT_MARKER + data[end:]
    return JUNIT_MARKER + b"\n" + data


def _files_of(folder, skip):
    from tessera.generators.emit import _sha256_file
    import os
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            rel = os.path.relpath(os.path.join(root, n), folder)
            if rel != skip:
                out[rel] = _sha256_file(os.path.join(root, n))
    return dict(sorted(out.items()))


def run_regression(cfg, *, out_dir=None, build_root="build/sim", waves=False, quick=False,
                   junit=None, progress=print, test_filter=None, cases=None, layers=None):
    """Generate the core, run the cocotb regression on Verilator, return a summary dict.

    The work folder (default ``build/regress/<name>-<digest>``: ``rtl/``, ``plan.json``,
    ``results.xml``, ``summary.json``) is built in a hidden sibling and replaces the previous
    one at the end, under the output rules of `tessera.generators.emit.check_output_dir`;
    ``junit`` (a file path) gets a copy of the JUnit XML. Both are checked before anything runs.
    """
    import shutil
    from tessera.generators.emit import (check_output_dir, make_parents, new_tmp_dir,
                                         remove_created, swap_in, write_output_file)
    from tessera.sim.runner import run_cocotb
    t0 = time.monotonic()
    if layers is None:        # the engine's layer cases come with the default GEMM cases
        layers = cfg.engine.layer_cases(quick=quick) if cases is None else []
    cases = default_cases(cfg, quick=quick) if cases is None else cases
    check_regression(cfg, cases=cases + layers, junit=junit, out_dir=out_dir,
                     build_root=build_root)
    out_dir = pathlib.Path(_work_dir(cfg, out_dir)).absolute()
    where = check_output_dir(out_dir, records=(RECORD,), what="regression folder")
    made = make_parents(where)
    tmp = new_tmp_dir(out_dir.parent)
    try:
        gen_dir = tmp / "rtl"
        progress(f"[regress] generating {cfg.core.name} ({cfg.rows}x{cfg.cols} {cfg.pe.name})")
        manifest = generate_core(cfg, gen_dir)
        t_gen = time.monotonic() - t0
        plan = {"config": cfg.to_dict(), "cases": cases, "layers": layers, "poll_cycles": 64}
        plan_path = tmp / "plan.json"
        plan_path.write_text(json.dumps(plan, indent=1))
        results_path = tmp / "results.jsonl"
        results_path.write_text("")
        progress(f"[regress] {len(cases)} GEMM cases, {len(layers)} layer cases + "
                 f"info/back-pressure/malformed-command tests")
        res = run_cocotb(verilog=[gen_dir / manifest["verilog"]], top=manifest["top"],
                         test_module="tessera.tb.core_cocotb",
                         build_root=pathlib.Path(build_root), waves=waves,
                         results_xml=tmp / "results.xml",
                         extra_env={"TESSERA_PLAN": str(plan_path.resolve()),
                                    "TESSERA_RESULTS": str(results_path.resolve())},
                         test_filter=test_filter, progress=progress)
        records = [json.loads(line) for line in results_path.read_text().splitlines()
                   if line]
        measurements = [r for r in records if "layer" not in r]
        layer_records = [r for r in records if "layer" in r]
        results_path.unlink()
        if junit is not None:
            junit_path = write_output_file(junit, _tag_junit((tmp / "results.xml").read_bytes()),
                                           marker=JUNIT_MARKER, what="JUnit file")
        else:
            junit_path = out_dir / "results.xml"
        summary = {
            "config": cfg.core.name,
            "config_digest": cfg.digest(),
            "passed": res.passed, "failed": res.failed, "skipped": res.skipped,
            "ok": res.ok,
            "tests": [{"name": t.name, "status": t.status, "seconds": round(t.seconds, 3),
                       "message": t.message} for t in res.tests],
            "gemms": measurements,
            "layers": layer_records,
            "junit": str(junit_path),
            "waves": str(res.waves) if res.waves else None,
            "rebuilt": res.rebuilt,
            "generate_seconds": round(t_gen, 2),
            "build_seconds": round(res.build_seconds, 2),
            "wall_seconds": round(time.monotonic() - t0, 2),
        }
        record = dict(summary, files=_files_of(tmp, RECORD))
        (tmp / RECORD).write_text(json.dumps(record, indent=1))
        where = check_output_dir(out_dir, records=(RECORD,), what="regression folder")
        swap_in(tmp, out_dir, exists=where.exists)
        tmp = None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            remove_created(made)
    return summary
