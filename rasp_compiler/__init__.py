"""rasp_compiler: RASP programs -> exact transformer weights in PyTorch."""

__version__ = "0.1.0"
