/* Bench target: a tree of COUNT processes (each has up to 7 children) sharing TOTAL MiB of pseudo-random
 * anonymous memory between them. Each process says "READY <pid>" once its memory is filled, then sleeps in
 * pause(). On SIGTERM each one checks its memory and its parent, waits for its children and prints
 * "PASS <pid>" (exit 0) or "FAIL <pid>: ..." (exit 1).
 * Usage: process_tree COUNT TOTAL_MIB */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define FANOUT 7

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
	int count = argc > 1 ? atoi(argv[1]) : 50;
	size_t total = (size_t)(argc > 2 ? atoi(argv[2]) : 64) << 20;
	size_t share = (total / count) & ~(size_t)4095;
	signal(SIGTERM, on_sigterm);
	/* Process i (0 = root) forks children FANOUT*i+1 .. FANOUT*i+FANOUT, breadth first. */
	int index = 0;
	pid_t parent = getppid();
	for (int child = 1; child <= FANOUT; child++) {
		int next = FANOUT * index + child;
		if (next >= count)
			break;
		pid_t pid = fork();
		if (pid < 0) {
			printf("FAIL %d: fork\n", getpid());
			return 1;
		}
		if (pid == 0) {
			parent = getppid();
			index = next;
			child = 0; /* the loop's ++ makes it 1: fork this process's own children */
		}
	}
	uint64_t *memory = mmap(NULL, share, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (memory == MAP_FAILED) {
		printf("FAIL %d: mmap\n", getpid());
		return 1;
	}
	uint64_t state = 0x9e3779b97f4a7c15ull + index;
	for (size_t i = 0; i < share / 8; i++)
		memory[i] = xorshift64(&state);
	printf("READY %d\n", getpid());
	fflush(stdout);
	while (!terminate)
		pause();
	state = 0x9e3779b97f4a7c15ull + index;
	for (size_t i = 0; i < share / 8; i++)
		if (memory[i] != xorshift64(&state)) {
			printf("FAIL %d: memory differs at byte %zu\n", getpid(), i * 8);
			return 1;
		}
	if (index > 0 && getppid() != parent) {
		printf("FAIL %d: parent %d, expected %d\n", getpid(), getppid(), parent);
		return 1;
	}
	int status, bad = 0;
	while (wait(&status) > 0)
		bad |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	printf("%s %d\n", bad ? "FAIL-CHILD" : "PASS", getpid());
	return bad;
}
