/* dirtying_memory MIB PERMILLE: MIB MiB of anonymous memory, every page written once; then PERMILLE/1000 of
 * its pages are rewritten each second (random pages, in 100 slices a second), each with a new version
 * number. Prints "READY pid=PID" and, after SIGTERM, checks every page against its version: "PASS" or
 * "FAIL ...". The process the incremental pre-dump benchmark checkpoints. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t word(size_t page, uint32_t version)
{
	uint64_t x = ((uint64_t)page << 32) ^ version;
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15ull;
	return x | 1;
}

int main(int argc, char **argv)
{
	size_t size = (size_t)atol(argc > 1 ? argv[1] : "1024") << 20;
	long permille = argc > 2 ? atol(argv[2]) : 10;
	size_t pages = size / PAGE;
	uint64_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t *version = calloc(pages, sizeof(uint32_t));
	if (mem == MAP_FAILED || !version) {
		printf("FAIL allocation\n");
		return 1;
	}
	for (size_t p = 0; p < pages; p++)
		for (size_t i = 0; i < PAGE / 8; i++)
			mem[p * PAGE / 8 + i] = word(p, 0) + i;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	printf("READY pid=%d pages=%zu per_second=%zu\n", getpid(), pages, pages * (size_t)permille / 1000);
	fflush(stdout);

	size_t per_slice = pages * (size_t)permille / 1000 / 100;
	uint64_t x = 88172645463325252ull;
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	while (!stop) {
		for (size_t k = 0; k < per_slice; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			size_t p = x % pages;
			version[p]++;
			for (size_t i = 0; i < PAGE / 8; i++)
				mem[p * PAGE / 8 + i] = word(p, version[p]) + i;
		}
		next.tv_nsec += 10 * 1000 * 1000;
		if (next.tv_nsec >= 1000000000) {
			next.tv_nsec -= 1000000000;
			next.tv_sec++;
		}
		/* After a freeze (a dump) the schedule restarts from now: no burst of missed slices. */
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec))
			next = now;
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	for (size_t p = 0; p < pages; p++)
		for (size_t i = 0; i < PAGE / 8; i++)
			if (mem[p * PAGE / 8 + i] != word(p, version[p]) + i) {
				printf("FAIL page %zu word %zu\n", p, i);
				return 1;
			}
	printf("PASS\n");
	return 0;
}
