/* bptest.c: /init for the breakpoint tests (tests/test_kernel_debug.py).
 *
 * It calls twice() at its own address, then maps the page of /init's file
 * that holds twice() a second time, at another address, and calls it there
 * too.  Both mappings show the same physical page (the page cache's), so a
 * debugger that set its breakpoint by writing an int3 into that page would
 * stop the second call as well; one that works by virtual address, as
 * QEMU's stub and lgdbg do, stops only the first. */
#include "lib.h"

struct elf_header { unsigned char ident[16]; unsigned short type, machine; u32 version, entry,
	phoff, shoff, flags; unsigned short ehsize, phentsize, phnum, shentsize, shnum, shstrndx; };
struct program_header { u32 type, offset, vaddr, paddr, filesz, memsz, flags, align; };

/* A leaf with no absolute reference: it runs the same from any address. */
__attribute__((noinline)) int twice(int x)
{
	return x + x;
}

/* Where the second mapping put twice(); the test reads it. */
volatile u32 alias_addr;

/* A place for the test's second breakpoint, after both calls. */
__attribute__((noinline)) void both_done(void)
{
	__asm__ volatile("" ::: "memory");
}

/* The file offset of twice(): from /init's own program headers. */
static long file_offset_of(int fd, u32 vaddr)
{
	struct elf_header eh;
	struct program_header ph;
	if (sys3(SYS_read, fd, &eh, sizeof eh) != (long)sizeof eh)
		return -1;
	for (unsigned i = 0; i < eh.phnum; i++) {
		if (sys3(SYS_lseek, fd, eh.phoff + i * eh.phentsize, 0) < 0 ||
		    sys3(SYS_read, fd, &ph, sizeof ph) != (long)sizeof ph)
			return -1;
		if (ph.type == 1 && ph.vaddr <= vaddr && vaddr < ph.vaddr + ph.filesz)
			return ph.offset + (vaddr - ph.vaddr);
	}
	return -1;
}

int main(int argc, char **argv, char **envp)
{
	(void)argc; (void)argv; (void)envp;
	ensure_console();
	say("bptest: twice(20) = %d at 0x%08x", twice(20), (u32)twice);
	int fd = sys3(SYS_open, "/init", O_RDONLY, 0);
	long off = fd < 0 ? -1 : file_offset_of(fd, (u32)twice);
	if (off < 0) {
		say("FAIL: bptest: cannot find twice() in /init's file");
		power_off();
	}
	char *page = mmap2(NULL, PAGE_SIZE, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, off / PAGE_SIZE);
	if ((long)page < 0 && (long)page > -4096) {
		say("FAIL: bptest: mmap2 of /init failed (%d)", (int)(long)page);
		power_off();
	}
	int (*other)(int) = (int (*)(int))(page + off % PAGE_SIZE);
	alias_addr = (u32)other;
	say("bptest: twice(21) = %d through the second mapping at 0x%08x", other(21), (u32)other);
	both_done();
	say("bptest: done");
	power_off();
}
