"""Config loading and validation (generators/config.py).

Expected messages and values are written by hand from what a user should see (key, value,
allowed values) and from the TOML files themselves, never taken from the code under test.
"""

import copy
import dataclasses
import hashlib
import json
import pathlib
import re
import tomllib

import pytest

from tessera.generators.kinds import PE_KINDS, PE_KINDS_LATER
from tessera.generators.config import (ConfigError, CoreConfig, config_from_dict, load_config,
                               preset_names)


PRESET_DIR = pathlib.Path(__file__).resolve().parent.parent / "generators" / "presets"
PRESET_FILES = sorted(PRESET_DIR.glob("*.toml"), key=lambda p: p.stem)
PRESETS = [p.stem for p in PRESET_FILES]
PRESETS_QUOTED = ", ".join(f"'{n}'" for n in PRESETS)

#: Every key with its documented default (docs/config.md), written out by hand.
DEFAULTS = {
    "core": {"name": "tessera_core", "clock_mhz": 25.0, "boards": [], "counters": True},
    "array": {"kind": "systolic", "rows": 8, "cols": 8, "dataflow": "output_stationary"},
    "pe": {"kind": "int", "a_bits": 8, "b_bits": 8, "acc_bits": 32},
    "memory": {"a_depth": 1024, "b_depth": 1024, "c_depth": 1024},
    "host": {"interface": "stream", "baud": 115200},
}
FP_FORMATS = ("'fp8_e4m3', 'fp8_e5m2', 'hfp8', 'hfp8_ibm', 'fp16', 'bf16', 'dlfloat16', "
              "'fp32'")


def raises(data, pattern):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data)
    assert re.fullmatch(pattern, str(exc.value)), str(exc.value)


# -- structure ----------------------------------------------------------------------------------
def test_not_a_table():
    raises([1, 2], r"config: expected a table of sections, got list")


def test_unknown_section():
    raises({"cores": {}}, r"cores: unknown section; did you mean 'core'\? allowed: 'core', "
                          r"'array', 'pe', 'memory', 'host'")


def test_source_is_not_a_section():
    raises({"source": "x"}, r"source: unknown section; .*allowed: .*")


def test_section_not_a_table():
    raises({"array": 3}, r"array: 3 is not a table; allowed: a \[array\] table")


@pytest.mark.parametrize("section, key, allowed", [
    ("core", "nme", "'name', 'clock_mhz', 'boards', 'counters'"),
    ("array", "rowz", "'kind', 'rows', 'cols', 'dataflow', 'chain'"),
    ("pe", "acc", "'kind', 'a_bits', 'b_bits', 'acc_bits'"),
    ("memory", "depth", "'a_depth', 'b_depth', 'c_depth', 'p_depth', 'read_register' or "
                        "<store>_depth, "
                        "<store>_banks for a store of the core"),
    ("host", "baudrate", "'interface', 'baud'"),
])
def test_unknown_key(section, key, allowed):
    # A close key is suggested ("did you mean"), tests/test_cli_polish.py checks which.
    raises({section: {key: 1}}, rf"{section}\.{key}: unknown key; (did you mean '\w+'\? )?"
                                rf"allowed: {re.escape(allowed)}")


@pytest.mark.parametrize("pe, key, allowed", [
    ({"kind": "int", "chunk": 64}, "chunk", "'kind', 'a_bits', 'b_bits', 'acc_bits'"),
    ({"input_format": "fp16"}, "input_format", "'kind', 'a_bits', 'b_bits', 'acc_bits'"),
    ({"kind": "fpmac", "acc_bits": 32}, "acc_bits",
     ", ".join(map(repr, ["kind", *PE_KINDS["fpmac"].keys()]))),
])
def test_pe_key_of_another_kind(pe, key, allowed):
    """A [pe] key that means nothing for the chosen kind is an error, not silently ignored."""
    raises({"pe": pe}, rf"^pe\.{key}: unknown key; (did you mean '\w+'\? )?"
                       rf"allowed: {re.escape(allowed)}$")


