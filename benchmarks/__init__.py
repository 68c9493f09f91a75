"""The benchmark of rasp_compiler (``python benchmarks/run.py``); see run.py."""
