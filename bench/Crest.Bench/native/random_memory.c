/* Bench target: fills SIZE MiB of one private anonymous mapping with xorshift64 output, says
 * "READY", then sleeps in pause(). On SIGTERM it regenerates the sequence and compares: "PASS"
 * and exit 0 when every byte is intact (after a dump and restore), "FAIL: ..." and exit 1.
 * Usage: random_memory SIZE_MIB [SEED] */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile sig_atomic_t terminate;

static void on_sigterm(int sig)
{
	(void)sig;
	terminate = 1;
}

static uint64_t xorshift64(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

int main(int argc, char **argv)
{
	close_range(3, ~0U, 0); /* nothing the launcher leaked */
	if (argc < 2) {
		fprintf(stderr, "usage: %s SIZE_MIB [SEED]\n", argv[0]);
		return 2;
	}
	size_t words = (size_t)strtoull(argv[1], NULL, 10) << 20 >> 3;
	uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 0x9e3779b97f4a7c15ull;

	uint64_t *data = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (data == MAP_FAILED) {
		printf("FAIL: mmap %zu bytes\n", words * 8);
		return 1;
	}
	uint64_t state = seed;
	for (size_t i = 0; i < words; i++)
		data[i] = xorshift64(&state);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigterm;
	sigaction(SIGTERM, &sa, NULL);

	printf("READY %d %p\n", getpid(), (void *)data);
	fflush(stdout);
	while (!terminate)
		pause();

	state = seed;
	for (size_t i = 0; i < words; i++) {
		if (data[i] != xorshift64(&state)) {
			printf("FAIL: word %zu of %zu differs\n", i, words);
			fflush(stdout);
			return 1;
		}
	}
	printf("PASS\n");
	fflush(stdout);
	return 0;
}
