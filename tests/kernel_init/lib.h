/* lib.h: the little world of the /init programs that tests/test_kernel_boot.py
 * puts into an initramfs for the real Linux 2.6.23 lguest Guest.
 *
 * Why no libc: today's static glibc refuses kernels older than 3.2 and its
 * start-up needs AT_RANDOM (2.6.29+).  So these programs are freestanding
 * i386 code that talks to the kernel only through `int $0x80` with the i386
 * system-call numbers, which have not changed since 2.6.23.  Nothing here may
 * rely on a feature newer than 2.6.23 (no vDSO, no AT_RANDOM, no TLS, no
 * set_robust_list), and nothing may divide 64-bit numbers (there is no libgcc
 * helper for it).
 *
 * Build variants:
 *   default        the Guest's /init: ends with reboot(LINUX_REBOOT_CMD_POWER_OFF).
 *   -DNATIVE_TEST  a variant that may run on the host to test the code itself:
 *                  the reboot system call is not even compiled in (power_off()
 *                  becomes exit(0)), and paths point at the build directory.
 */
#ifndef KERNEL_INIT_LIB_H
#define KERNEL_INIT_LIB_H

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef unsigned int size_t;
typedef int ssize_t;

#define NULL ((void *)0)

/* i386 system-call numbers (arch/i386/kernel/syscall_table.S of 2.6.23). */
#define SYS_exit            1
#define SYS_fork            2
#define SYS_read            3
#define SYS_write           4
#define SYS_open            5
#define SYS_close           6
#define SYS_execve         11
#define SYS_mknod          14
#define SYS_lseek          19
#define SYS_sync           36
#define SYS_mount          21
#define SYS_getpid         20
#define SYS_alarm          27
#define SYS_dup            41
#define SYS_pipe           42
#define SYS_getppid        64
#define SYS_gettimeofday   78
#define SYS_reboot         88
#define SYS_old_mmap       90   /* one argument: a pointer to the six */
#define SYS_munmap         91
#define SYS_wait4         114
#define SYS_uname         122
#define SYS_mprotect      125
#define SYS_sched_yield   158
#define SYS_nanosleep     162
#define SYS_rt_sigreturn  173
#define SYS_rt_sigaction  174
#define SYS_mmap2         192   /* offset in pages */
#define SYS_clock_gettime 265

/* Raw system call (start.S): returns the kernel's value, -4095..-1 = -errno. */
long raw_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6);
#define sys0(n)                 raw_syscall((n), 0, 0, 0, 0, 0, 0)
#define sys1(n, a)              raw_syscall((n), (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b)           raw_syscall((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c)        raw_syscall((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d)     raw_syscall((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define sys6(n, a, b, c, d, e, f) \
	raw_syscall((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

#define EPERM   1
#define ENOENT  2
#define EINTR   4
#define EBADF   9
#define ENOMEM 12

#define O_RDONLY 0
#define O_RDWR   2

#define PROT_NONE  0
#define PROT_READ  1
#define PROT_WRITE 2
#define PROT_EXEC  4
#define MAP_SHARED    0x01
#define MAP_PRIVATE   0x02
#define MAP_ANONYMOUS 0x20
#define PAGE_SIZE 4096u

#define SIGSEGV 11
#define SIGALRM 14
#define SA_SIGINFO  0x00000004
#define SA_RESTORER 0x04000000
#define SEGV_MAPERR 1   /* si_code: no mapping at the address */
#define SEGV_ACCERR 2   /* si_code: a mapping, but not with that access */

#define CLOCK_MONOTONIC 1

#define S_IFCHR 0020000

/* wait4 status word (include/linux/wait.h / bits/waitstatus.h). */
#define W_EXITED(st)   (((st) & 0x7f) == 0)
#define W_EXITCODE(st) (((st) >> 8) & 0xff)
#define W_SIGNALED(st) (((st) & 0x7f) != 0 && ((st) & 0x7f) != 0x7f)
#define W_TERMSIG(st)  ((st) & 0x7f)

struct timespec { long tv_sec; long tv_nsec; };
struct timeval { long tv_sec; long tv_usec; };

/* The kernel's struct sigaction for rt_sigaction on i386 (not glibc's). */
struct k_sigaction {
	void *handler;
	unsigned long flags;
	void (*restorer)(void);
	unsigned long mask[2];          /* 64 signals: sigsetsize 8 */
};

/* The start of siginfo_t: for SIGSEGV the union begins with si_addr. */
struct k_siginfo {
	int si_signo;
	int si_errno;
	int si_code;
	void *si_addr;
	int pad[28];
};

/* struct ucontext on i386: uc_flags, uc_link, uc_stack (3 words), then
 * struct sigcontext, whose eip is word 14 and eax word 11 (asm-i386/sigcontext.h). */
struct k_ucontext {
	unsigned long uc_flags;
	void *uc_link;
	unsigned long uc_stack[3];
	unsigned long mc[22];           /* struct sigcontext, as words */
};
#define MC_EAX 11
#define MC_EIP 14

struct k_utsname { char s[6][65]; };   /* sysname, nodename, release, ... */

/* Wrappers (lib.c). */
void exit(int code) __attribute__((noreturn));
ssize_t write(int fd, const void *buf, size_t n);
ssize_t read(int fd, void *buf, size_t n);
int fork(void);
int getpid(void);
int getppid(void);
int wait4(int pid, int *status, int options, void *rusage);
int pipe(int fds[2]);
int sched_yield(void);
int nanosleep_ns(long sec, long nsec);
void *mmap2(void *addr, size_t len, int prot, int flags, int fd, long pgoff);
void *old_mmap(void *addr, size_t len, int prot, int flags, int fd, long off);
int munmap(void *addr, size_t len);
int mprotect(void *addr, size_t len, int prot);
int execve(const char *path, char *const argv[], char *const envp[]);
int set_sigsegv_handler(void (*fn)(int, struct k_siginfo *, void *));
int set_handler(int sig, void (*fn)(int));   /* no SA_RESTART: a slow call gets -EINTR */
int is_err(long v);                 /* a raw return value in -4095..-1? */
int ensure_console(void);          /* 1 if the kernel opened /dev/console for us */
void power_off(void) __attribute__((noreturn));
void restart(void) __attribute__((noreturn));   /* reboot(RESTART): 3.2's second outcome */

/* Text (lib.c): say() formats one line into a buffer and writes it with one
 * write(), so a marker line never mixes with another process's output.
 * Formats: %s %c %d %u %x, with an optional zero-pad width (%08x). */
void say(const char *fmt, ...);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int parse_uint(const char *s, u32 *out);
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* Each check runs in a child so that a crash cannot kill init (which would
 * panic the kernel): run_check forks, runs fn in the child (fn returns 0 for
 * ok, after printing its own "ok:"/"FAIL:" line) and turns an abnormal end
 * of the child into a FAIL line naming the check. Returns 0 if ok. */
int run_check(const char *name, int (*fn)(void));

/* start.S */
void restore_rt(void);              /* sa_restorer: rt_sigreturn */
u32 probe_read(const volatile u32 *p);   /* one load, at probe_load */
extern char probe_load[], probe_done[];

#endif
