/* spin.c: an /init that never ends, for measurements on a running kernel
 * (bench/gdb_speed.py --kernel): it says so, then spins in user mode while
 * the kernel's clock keeps interrupting it. */
#include "lib.h"

int main(int argc, char **argv, char **envp)
{
	(void)argc; (void)argv; (void)envp;
	ensure_console();
	say("spin: spinning for ever");
	for (;;)
		__asm__ volatile("" ::: "memory");
}
