"""The import graph between tessera's packages (docs/architecture.md, "Module dependencies").

Every module's imports are read with `ast` (module-level and lazy ones inside functions alike),
relative imports resolved, and the allowed arrows checked:

- `tessera.hdl` imports only itself, Amaranth, NumPy and the standard library;
- `tessera.fpga` never imports `tessera.generators` (the CLI and the config import `fpga`, not
  the other way round);
- `tessera.sim` never imports `tessera.generators` (twins take a duck-typed config);
- `tessera.outpaths`, the output-path library, imports only the standard library.
"""

import ast
import pathlib
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _package_dirs():
    """{package name: folder} from pyproject.toml's ``package-dir`` table."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {pkg: ROOT / d for pkg, d in data["tool"]["setuptools"]["package-dir"].items()}


def _modules():
    """{module name: path} of every module in the installed packages."""
    dirs = _package_dirs()
    out = {}
    for pkg, folder in dirs.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            # A folder that is itself another package's folder (generators/_tessera) belongs
            # to that package.
            if any(other != folder and other.is_relative_to(folder)
                   and path.is_relative_to(other) for other in dirs.values()):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([pkg, *parts])] = path
    return out


MODULES = _modules()


def _imports(name, path):
    """Absolute names of everything module ``name`` imports (at any depth of its code)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            # `from pkg import sub` may name a submodule.
            for a in node.names:
                full = f"{mod}.{a.name}"
                found.add(full if full in MODULES else mod)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _in(name, package):
    return name == package or name.startswith(package + ".")


def _arrows(src_pkg, dst_pkg):
    return sorted(f"{src} -> {dst}" for src, deps in GRAPH.items() if _in(src, src_pkg)
                  for dst in deps if _in(dst, dst_pkg))


def test_modules_found():
    for pkg in ("tessera.hdl.core", "tessera.fpga.build", "tessera.generators.emit",
                "tessera.outpaths", "tessera.sim.core"):
        assert pkg in MODULES


@pytest.mark.parametrize("src, dst", [("tessera.fpga", "tessera.generators"),
                                      ("tessera.sim", "tessera.generators")])
def test_no_arrow(src, dst):
    assert _arrows(src, dst) == []


def _third_party_or_foreign(dep, allowed_tessera):
    top = dep.split(".")[0]
    if top in sys.stdlib_module_names:
        return False
    if top == "tessera":
        return not any(_in(dep, p) for p in allowed_tessera)
    return True


def test_hdl_imports_only_hdl_amaranth_numpy_stdlib():
    bad = sorted(f"{src} -> {dep}" for src, deps in GRAPH.items() if _in(src, "tessera.hdl")
                 for dep in deps
                 if _third_party_or_foreign(dep, ["tessera.hdl"])
                 and dep.split(".")[0] not in ("amaranth", "numpy", "tessera"))
    bad += _arrows("tessera.hdl", "tessera.generators") + _arrows("tessera.hdl", "tessera.sim") \
        + _arrows("tessera.hdl", "tessera.fpga") + _arrows("tessera.hdl", "tessera.tb") \
        + _arrows("tessera.hdl", "tessera.outpaths")
    assert bad == []


def test_outpaths_imports_only_stdlib():
    deps = GRAPH["tessera.outpaths"]
    assert sorted(d for d in deps if d.split(".")[0] not in sys.stdlib_module_names) == []


def test_the_checker_sees_arrows():
    """The checker itself: known arrows (lazy and relative ones) are found."""
    assert "tessera.fpga.boards" in GRAPH["tessera.fpga.build"]            # relative
    assert "tessera.outpaths" in GRAPH["tessera.fpga.build"]               # lazy
    assert _arrows("tessera.generators", "tessera.fpga") != []


def test_twins_and_host_import_no_hdl_component():
    """The engine twins, the golden core, the driver and the layer path load without Amaranth:
    the constants they share with the HDL live in plain modules (`tessera.hdl.engine.params`,
    `tessera.hdl.io.params`, `tessera.hdl.ctrl.protocol`)."""
    import subprocess
    import sys
    code = ("import sys\n"
            "import tessera.sim.engines.gemm_os, tessera.sim.engines.tree, tessera.sim.uart\n"
            "import tessera.sim.core, tessera.sim.driver, tessera.sim.layers\n"
            "import tessera.sim.lowering\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'amaranth'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", out


def test_kinds_do_not_import_the_unit_registry():
    """`tessera.generators.units` imports the kind registry to collect each kind's units, so no
    module under `tessera.generators.kinds` may import it (the cycle of the review): the kinds
    describe their units with `tessera.generators.kinds.unitspec`, a leaf module."""
    assert _arrows("tessera.generators.kinds", "tessera.generators.units") == []
    leaf = GRAPH["tessera.generators.kinds.unitspec"]
    assert sorted(d for d in leaf if d.split(".")[0] not in sys.stdlib_module_names) == []
    import subprocess
    code = ("import sys\n"
            "from tessera.generators.kinds import PE_KINDS\n"
            "units = [u.name for k in PE_KINDS.values() for u in k.units()]\n"
            "assert units, units\n"
            "print('tessera.generators.units' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False", out
    from tessera.generators import units
    from tessera.generators.kinds import unitspec
    assert (units.Option, units.Unit) == (unitspec.Option, unitspec.Unit)
