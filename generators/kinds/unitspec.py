"""What a `tessera unit` entry is: `Option` and `Unit`, plain data with no imports from tessera.

The kinds describe the units they contribute (`PEKind.units`) with these classes, and
`tessera.generators.units` (the registry and the emitter) re-exports them; so the kind modules
never import the registry, which imports the kinds to collect their units.
"""

from dataclasses import dataclass


__all__ = ["Option", "Unit"]


@dataclass(frozen=True)
class Option:
    """One ``tessera unit`` option: name, Python type, default, help line, allowed values
    (``()``: any value the unit's constructor accepts)."""
    name: str
    type: type
    default: object
    help: str
    choices: tuple = ()


@dataclass(frozen=True)
class Unit:
    """One ``tessera unit`` entry: its name, a one-line summary, its `Option` tuple, ``build``
    (callable(**options) -> component) and ``formats`` (callable(**options) -> the manifest's
    ``formats`` data, or None)."""
    name: str
    summary: str
    options: tuple
    build: object          # callable(**options) -> component
    formats: object = None  # callable(**options) -> manifest "formats" data
