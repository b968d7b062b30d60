/* Bench target: COUNT pipes, each holding a few bytes of its own in the buffer, says "READY", sleeps in
 * pause(). On SIGTERM it reads every pipe back: "PASS" and exit 0 when each holds exactly its bytes (nothing
 * lost, nothing duplicated) and still carries new data, "FAIL: ..." and exit 1 otherwise.
 * Usage: many_pipes COUNT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static volatile sig_atomic_t terminate;

static void on_sigterm(int sig)
{
	(void)sig;
	terminate = 1;
}

static int fail(const char *what, int i)
{
	printf("FAIL: pipe %d: %s (%s)\n", i, what, strerror(errno));
	return 1;
}

/* The bytes pipe i holds: "pipe <i>:" and then i % 50 letters. */
static int message(int i, char *buf)
{
	int n = sprintf(buf, "pipe %d:", i);
	for (int k = 0; k < i % 50; k++)
		buf[n++] = 'a' + (i + k) % 26;
	return n;
}

int main(int argc, char **argv)
{
	int count = argc > 1 ? atoi(argv[1]) : 1000;
	struct rlimit files;
	if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < (rlim_t)(2 * count + 16)) {
		files.rlim_cur = files.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &files))
			return fail("setrlimit(RLIMIT_NOFILE)", -1);
	}
	int (*fds)[2] = calloc(count, sizeof(*fds));
	char buf[128], got[128];
	for (int i = 0; i < count; i++) {
		if (pipe2(fds[i], O_NONBLOCK))
			return fail("pipe2", i);
		int n = message(i, buf);
		if (write(fds[i][1], buf, n) != n)
			return fail("write", i);
	}
	signal(SIGTERM, on_sigterm);
	printf("READY %d pipes\n", count);
	fflush(stdout);
	while (!terminate)
		pause();
	for (int i = 0; i < count; i++) {
		int n = message(i, buf);
		if (read(fds[i][0], got, sizeof(got)) != n || memcmp(buf, got, n))
			return fail("wrong bytes in the buffer", i);
		if (read(fds[i][0], got, 1) != -1 || errno != EAGAIN)
			return fail("more bytes than written", i);
		if (write(fds[i][1], "x", 1) != 1 || read(fds[i][0], got, 1) != 1 || got[0] != 'x')
			return fail("no longer carries data", i);
	}
	printf("PASS\n");
	return 0;
}
