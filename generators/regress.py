"""`tessera regress`: the cocotb + Verilator regression of one core config."""

import json
import pathlib
import time

from tessera.generators.generate import generate_core


__all__ = ["default_cases", "run_regression", "check_regression", "REFERENCE_GEMM",
           "JUNIT_MARKER", "prune_work_folders", "case_line", "check_waves_window"]

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


def prune_work_folders(folder, keep, *, exclude=None, dry_run=False):
    """Remove all but the ``keep`` newest work folders (those with a ``summary.json`` record:
    `tessera regress` and `tessera report` write one per config digest) of each core in
    ``folder``, never ``exclude``. Returns the removed folders (with ``dry_run``: the folders
    it would remove, removing nothing)."""
    import re
    import shutil
    folder = pathlib.Path(folder)
    by_core = {}
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for d in entries:
        m = re.fullmatch(r"(.+)-[0-9a-f]{16}", d.name)
        if not m or not d.is_dir() or not (d / RECORD).is_file():
            continue
        by_core.setdefault(m[1], []).append(d)
    gone = []
    for dirs in by_core.values():
        dirs.sort(key=lambda d: (d / RECORD).stat().st_mtime, reverse=True)
        for d in dirs[keep:]:
            if exclude is not None and d.resolve() == pathlib.Path(exclude).resolve():
                continue
            if not dry_run:
                shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def network_case(cfg, work_dir, *, images=2):
    """The regression's network case: the digits MLP (`tessera.sim.digits`, trained on the
    spot) quantized for the core's PE kind by its recipe from 256 calibration images, saved
    into ``work_dir``, and the first ``images`` test images. None when the kind has no
    quantization recipe or the quantized network does not fit the core (a folded bias wider
    than a narrow accumulator)."""
    if cfg.pe.ptq_recipe() is None:
        return None
    import warnings
    from tessera.sim import digits
    from tessera.sim.ptq import FloatModel, quantize
    x_tr, _, x_te, y_te = digits.load_split()
    from tessera.sim.layers import LayerError
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # accumulator bound warnings of narrow kinds
        try:
            q = quantize(FloatModel.from_net(digits.train_mlp()), cfg.pe, x_tr[:256])
        except LayerError:     # the network does not fit this core (e.g. a narrow accumulator)
            return None
    path = pathlib.Path(work_dir) / "network.npz"
    q.save(path)
    return {"name": "digits_mlp", "qnet": str(path.resolve()),
            "x": x_te[:images].tolist(), "y": y_te[:images].tolist()}


def case_line(record):
    """One progress line for a finished GEMM, layer or network case: shape, cycles, result."""
    if "network" in record:
        same = record.get("equal_golden") == record.get("images")
        return (f"{record['case']:<16} {'network, ' + str(record['images']) + ' images':<38} "
                f"{record.get('cycles', 0):>8} cycles "
                f"({'= golden' if record.get('cycles_equal') else '!= golden'}), "
                f"{'bit-exact' if same else 'MISMATCHES'}")
    ok = "bit-exact" if record.get("mismatches") == 0 else \
        f"{record.get('mismatches')} MISMATCHES"
    cyc = "= golden" if record.get("cycles") == record.get("golden_cycles") else \
        f"!= golden {record.get('golden_cycles')}"
    if "layer" in record:
        from tessera.sim.layers import describe
        what = f"{describe(record['layer'])} on {'x'.join(str(d) for d in record['input'])}"
    else:
        what = f"{record['m']}x{record['n']}x{record['k']}"
    return f"{record['case']:<16} {what:<38} {record.get('cycles', 0):>8} cycles " \
           f"({cyc}), {ok}"


def _test_case(name, cases, layers):
    """``(kind, case name)`` of a cocotb test name such as ``...test_gemm/case=3`` or
    ``...test_layer/case=dense``; kind is None for the other tests."""
    import re
    if name.endswith(".test_network"):
        return "test_network", "digits_mlp"
    m = re.search(r"\.(test_gemm|test_layer)/case=(\S+)$", name)
    if not m:
        return None, name.rsplit(".", 1)[-1]
    table = cases if m[1] == "test_gemm" else layers
    key = m[2]
    if key.isdigit() and int(key) < len(table) and key not in {c["name"] for c in table}:
        key = table[int(key)]["name"]
    return m[1], key


