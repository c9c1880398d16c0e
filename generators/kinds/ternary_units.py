"""`tessera unit` entries of the ``ternary`` PE kind: the adder tree and a whole output channel."""

__all__ = ["ternary_units"]


def _formats(*, act_bits, scale_bits=None, acc_bits=None, **_):
    out = {"a": {"kind": "uint", "bits": act_bits, "signed": False},
           "w": {"kind": "ternary", "bits": 2,
                 "codes": {"0b00": "0", "0b01": "+1 (Wp)", "0b11": "-1 (Wn)",
                           "0b10": "unused (counts as 0)"}}}
    if scale_bits is not None:
        out["scale"] = {"kind": "uint", "bits": scale_bits, "signed": False}
        out["acc"] = {"kind": "int", "bits": acc_bits, "signed": True, "overflow": "wrap",
                      "value": "wp*S_p - wn*S_n"}
    return out


def _tree(*, inputs, act_bits):
    from tessera.hdl.arith.ternary_tree import TernaryTree
    return TernaryTree(inputs=inputs, act_bits=act_bits)


def _dot(*, inputs, act_bits, scale_bits, acc_bits):
    from tessera.hdl.arith.ternary_tree import TernaryDot
    return TernaryDot(inputs=inputs, act_bits=act_bits, scale_bits=scale_bits,
                      acc_bits=acc_bits)


def ternary_units():
    from tessera.generators.kinds.unitspec import Option, Unit
    return (
        Unit(name="ternary_tree",
             summary="ternary reduce-and-scale output channel: gated adder trees (no "
                     "multiplier), S_p/S_n accumulators, wp*S_p - wn*S_n (two multiplies)",
             options=(Option("inputs", int, 16, "activations per cycle (1..256)"),
                      Option("act_bits", int, 8, "unsigned activation width (1..16)"),
                      Option("scale_bits", int, 8, "unsigned scale width (2..32)"),
                      Option("acc_bits", int, 32, "result width (8..64)")),
             build=_dot, formats=_formats),
        Unit(name="ternary_adder_tree",
             summary="the two gated, pipelined adder trees alone (S_p and S_n of one word)",
             options=(Option("inputs", int, 16, "activations per cycle (1..256)"),
                      Option("act_bits", int, 8, "unsigned activation width (1..16)")),
             build=_tree, formats=_formats),
    )
