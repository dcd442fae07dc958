"""Allows `python -m nextsong`, the same as the `nextsong` console script."""

from nextsong.cli import main

main()