class _Progress:
    """Prints each test as the simulator reports it finished (`run_cocotb`'s ``on_test``) and
    keeps each test's window of simulation time (for ``waves_window``)."""

    def __init__(self, progress, results_path, cases, layers, total):
        self.say, self.path = progress, results_path
        self.cases, self.layers, self.total = cases, layers, total
        self.done, self.last_ns, self.windows = 0, 0.0, {}
        self.t0 = time.monotonic()

    def note(self, message):
        """Pass a progress message on; the simulation's start resets the clock."""
        if message.startswith("[sim] running"):
            self.t0 = time.monotonic()
        self.say(message)

    def __call__(self, name, status, end_ns):
        kind, case = _test_case(name, self.cases, self.layers)
        self.windows[case] = (self.last_ns, end_ns)
        self.last_ns = end_ns
        self.done += 1
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        text = f"{case} {status}"
        if kind is not None:
            rec = None
            try:
                for line in self.path.read_text().splitlines():
                    r = json.loads(line) if line else None
                    if r and r.get("case") == case:
                        rec = r
            except (OSError, ValueError):
                pass
            if rec is not None:
                text = case_line(rec) + ("" if status == "passed" else f" [{status.upper()}]")
        self.say(f"[regress] {count:>7} {text} ({time.monotonic() - self.t0:.1f}s)")


def _expected_tests(cases, layers, test_filter, network=False):
    """How many tests the run will report (cocotb selects names by ``re.search``)."""
    import re
    names = (["test_info"] + [f"test_gemm/case={c['name']}" for c in cases]
             + [f"test_layer/case={c['name']}" for c in layers]
             + (["test_network"] if network else [])
             + ["test_backpressure", "test_malformed_commands"])
    if not test_filter:
        return len(names)
    try:
        return sum(1 for n in names if re.search(test_filter, "tessera.tb.core_cocotb." + n))
    except re.error:
        return None


def _parse_window(window, windows):
    """``(start_ns, end_ns)`` of ``waves_window``: a case or test name, or "FROM:TO" in ns."""
    if isinstance(window, (tuple, list)):
        return float(window[0]), float(window[1])
    if ":" in window:
        a, _, b = window.partition(":")
        try:
            lo, hi = float(a or 0), float(b) if b else float("inf")
        except ValueError:
            raise ValueError(f"waves window: {window!r} is neither a case name nor FROM:TO in "
                             f"ns") from None
        if lo > hi:
            raise ValueError(f"waves window: {window!r} ends before it starts")
        return lo, hi
    if window not in windows:
        from tessera.generators.config import did_you_mean
        raise ValueError(f"waves window: {window!r} is not a test of this run; "
                         f"{did_you_mean(window, list(windows))}allowed: "
                         + ", ".join(repr(n) for n in windows))
    return windows[window]


def check_waves_window(window, cases, layers):
    """A case-name window must name one of the cases (checked before the run)."""
    if window is None or isinstance(window, (tuple, list)) or ":" in window:
        return _parse_window(window, {}) if window is not None else None
    names = [c["name"] for c in cases] + [c["name"] for c in layers] + \
        ["test_info", "test_backpressure", "test_malformed_commands"]
    if window not in names:
        from tessera.generators.config import did_you_mean
        raise ValueError(f"--waves-window: {window!r} is not a case of this regression; "
                         f"{did_you_mean(window, names)}allowed: a case name ("
                         + ", ".join(repr(n) for n in names) + ") or FROM:TO in ns")
    return None


