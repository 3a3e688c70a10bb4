"""Argument types shared by the ``mskwb`` sub-commands."""

from __future__ import annotations

import argparse

#: Largest TCP port number.
MAX_PORT = 65535


def port_number(text: str) -> int:
    """A TCP port number from the command line: an integer from 0 to 65535.

    Raises
    ------
    argparse.ArgumentTypeError
        For anything else; argparse prints it as a one-line usage error.
    """
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)") from None
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0 to {MAX_PORT})")
    return port
