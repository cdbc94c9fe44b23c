"""The debugger core: run control (debugger), reverse execution (reverse) and
machine snapshots (snapshot), shared by every front end."""
