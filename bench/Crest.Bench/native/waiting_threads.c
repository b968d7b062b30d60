/* waiting_threads N: a process with N threads besides main, each blocked in FUTEX_WAIT, for the threads
 * benchmark. Prints "READY pid" once all wait. On SIGTERM (after restore) main wakes them; each checks that it
 * still has its TID, main joins them all and prints PASS or FAIL. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX 4096

static volatile int word;
static volatile int waiting;
static volatile int wrong;
static volatile sig_atomic_t terminated;
static pid_t tids[MAX];

static void on_term(int sig) { (void)sig; terminated = 1; }

static void *waiter(void *arg)
{
	long i = (long)arg;
	tids[i] = gettid();
	__atomic_add_fetch(&waiting, 1, __ATOMIC_SEQ_CST);
	while (!word)
		syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	if (gettid() != tids[i])
		__atomic_add_fetch(&wrong, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

int main(int argc, char **argv)
{
	close_range(3, ~0U, 0);
	int n = argc > 1 ? atoi(argv[1]) : 256;
	if (n < 0 || n > MAX)
		return 2;
	signal(SIGTERM, on_term);
	sigset_t term;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, NULL); /* threads inherit it blocked: main takes SIGTERM */
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	static pthread_t handles[MAX];
	for (long i = 0; i < n; i++)
		if (pthread_create(&handles[i], &attr, waiter, (void *)i))
			return 3;
	pthread_sigmask(SIG_UNBLOCK, &term, NULL);
	while (waiting < n)
		usleep(1000);
	usleep(20 * 1000);
	printf("READY %d\n", getpid());
	fflush(stdout);
	while (!terminated)
		pause();
	word = 1;
	syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, MAX, NULL, NULL, 0);
	for (int i = 0; i < n; i++)
		pthread_join(handles[i], NULL);
	printf(wrong ? "FAIL: %d threads have another TID\n" : "PASS\n", wrong);
	fflush(stdout);
	return wrong != 0;
}
