"""The gdb remote serial protocol stub: real gdb and lldb debug a Guest.

packets.py   framing, checksums, escaping (no knowledge of the machine)
regs.py      the 308-byte i386 core+SSE register block
target.py    the target description gdb reads with qXfer
monitor.py   `monitor ...` commands (text and JSON forms)
handlers.py  one handler per packet, one place that builds stop replies
server.py    socket and stdio transports, the run thread, Ctrl-C
"""