# -- integers -----------------------------------------------------------------------------------
INT_KEYS = [  # section, key, lo, hi (with the default a_bits = b_bits = 8)
    ("array", "rows", 1, 64), ("array", "cols", 1, 64),
    ("pe", "a_bits", 2, 32), ("pe", "b_bits", 2, 32), ("pe", "acc_bits", 16, 64),
    ("memory", "a_depth", 16, 32768), ("memory", "b_depth", 16, 32768),
    ("memory", "c_depth", 16, 32768),
    ("host", "baud", 1200, 12_000_000),
]


def _small(section, key, value):
    """A config small enough to stay legal when one key moves to its bound."""
    data = {"array": {"rows": 2, "cols": 2}, "pe": {"acc_bits": 64 if key[1:] == "_bits" else 32}}
    data.setdefault(section, {})[key] = value
    return data


@pytest.mark.parametrize("section, key, lo, hi", INT_KEYS)
def test_int_out_of_range(section, key, lo, hi):
    for bad in (lo - 1, hi + 1):
        data = {section: {key: bad}}
        raises(data, rf"{section}\.{key}: {bad} is out of range; allowed: {lo}\.\.{hi}")


@pytest.mark.parametrize("section, key, lo, hi", INT_KEYS)
def test_int_bounds_accepted(section, key, lo, hi):
    for good in (lo, hi):
        cfg = config_from_dict(_small(section, key, good))
        assert getattr(getattr(cfg, section), key) == good


@pytest.mark.parametrize("section, key, lo, hi", INT_KEYS)
@pytest.mark.parametrize("bad", ["8", 8.0, True, None])
def test_int_wrong_type(section, key, lo, hi, bad):
    raises({section: {key: bad}},
           rf"{section}\.{key}: {re.escape(repr(bad))} is not an integer; "
           rf"allowed: integers {lo}\.\.{hi}")


def test_acc_bits_lower_bound_follows_operands():
    raises({"pe": {"a_bits": 4, "b_bits": 6, "acc_bits": 9}},
           r"pe\.acc_bits: 9 is out of range; allowed: 10\.\.64")
    assert config_from_dict({"pe": {"a_bits": 4, "b_bits": 6, "acc_bits": 10}}).pe.acc_bits == 10


@pytest.mark.parametrize("bad", [0.5, 1001, 0, -25])
def test_clock_out_of_range(bad):
    raises({"core": {"clock_mhz": bad}},
           rf"core\.clock_mhz: {re.escape(repr(bad))} is out of range; allowed: a number "
           rf"1\.\.1000")


@pytest.mark.parametrize("bad", ["fast", True, [25]])
def test_clock_wrong_type(bad):
    raises({"core": {"clock_mhz": bad}}, rf"core\.clock_mhz: {re.escape(repr(bad))} .*; "
                                         rf"allowed: a number 1\.\.1000")


def test_clock_int_becomes_float():
    cfg = config_from_dict({"core": {"clock_mhz": 12}})
    assert cfg.core.clock_mhz == 12.0 and isinstance(cfg.core.clock_mhz, float)
    assert config_from_dict({"core": {"clock_mhz": 1000}}).core.clock_mhz == 1000.0


# -- names and boards ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["Tessera", "1core", "", "my-core", "core name", "a" * 49, 5,
                                 "_core"])
def test_core_name_invalid(bad):
    raises({"core": {"name": bad}},
           rf"core\.name: {re.escape(repr(bad))} is not a valid module name; allowed: "
           rf"lower-case letter then \[a-z0-9_\], at most 48 characters")


@pytest.mark.parametrize("good", ["a", "my_core_2", "x" * 48])
def test_core_name_valid(good):
    assert config_from_dict({"core": {"name": good}}).core.name == good


