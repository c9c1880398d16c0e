"""Host command protocol: opcodes, error codes and field layouts (pure Python, no HDL).

Shared by the command decoder (HDL), the golden core model and the host driver, so the three
cannot disagree. The full description is docs/commands.md.
"""

__all__ = ["VERSION", "Op", "Err", "ARG_BYTES", "ERROR_TEXT", "SPAD_IDS", "INFO_BYTES",
           "STATUS_BYTES", "FLAG_ACCUMULATE", "PE_CODES"]

#: Version of the command set, reported by INFO and echoed in the manifest.
VERSION = 1


class Op:
    INFO = 0x01
    STATUS = 0x02
    WRITE = 0x03
    READ = 0x04
    RUN = 0x05


class Err:
    OK = 0
    OPCODE = 1     # unknown opcode
    SPAD = 2       # scratchpad id is not 0 (A), 1 (B) or 2 (C)
    RANGE = 3      # READ/WRITE region runs past the end of the scratchpad
    ARG = 4        # zero count/dimension or unknown flag bits
    BUSY = 5       # a RUN is in progress and the command needs the array or scratchpad C
    TILE = 6       # a RUN's operands or results do not fit the scratchpads


ERROR_TEXT = {
    Err.OPCODE: "unknown opcode",
    Err.SPAD: "unknown scratchpad id (allowed: 0=A inputs, 1=B weights, 2=C outputs)",
    Err.RANGE: "region runs past the end of the scratchpad",
    Err.ARG: "zero count or dimension, or unknown flag bits",
    Err.BUSY: "core is busy running a layer",
    Err.TILE: "the GEMM tile does not fit the scratchpads",
}

#: Argument bytes that follow each opcode (WRITE is then followed by its data bytes).
ARG_BYTES = {Op.INFO: 0, Op.STATUS: 0, Op.WRITE: 5, Op.READ: 5, Op.RUN: 13}

SPAD_IDS = {"a": 0, "b": 1, "c": 2}

#: RUN flag bits.
FLAG_ACCUMULATE = 0x01

#: Response lengths including the leading status byte.
INFO_BYTES = 17
STATUS_BYTES = 7

#: PE kind codes reported by INFO.
PE_CODES = {"int": 1, "fpmac": 2}
