"""The kind registries: one entry per PE kind and per engine (array kind).

Adding a PE kind: write ``generators/kinds/<kind>.py`` (a `PEKind` subclass) plus its HDL
and twin files, then add one line to `PE_KINDS`. Adding an engine: write its `Engine` subclass,
HDL (`tessera.hdl.engine`) and twin (`tessera.sim.engines`), then add one line to `ENGINES`.
Nothing outside these modules compares kind names (docs/architecture.md, "How to add a kind").
"""

from tessera.generators.kinds.base import ConfigError, Engine, PEKind
from tessera.generators.kinds.biscaled import BiScaledKind
from tessera.generators.kinds.bitfusion import BitFusionKind
from tessera.generators.kinds.feie import FeieEngine
from tessera.generators.kinds.fpec import FpecKind
from tessera.generators.kinds.fpmac import FPMacKind
from tessera.generators.kinds.int import IntKind
from tessera.generators.kinds.multiprec import MultiPrecKind
from tessera.generators.kinds.systolic import SystolicGemm
from tessera.generators.kinds.ternary import TernaryKind
from tessera.generators.kinds.tree import TreeEngine


__all__ = ["PE_KINDS", "PE_KINDS_LATER", "ENGINES", "ENGINES_LATER", "DEFAULT_PE_KIND",
           "DEFAULT_ENGINE", "ConfigError", "PEKind",
           "Engine"]

#: ``pe.kind`` -> its config section class.
PE_KINDS = {k.name: k for k in (IntKind, FPMacKind, FpecKind, BiScaledKind, BitFusionKind,
                                 MultiPrecKind, TernaryKind)}

#: ``pe.kind`` values that are planned but not built (the config says "not implemented yet").
PE_KINDS_LATER = ()

#: ``array.kind`` -> its engine class.
ENGINES = {e.name: e for e in (SystolicGemm, TreeEngine, FeieEngine)}

#: ``array.kind`` values that are planned but not built.
ENGINES_LATER = ()

#: The kinds a config gets when it names none.
DEFAULT_PE_KIND = "int"
DEFAULT_ENGINE = "systolic"