def _vcd_unit_ns(path):
    """The time unit of a VCD file, in ns (from its ``$timescale``)."""
    import re
    with open(path, errors="replace") as f:
        head = f.read(4096)
    m = re.search(r"\$timescale\s*(\d+)\s*(fs|ps|ns|us|ms|s)\s*\$end", head)
    if not m:
        return 1e-3
    return int(m[1]) * {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[m[2]]


def run_regression(cfg, *, out_dir=None, build_root="build/sim", waves=False, quick=False,
                   junit=None, progress=print, test_filter=None, cases=None, layers=None,
                   waves_depth=None, waves_window=None, keep=None, network=None,
                   network_images=2):
    """Generate the core, run the cocotb regression on Verilator, return a summary dict.

    The work folder (default ``build/regress/<name>-<digest>``: ``rtl/``, ``plan.json``,
    ``results.xml``, ``summary.json``) is built in a hidden sibling and replaces the previous
    one at the end, under the output rules of `tessera.generators.emit.check_output_dir`;
    ``junit`` (a file path) gets a copy of the JUnit XML. Both are checked before anything runs.

    Each test is reported through ``progress`` as it finishes. ``waves`` (True, "fst" or "vcd"),
    ``waves_depth`` (levels of hierarchy traced) and ``waves_window`` (a case name, or
    "FROM:TO" in ns of simulation time; cuts a VCD file to that window) are passed on to
    `tessera.sim.runner.run_cocotb`; so is ``keep`` (prune all but the last ``keep`` runs and
    builds of this core), which also prunes the work folders next to the default one.
    ``network`` (default: only when neither ``cases`` nor ``layers`` is given) adds the network
    case (`network_case`: ``network_images`` digits images through the MLP quantized for the
    core).
    """
    import shutil
    from tessera.generators.emit import (check_output_dir, make_parents, new_tmp_dir,
                                         remove_created, swap_in, write_output_file)
    from tessera.sim.runner import run_cocotb
    t0 = time.monotonic()
    with_network = (cases is None and layers is None) if network is None else network
    if layers is None:        # the engine's layer cases come with the default GEMM cases
        layers = cfg.engine.layer_cases(quick=quick) if cases is None else []
    cases = default_cases(cfg, quick=quick) if cases is None else cases
    check_regression(cfg, cases=cases + layers, junit=junit, out_dir=out_dir,
                     build_root=build_root)
    check_waves_window(waves_window, cases, layers)
    if waves_window is not None and not waves:
        waves = "vcd"
    if waves_window is not None and waves is True:
        waves = "vcd"                     # a window is cut from a VCD file
    if waves_window is not None and waves == "fst":
        raise ValueError("--waves-window cuts VCD files; use --waves-format vcd (or no "
                         "format) with it")
    default_dir = out_dir is None
    out_dir = pathlib.Path(_work_dir(cfg, out_dir)).absolute()
    where = check_output_dir(out_dir, records=(RECORD,), what="regression folder")
    made = make_parents(where)
    tmp = new_tmp_dir(out_dir.parent)
    try:
        gen_dir = tmp / "rtl"
        progress(f"[regress] generating {cfg.core.name} ({cfg.rows}x{cfg.cols} {cfg.pe.name})")
        manifest = generate_core(cfg, gen_dir)
        t_gen = time.monotonic() - t0
        network = network_case(cfg, tmp, images=network_images) if with_network else None
        plan = {"config": cfg.to_dict(), "cases": cases, "layers": layers, "poll_cycles": 64,
                "network": network}
        plan_path = tmp / "plan.json"
        plan_path.write_text(json.dumps(plan, indent=1))
        results_path = tmp / "results.jsonl"
        results_path.write_text("")
        progress(f"[regress] {len(cases)} GEMM cases, {len(layers)} layer cases"
                 + (f", a network ({len(network['x'])} digits images through the "
                    f"{network['name']})" if network else "")
                 + " + info/back-pressure/malformed-command tests")
        watch = _Progress(progress, results_path, cases, layers,
                          _expected_tests(cases, layers, test_filter, bool(network)))
        res = run_cocotb(verilog=[gen_dir / manifest["verilog"]], top=manifest["top"],
                         test_module="tessera.tb.core_cocotb",
                         build_root=pathlib.Path(build_root), waves=waves,
                         waves_depth=waves_depth, keep=keep, on_test=watch,
                         results_xml=tmp / "results.xml",
                         extra_env={"TESSERA_PLAN": str(plan_path.resolve()),
                                    "TESSERA_RESULTS": str(results_path.resolve())},
                         test_filter=test_filter, progress=watch.note)
        window = None
        if res.waves is not None and waves_window is not None:
            from tessera.sim.runner import trim_vcd
            lo, hi = _parse_window(waves_window, watch.windows)
            unit = _vcd_unit_ns(res.waves)
            before = res.waves.stat().st_size
            after = trim_vcd(res.waves, int(lo / unit), int(min(hi, 1e15) / unit))
            window = [lo, hi if hi != float("inf") else None]
            progress(f"[regress] waves cut to {lo:g}..{hi:g} ns: {before / 1e6:.1f} MB -> "
                     f"{after / 1e6:.1f} MB")
        records = [json.loads(line) for line in results_path.read_text().splitlines()
                   if line]
        measurements = [r for r in records if "layer" not in r and "network" not in r]
        layer_records = [r for r in records if "layer" in r]
        network_records = [r for r in records if "network" in r]
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
            "network": network_records[0] if network_records else None,
            "junit": str(junit_path),
            "waves": str(res.waves) if res.waves else None,
            "waves_window_ns": window,
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
        if keep is not None and default_dir:
            prune_work_folders(out_dir.parent, keep, exclude=out_dir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            remove_created(made)
    return summary
