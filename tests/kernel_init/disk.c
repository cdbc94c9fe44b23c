/* disk.c: /init for the 3.2 Guest's virtio disk tests.
 *
 * With the root filesystem on the disk (root=/dev/vda), it reads /seed.txt,
 * which the test put in the ext2 image, and writes /from-guest.txt with a
 * line that quotes it, syncs, and then, as the environment asks
 * ("disk_end=restart" or power off by default), ends the run.  The test
 * reads the file back from the image file afterwards. */
#include "lib.h"

#define O_WRONLY 01
#define O_CREAT  0100
#define O_TRUNC  01000

static const char *env(char **envp, const char *key)
{
	size_t n = strlen(key);
	for (; envp && *envp; envp++)
		if (!memcmp(*envp, key, n) && (*envp)[n] == '=')
			return *envp + n + 1;
	return 0;
}

int main(int argc, char **argv, char **envp)
{
	char seed[128], line[256];
	(void)argc, (void)argv;
	ensure_console();
	const char *end = env(envp, "disk_end");
	if (end && !strcmp(end, "restart")) {
		say("disk: asking for a restart");
		restart();
	}
	long fd = sys3(SYS_open, "/seed.txt", 0, 0);
	long n = is_err(fd) ? fd : read((int)fd, seed, sizeof seed - 1);
	if (is_err(fd) || n <= 0) {
		say("FAIL: disk: cannot read /seed.txt (%d)", (int)n);
		power_off();
	}
	seed[n] = 0;
	if (seed[n - 1] == '\n')
		seed[n - 1] = 0;
	sys1(SYS_close, fd);
	say("ok: disk: read /seed.txt: %s", seed);
	size_t len = 0;
	const char *parts[] = { "written by the lguest Guest, after reading: ", seed, "\n" };
	for (unsigned i = 0; i < 3; i++) {
		size_t k = strlen(parts[i]);
		memcpy(line + len, parts[i], k);
		len += k;
	}
	fd = sys3(SYS_open, "/from-guest.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (is_err(fd) || write((int)fd, line, len) != (ssize_t)len) {
		say("FAIL: disk: cannot write /from-guest.txt (%d)", (int)fd);
		power_off();
	}
	sys1(SYS_close, fd);
	sys0(SYS_sync);
	/* Remount / read-only (MS_REMOUNT | MS_RDONLY): ext2 writes its clean
	 * state, so the image passes e2fsck after the power-off. */
	long r = sys6(SYS_mount, 0, "/", 0, 32 | 1, 0, 0);
	say("ok: disk: wrote /from-guest.txt (%u bytes), synced, remounted read-only (%d)",
	    (unsigned)len, (int)r);
	power_off();
}
