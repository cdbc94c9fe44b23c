/* hello.c: the smallest /init: say who and where we are, then power off.
 * The boot test with this initrd shows the kernel reaches user space and the
 * run ends with reboot(POWER_OFF) -> status 0, before the selftest asks for
 * more. */
#include "lib.h"

int main(int argc, char **argv, char **envp)
{
	struct k_utsname u;
	(void)envp;
	int console = ensure_console();

	if (sys1(SYS_uname, &u)) {
		say("FAIL: hello: uname failed");
		power_off();
	}
	say("hello: /init running as pid %d, argv[0] %s, on %s %s, console %s", getpid(),
	    argc > 0 ? argv[0] : "(none)", u.s[0], u.s[2], console ? "opened by the kernel" : "missing");
	power_off();
}
