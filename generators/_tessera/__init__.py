"""tessera: config-driven generator of verified DNN-inference accelerator cores.

The repository's folders are installed as subpackages: `tessera.hdl` (Amaranth components),
`tessera.sim` (golden models, host driver, simulator runners), `tessera.tb` (cocotb testbenches),
`tessera.fpga` (boards and bitstreams) and `tessera.generators` (config, kinds, CLI).
"""
