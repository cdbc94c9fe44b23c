/* lib.c: system-call wrappers, line output and the check runner shared by the
 * /init programs (see lib.h for why there is no libc). */
#include "lib.h"

#define SYS_mkdir 39

int main(int argc, char **argv, char **envp);

/* Called by _start with the initial stack pointer: argc, argv[], envp[]. */
void start_c(long *sp) __attribute__((noreturn));
void start_c(long *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;
	exit(main(argc, argv, envp));
}

int is_err(long v) { return (unsigned long)v >= (unsigned long)-4095; }

void exit(int code)
{
	for (;;)
		sys1(SYS_exit, code);
}

ssize_t write(int fd, const void *buf, size_t n) { return sys3(SYS_write, fd, buf, n); }
ssize_t read(int fd, void *buf, size_t n) { return sys3(SYS_read, fd, buf, n); }
int fork(void) { return sys0(SYS_fork); }
int getpid(void) { return sys0(SYS_getpid); }
int getppid(void) { return sys0(SYS_getppid); }
int pipe(int fds[2]) { return sys1(SYS_pipe, fds); }
int sched_yield(void) { return sys0(SYS_sched_yield); }
int munmap(void *addr, size_t len) { return sys2(SYS_munmap, addr, len); }
int mprotect(void *addr, size_t len, int prot) { return sys3(SYS_mprotect, addr, len, prot); }

int wait4(int pid, int *status, int options, void *rusage)
{
	return sys4(SYS_wait4, pid, status, options, rusage);
}

int execve(const char *path, char *const argv[], char *const envp[])
{
	return sys3(SYS_execve, path, argv, envp);
}

int nanosleep_ns(long sec, long nsec)
{
	struct timespec req = { sec, nsec }, rem;
	return sys2(SYS_nanosleep, &req, &rem);
}

/* mmap2: six arguments, the offset in 4096-byte pages. */
void *mmap2(void *addr, size_t len, int prot, int flags, int fd, long pgoff)
{
	return (void *)sys6(SYS_mmap2, addr, len, prot, flags, fd, pgoff);
}

/* The old i386 mmap (syscall 90) takes one pointer to its six arguments. */
void *old_mmap(void *addr, size_t len, int prot, int flags, int fd, long off)
{
	long args[6] = { (long)addr, (long)len, prot, flags, fd, off };
	return (void *)sys1(SYS_old_mmap, args);
}

/* Always SA_SIGINFO: only then does i386 build the rt signal frame that
 * restore_rt's rt_sigreturn expects (a plain handler gets the old frame,
 * which needs sigreturn, 119, instead). */
static int sigaction_rt(int sig, void *fn)
{
	struct k_sigaction act;
	memset(&act, 0, sizeof act);
	act.handler = fn;
	act.flags = SA_SIGINFO | SA_RESTORER;
	act.restorer = restore_rt;
	return sys4(SYS_rt_sigaction, sig, &act, NULL, sizeof act.mask);
}

/* Install fn as an SA_SIGINFO handler for SIGSEGV, with our own restorer. */
int set_sigsegv_handler(void (*fn)(int, struct k_siginfo *, void *))
{
	return sigaction_rt(SIGSEGV, (void *)fn);
}

int set_handler(int sig, void (*fn)(int))
{
	return sigaction_rt(sig, (void *)fn);   /* fn ignores the extra arguments */
}

/* The kernel gives init /dev/console as fds 0, 1 and 2 only if the initramfs
 * holds a /dev/console node; otherwise init has no descriptors at all and
 * every line below would vanish.  Make the node ourselves then and say so in
 * a FAIL line, so that a broken initrd shows up as words, not as silence.
 * Returns 1 if the kernel had opened the console. */
int ensure_console(void)
{
	if (write(1, "", 0) != -EBADF)
		return 1;
	sys2(SYS_mkdir, "/dev", 0755);
	sys3(SYS_mknod, "/dev/console", S_IFCHR | 0600, (5 << 8) | 1);
	if (sys3(SYS_open, "/dev/console", O_RDWR, 0) == 0) {
		sys1(SYS_dup, 0);
		sys1(SYS_dup, 0);
	}
	say("FAIL: init: the kernel did not open /dev/console for init (no dev/console in the initrd?)");
	return 0;
}

