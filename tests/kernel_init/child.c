/* child.c: /bin/child, the program the selftest's "exec" check runs with
 * execve.  argv: /bin/child exec-test CODE PPID; envp: LGDBG_TEST=kernel-boot.
 * It checks what execve handed over (arguments, environment, and that it is
 * still the forked child of the process that asked) and exits with status
 * CODE, which the parent expects from wait4.  Anything wrong: status 90-93. */
#include "lib.h"

int main(int argc, char **argv, char **envp)
{
	u32 code, ppid;

	say("child: pid %d, ppid %d, argc %d, argv[1] %s, envp[0] %s", getpid(), getppid(), argc,
	    argc > 1 ? argv[1] : "(none)", envp[0] ? envp[0] : "(none)");
	if (argc != 4 || strcmp(argv[1], "exec-test") || parse_uint(argv[2], &code) ||
	    parse_uint(argv[3], &ppid) || code > 255) {
		say("FAIL: exec: the child got the wrong arguments");
		return 90;
	}
	if (!envp[0] || strcmp(envp[0], "LGDBG_TEST=kernel-boot") || envp[1]) {
		say("FAIL: exec: the child got the wrong environment");
		return 91;
	}
	if ((u32)getppid() != ppid) {
		say("FAIL: exec: the child's parent is %d, not %u", getppid(), ppid);
		return 92;
	}
	return (int)code;
}
