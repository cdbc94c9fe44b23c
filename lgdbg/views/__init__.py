"""What lgdbg says, shared by every front end and by gdb_scripts/: Host state
as data (inspect), the words (render), page tables (pgtable_view), patch sites
(patches), the journey (journey), symbols and disassembly.  render, patches
and journey are stdlib only: gdb imports them."""
