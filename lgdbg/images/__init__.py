"""The bundled example guests (built from examples/, shipped as package data)."""

import os

from ..errors import UsageError

HERE = os.path.dirname(os.path.abspath(__file__))
# The default image of every command: the iret example shows the most (patch
# templates, lguest_iret and its noirq window, timer interrupts, HALT).
DEFAULT = "iret"
NAMES = ("hello", "timer", "iret", "faults")


def path_of(name):
    return os.path.join(HERE, name + ".elf")


def resolve(image):
    """An image argument: None (the default), a bundled name, or a path."""
    if image is None:
        return path_of(DEFAULT)
    if image in NAMES and not os.path.exists(image):
        return path_of(image)
    if not os.path.exists(image):
        raise UsageError("no such image: %s (bundled examples: %s)" % (image, ", ".join(NAMES)))
    return image