def test_core_boards_unknown():
    raises({"core": {"boards": ["icebreaker", "de10-nano"]}},
           r"core\.boards: 'de10-nano' is unknown; allowed: 'icebreaker', 'ulx3s-85f' "
           r"\(or 'ulx3s' for 'ulx3s-85f'\)")


def test_core_boards_not_a_list():
    raises({"core": {"boards": "icebreaker"}},
           r"core\.boards: 'icebreaker' is not a list; allowed: a list of 'icebreaker', "
           r"'ulx3s-85f'")


def test_core_boards_list_becomes_tuple():
    cfg = config_from_dict({"core": {"boards": ["ulx3s-85f", "icebreaker"]},
                            "array": {"rows": 2, "cols": 2}})
    assert cfg.core.boards == ("ulx3s-85f", "icebreaker")


# -- enums --------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, allowed", [
    # The PE kinds follow the registry (other kinds are being added).
    *[("pe.kind", later, ", ".join(map(repr, PE_KINDS))) for later in PE_KINDS_LATER],
])
def test_enum_not_implemented_yet(key, value, allowed):
    section, k = key.split(".")
    raises({section: {k: value}},
           rf"{re.escape(key)}: '{value}' is not implemented yet; allowed: {allowed}")


@pytest.mark.parametrize("key, value, allowed", [
    ("array.kind", "mesh", "'systolic', 'tree', 'feie'"),
    ("array.dataflow", "row_stationary",
     "'output_stationary', 'weight_stationary', 'os', 'ws'"),
    ("pe.kind", "float", ", ".join(map(repr, PE_KINDS))),
    ("host.interface", "pcie", "'stream', 'uart'"),
    ("host.interface", "UART", "'stream', 'uart'"),
])
def test_enum_unknown(key, value, allowed):
    section, k = key.split(".")
    raises({section: {k: value}}, rf"{re.escape(key)}: '{value}' is unknown; "
                                  rf"(did you mean '\w+'\? )?allowed: {allowed}")


@pytest.mark.parametrize("section, key, value", [
    ("array", "kind", "systolic"), ("array", "dataflow", "output_stationary"),
    ("pe", "kind", "int"), ("pe", "kind", "fpmac"),
    ("host", "interface", "stream"), ("host", "interface", "uart"),
])
def test_enum_accepted(section, key, value):
    cfg = config_from_dict({section: {key: value}})
    assert getattr(getattr(cfg, section), key) == value


# -- fpmac --------------------------------------------------------------------------------------
def test_fpmac_unknown_input_format():
    raises({"pe": {"kind": "fpmac", "input_format": "fp4"}},
           rf"pe\.input_format: 'fp4' is unknown; allowed: {FP_FORMATS}")


def test_fpmac_unknown_acc_format():
    raises({"pe": {"kind": "fpmac", "acc_format": "fp64"}},
           rf"pe\.acc_format: 'fp64' is unknown; did you mean 'fp16'\? allowed: {FP_FORMATS}")


def test_fpmac_acc_narrower_than_input():
    raises({"pe": {"kind": "fpmac", "input_format": "fp16", "acc_format": "fp8_e5m2"}},
           r"pe\.acc_format: 'fp8_e5m2' is narrower than pe\.input_format 'fp16'; allowed: a "
           r"format at least as wide as the input format")


def test_fpmac_equal_width_accepted():
    cfg = config_from_dict({"pe": {"kind": "fpmac", "input_format": "bf16",
                                   "acc_format": "fp16"}})
    g = cfg.geometry
    assert [s.lane_bits for s in g.stores] == [16, 16, 16]


@pytest.mark.parametrize("bad", [1, 65536, -2])
def test_fpmac_chunk_out_of_range(bad):
    raises({"pe": {"kind": "fpmac", "chunk": bad}},
           rf"pe\.chunk: {bad} is out of range; allowed: .*2\.\.65535")


