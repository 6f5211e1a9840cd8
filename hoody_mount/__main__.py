"""``python -m hoody_mount``."""

from .cli import main

main()