/* reboot(LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, cmd): the lguest Guest asks
 * the Host to end the run.  The host test build must never do that: the
 * reboot call is not compiled in at all there. */
static void reboot(unsigned long cmd, const char *what) __attribute__((noreturn));
static void reboot(unsigned long cmd, const char *what)
{
#ifdef NATIVE_TEST
	(void)cmd;
	say("init: native test build: exit(0) instead of reboot(%s)", what);
	exit(0);
#else
	long r = sys4(SYS_reboot, 0xfee1deadu, 672274793, cmd, 0);
	say("FAIL: init: reboot(%s) returned %d", what, (int)r);
	exit(1);        /* init exiting panics the kernel: the run cannot end with 0 */
#endif
}

/* POWER_OFF: pm_power_off makes the Host end the run with "Power down".  No
 * sync(): there is nothing to write back. */
void power_off(void) { reboot(0x4321fedcu, "POWER_OFF"); }

/* RESTART: the 3.2 Guest's machine_ops.restart is lguest_restart, SHUTDOWN
 * with LGUEST_SHUTDOWN_RESTART. */
void restart(void) { reboot(0x01234567u, "RESTART"); }

/* ---- text ---------------------------------------------------------------- */

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return (u8)*a - (u8)*b;
}

/* Decimal string to u32; returns 0 on success, -1 if it is not a number. */
int parse_uint(const char *s, u32 *out)
{
	u32 v = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (u32)(*s - '0');
	}
	*out = v;
	return 0;
}

void *memset(void *d, int c, size_t n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const u8 *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

struct outbuf { char b[512]; size_t n; };

static void put(struct outbuf *o, char c)
{
	if (o->n < sizeof o->b - 1)
		o->b[o->n++] = c;
}

static void put_uint(struct outbuf *o, u32 v, u32 base, int width, char pad)
{
	char tmp[12];
	int n = 0;
	do {                             /* 32-bit division only */
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (width-- > n)
		put(o, pad);
	while (n)
		put(o, tmp[--n]);
}

void say(const char *fmt, ...)
{
	struct outbuf o;
	__builtin_va_list ap;
	o.n = 0;
	__builtin_va_start(ap, fmt);
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		int width = 0;
		if (*fmt == '0')
			pad = '0', fmt++;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		switch (*fmt) {
		case 's': {
			const char *s = __builtin_va_arg(ap, const char *);
			for (s = s ? s : "(null)"; *s; s++)
				put(&o, *s);
			break;
		}
		case 'c':
			put(&o, (char)__builtin_va_arg(ap, int));
			break;
		case 'd': {
			int v = __builtin_va_arg(ap, int);
			if (v < 0) {
				put(&o, '-');
				put_uint(&o, -(u32)v, 10, width, pad);
			} else {
				put_uint(&o, (u32)v, 10, width, pad);
			}
			break;
		}
		case 'u':
			put_uint(&o, __builtin_va_arg(ap, u32), 10, width, pad);
			break;
		case 'x':
			put_uint(&o, __builtin_va_arg(ap, u32), 16, width, pad);
			break;
		case '%':
			put(&o, '%');
			break;
		default:           /* unknown format: show it, do not guess */
			put(&o, '%');
			put(&o, *fmt);
			break;
		}
		if (!*fmt)
			break;
	}
	__builtin_va_end(ap);
	o.b[o.n++] = '\n';
	write(1, o.b, o.n);
}

/* ---- checks -------------------------------------------------------------- */

int run_check(const char *name, int (*fn)(void))
{
	int status = 0;
	int pid = fork();
	if (pid < 0) {
		say("FAIL: %s: fork returned %d", name, pid);
		return 1;
	}
	if (pid == 0)
		exit(fn() ? 1 : 0);
	int r = wait4(pid, &status, 0, NULL);
	if (r != pid) {
		say("FAIL: %s: wait4 returned %d, expected pid %d", name, r, pid);
		return 1;
	}
	if (W_SIGNALED(status)) {
		say("FAIL: %s: the check's process was killed by signal %d", name,
		    W_TERMSIG(status));
		return 1;
	}
	if (!W_EXITED(status) || W_EXITCODE(status) != 0) {
		/* the check printed its own FAIL line; this says it ended */
		say("FAIL: %s: the check's process ended with wait4 status 0x%x", name,
		    (u32)status);
		return 1;
	}
	return 0;
}