def test_fpmac_chunk_message_mentions_zero():
    raises({"pe": {"kind": "fpmac", "chunk": 1}},
           r"pe\.chunk: 1 is out of range; allowed: .*\b0\b.*2\.\.65535")


@pytest.mark.parametrize("bad", [0, 5])
def test_fpmac_stages_out_of_range(bad):
    raises({"pe": {"kind": "fpmac", "stages": bad}},
           rf"pe\.stages: {bad} is out of range; allowed: 1\.\.4")


def test_fpmac_chunked_needs_two_stages():
    raises({"pe": {"kind": "fpmac", "chunk": 64, "stages": 1}},
           r"pe\.stages: 1 is out of range; allowed: 2\.\.4")


def test_fpmac_widths_follow_formats():
    # fp8_e5m2: 1 + 5 + 2 bits; fp32: 1 + 8 + 23 bits.
    cfg = config_from_dict({"array": {"rows": 3, "cols": 5},
                            "pe": {"kind": "fpmac", "input_format": "fp8_e5m2",
                                   "acc_format": "fp32"}})
    g = cfg.geometry
    assert [s.lane_bits for s in g.stores] == [8, 8, 32]
    assert [s.word_bits for s in g.stores] == [3 * 8, 5 * 8, 5 * 32]


# -- cross-section ------------------------------------------------------------------------------
def test_output_word_too_wide():
    raises({"array": {"rows": 1, "cols": 64}, "pe": {"acc_bits": 64}},
           r"array\.cols/pe\.acc_bits: 64 lanes x 64 bits give 4096-bit words in scratchpad c; "
           r"allowed: at most 2048 bits per scratchpad word .*")
    raises({"array": {"rows": 1, "cols": 33}, "pe": {"acc_bits": 64}},
           r"array\.cols/pe\.acc_bits: 33 lanes x 64 bits give 2112-bit words in scratchpad c; .*")
    cfg = config_from_dict({"array": {"rows": 1, "cols": 64}, "pe": {"acc_bits": 32}})
    assert cfg.geometry.store("c").word_bits == 64 * 32 == 2048
    fp = config_from_dict({"array": {"rows": 1, "cols": 64},
                           "pe": {"kind": "fpmac", "acc_format": "fp32"}})
    assert fp.geometry.store("c").word_bits == 2048


# -- loading ------------------------------------------------------------------------------------
def test_preset_names_are_the_shipped_files():
    assert preset_names() == PRESETS
    assert "int8-8x8" in PRESETS


def _merged(raw):
    d = copy.deepcopy(DEFAULTS)
    # Each PE kind's defaults come from the kind itself (kinds gain keys as they grow).
    d["pe"] = PE_KINDS[raw.get("pe", {}).get("kind", "int")]().to_dict()
    for sec, values in raw.items():
        d[sec].update(values)
    d["core"]["clock_mhz"] = float(d["core"]["clock_mhz"])
    return d


SYSTOLIC_PRESET_FILES = [p for p in PRESET_FILES
                         if tomllib.loads(p.read_text())["array"].get("kind", "systolic")
                         == "systolic"]


