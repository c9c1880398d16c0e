"""Amaranth hardware: arithmetic units, arrays, memories, control and I/O."""
