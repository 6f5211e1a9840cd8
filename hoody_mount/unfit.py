"""The error of a library that no longer has what hoody-mount uses of it."""

from __future__ import annotations


class UnfitLibrary(RuntimeError):
    """A library lacks private names hoody-mount relies on (after an upgrade past the
    version ``constraints.txt`` pins); the message names it, its version and the names."""
