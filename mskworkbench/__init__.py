"""Headless front ends of MSK Workbench: the ``mskwb`` command line and the browser viewer."""

__version__ = "0.1.0"
