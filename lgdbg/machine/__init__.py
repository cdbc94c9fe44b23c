"""The emulated lguest machine (CPU, Host, Launcher, clock, events)."""

from .machine import Machine, Stop  # noqa: F401
