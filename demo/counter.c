/* The demo's process: counts up, one number every 0.2 s on stdout (a log file in the demo),
 * forever. After a checkpoint and a restore the count goes on from where it stopped: the number
 * lives only in this process's memory. */
#define _GNU_SOURCE
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
	close_range(3, ~0U, 0); /* whatever the shell left open is not the demo's */
	printf("counter pid %d\n", getpid());
	fflush(stdout);
	for (unsigned long n = 1;; n++) {
		printf("%lu\n", n);
		fflush(stdout);
		struct timespec pause = { .tv_sec = 0, .tv_nsec = 200 * 1000 * 1000 };
		while (nanosleep(&pause, &pause) != 0) /* interrupted (a checkpoint, say): sleep the rest */
			;
	}
}
