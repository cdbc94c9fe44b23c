"""lgdbg: a gdb-integrated debugger for lguest guests."""

__version__ = "0.1.0"
