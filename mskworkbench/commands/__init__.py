"""Sub-commands of ``mskwb``: one module each, every module exposing ``register(subparsers)``."""