@pytest.mark.parametrize("path", SYSTOLIC_PRESET_FILES, ids=lambda p: p.stem)
def test_preset_loads_with_derived_quantities(path):
    raw = tomllib.loads(path.read_text())
    cfg = load_config(path.stem)
    assert cfg.to_dict() == _merged(raw)
    assert cfg.source == f"preset:{path.stem}"
    rows, cols = raw["array"]["rows"], raw["array"]["cols"]
    if raw["pe"]["kind"] == "fpmac":
        # Widths of the named formats: 1 sign + exponent + mantissa bits.
        width = {"fp8_e4m3": 8, "fp16": 16, "dlfloat16": 16}
        a = b = width[raw["pe"]["input_format"]]
        acc = width[raw["pe"]["acc_format"]]
    elif raw["pe"].get("kind", "int") == "int":
        a, b, acc = raw["pe"]["a_bits"], raw["pe"]["b_bits"], raw["pe"]["acc_bits"]
    else:       # other kinds: their own layout (tested with the kind)
        lay = cfg.pe.layout()
        a, b, acc = lay.a_lane_bits, lay.b_lane_bits, cfg.pe.result_bits
    assert (cfg.rows, cfg.cols, cfg.pes) == (rows, cols, rows * cols)
    g = cfg.geometry
    for spad, lanes, bits, depth in (("a", rows, a, raw["memory"]["a_depth"]),
                                     ("b", cols, b, raw["memory"]["b_depth"]),
                                     ("c", cols, acc, raw["memory"]["c_depth"])):
        s = g.store(spad)
        assert (s.lanes, s.lane_bits, s.depth, s.result) == (lanes, bits, depth, spad == "c")
        assert s.word_bytes == -(-lanes * bits // 8)
    # Each preset starts with a one-line description.
    assert path.read_text().startswith("# ")


def test_word_bytes_round_up():
    cfg = config_from_dict({"array": {"rows": 3, "cols": 5},
                            "pe": {"a_bits": 3, "b_bits": 5, "acc_bits": 9}})
    assert [cfg.geometry.store(s).word_bytes for s in "abc"] == [2, 4, 6]


def test_default_is_int8_8x8():
    assert load_config(None) == load_config("int8-8x8")
    assert load_config(None).source == "preset:int8-8x8"


def test_toml_file_equals_preset(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text((PRESET_DIR / "icebreaker.toml").read_text())
    from_file, from_preset = load_config(p), load_config("icebreaker")
    assert from_file.source == str(p)
    assert from_file.to_dict() == from_preset.to_dict()
    assert from_file.digest() == from_preset.digest()
    assert dataclasses.replace(from_file, source=from_preset.source) == from_preset
    assert load_config(str(p)).to_dict() == from_preset.to_dict()


def test_toml_file_equals_preset_with_eq(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text((PRESET_DIR / "icebreaker.toml").read_text())
    assert load_config(p) == load_config("icebreaker")


def test_invalid_toml(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[array]\nrows = \n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert re.fullmatch(rf"config: {re.escape(repr(str(p)))} is not valid TOML: .+",
                        str(exc.value))
    assert "\n" not in str(exc.value)


def test_toml_bad_key_from_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[array]\nrowz = 4\n")
    with pytest.raises(ConfigError, match=r"^array\.rowz: unknown key; did you mean 'rows'\? "
                                          r"allowed: 'kind', 'rows', 'cols', 'dataflow', 'chain'$"):
        load_config(p)


def test_missing_path(tmp_path):
    p = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert re.fullmatch(rf"config: {re.escape(repr(str(p)))} is not a readable file; allowed: a "
                        rf"TOML path or a preset name \({PRESETS_QUOTED}\)", str(exc.value))


def test_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match=r"^config: .* is neither a file nor a preset; "
                                          r"allowed presets: .*'icebreaker'"):
        load_config(tmp_path)


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError) as exc:
        load_config("int8-16x16")
    assert re.fullmatch(rf"config: 'int8-16x16' is neither a file nor a preset; allowed presets: "
                        rf"{PRESETS_QUOTED}", str(exc.value))


def test_preset_not_shadowed_by_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "icebreaker").mkdir()
    assert load_config("icebreaker").core.name == "tessera_icebreaker"


# -- frozen, round trip, digest -----------------------------------------------------------------
def test_configs_are_frozen():
    cfg = load_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.array.rows = 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.pe = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.core.boards = ()
    assert isinstance(cfg.core.boards, tuple)
    assert hash(cfg) == hash(load_config(None))


FPMAC = {"array": {"rows": 2, "cols": 3},
         "pe": {"kind": "fpmac", "input_format": "fp8_e5m2", "acc_format": "bf16", "chunk": 16,
                "stages": 3}}


@pytest.mark.parametrize("spec", PRESETS + ["fpmac"])
def test_to_dict_round_trip(spec):
    cfg = config_from_dict(FPMAC) if spec == "fpmac" else load_config(spec)
    d = cfg.to_dict()
    json.dumps(d)  # plain data only
    back = config_from_dict(d, source=cfg.source)
    assert back == cfg
    assert back.to_dict() == d


def test_to_dict_keeps_only_keys_of_the_pe_kind():
    assert set(config_from_dict({}).to_dict()["pe"]) == {"kind", "a_bits", "b_bits", "acc_bits"}
    d = config_from_dict(FPMAC).to_dict()["pe"]
    assert set(d) == {"kind", *PE_KINDS["fpmac"].keys()}
    assert {k: d[k] for k in ("kind", "input_format", "acc_format", "chunk", "stages",
                              "combine_stages")} == {
        "kind": "fpmac", "input_format": "fp8_e5m2", "acc_format": "bf16", "chunk": 16,
        "stages": 3, "combine_stages": 2}


def test_digest_is_stable():
    # The default preset written out by hand: its digest is the sha256 of the sorted JSON.
    d = _merged({"core": {"name": "tessera_int8_8x8", "boards": ["ulx3s-85f"]},
                 "host": {"baud": 1_200_000}})
    text = json.dumps(d, sort_keys=True)
    assert load_config(None).digest() == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert re.fullmatch(r"[0-9a-f]{16}", load_config(None).digest())


def test_digest_ignores_source():
    assert config_from_dict({}, source="a").digest() == config_from_dict({}, source="b").digest()


@pytest.mark.parametrize("change", [
    {"core": {"name": "other"}}, {"core": {"clock_mhz": 26.0}},
    {"core": {"boards": ["ulx3s-85f"]}},
    {"array": {"rows": 7}}, {"array": {"cols": 7}},
    {"pe": {"a_bits": 7}}, {"pe": {"b_bits": 7}}, {"pe": {"acc_bits": 33}},
    {"pe": {"kind": "fpmac"}},
    {"memory": {"a_depth": 512}}, {"memory": {"b_depth": 512}}, {"memory": {"c_depth": 512}},
    {"host": {"interface": "uart"}}, {"host": {"baud": 9600}},
], ids=lambda c: ".".join([*c, *next(iter(c.values()))]))
def test_digest_sensitive_to_every_field(change):
    assert config_from_dict(change).digest() != config_from_dict({}).digest()


@pytest.mark.parametrize("key, value", [("input_format", "fp8_e4m3"), ("acc_format", "fp32"),
                                        ("chunk", 8), ("stages", 4)])
def test_digest_sensitive_to_fpmac_fields(key, value):
    base = config_from_dict(FPMAC)
    data = copy.deepcopy(FPMAC)
    data["pe"][key] = value
    assert config_from_dict(data).digest() != base.digest()


def test_default_dataclass_matches_documented_defaults():
    assert CoreConfig().to_dict() == DEFAULTS


def test_tree_outputs_zero_is_refused():
    """``array.outputs`` is 1..32 for the dense tree engine; 0 is not 'left out' (issue 20)."""
    import pytest as _pytest
    from tessera.generators.config import config_from_dict, load_config
    from tessera.generators.kinds.base import ConfigError
    d = load_config("ternary").to_dict()
    d["array"]["outputs"] = 0
    with _pytest.raises(ConfigError, match=r"array.outputs: 0 is out of range; allowed: 1..32"):
        config_from_dict(d)
    d = load_config("ternary-rle").to_dict()
    d["array"]["outputs"] = 0
    with _pytest.raises(ConfigError, match=r"array.outputs: 0 is not used by encoding 'rle'"):
        config_from_dict(d)
    assert load_config("ternary").array.outputs == 2
