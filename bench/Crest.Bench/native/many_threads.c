/* Bench target: COUNT threads in one process (the main thread included). Half of the others wait on a
 * condition variable (futex), half sleep in nanosleep loops; each keeps its tid and a value in __thread
 * storage. Says "READY", the main thread sleeps in pause(). On SIGTERM every thread checks that gettid()
 * and its __thread value are what they were: "PASS" and exit 0, or "FAIL: ..." and exit 1.
 * Usage: many_threads COUNT */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static atomic_int started, failures;
static volatile int terminate;
static volatile sig_atomic_t terminating;
static __thread long mine;

static void on_sigterm(int sig)
{
	(void)sig;
	terminating = 1;
}

static void *worker(void *arg)
{
	long index = (long)arg;
	pid_t tid = gettid();
	mine = index * 7919 + tid;
	atomic_fetch_add(&started, 1);
	if (index % 2) {
		pthread_mutex_lock(&lock);
		while (!terminate)
			pthread_cond_wait(&wake, &lock);
		pthread_mutex_unlock(&lock);
	} else {
		struct timespec nap = { 0, 20 * 1000 * 1000 };
		while (!terminate)
			nanosleep(&nap, NULL);
	}
	if (gettid() != tid || mine != index * 7919 + tid)
		atomic_fetch_add(&failures, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	int count = argc > 1 ? atoi(argv[1]) : 256;
	sigset_t term;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, NULL); /* threads inherit it: only the main thread takes SIGTERM */
	pthread_t *threads = calloc(count, sizeof(*threads));
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (long i = 1; i < count; i++)
		if (pthread_create(&threads[i], &attr, worker, (void *)i)) {
			printf("FAIL: pthread_create %ld\n", i);
			return 1;
		}
	while (atomic_load(&started) < count - 1)
		usleep(1000);
	signal(SIGTERM, on_sigterm);
	pthread_sigmask(SIG_UNBLOCK, &term, NULL);
	pid_t tid = gettid();
	printf("READY %d threads\n", count);
	fflush(stdout);
	while (!terminating)
		pause();
	pthread_mutex_lock(&lock);
	terminate = 1;
	pthread_cond_broadcast(&wake);
	pthread_mutex_unlock(&lock);
	for (long i = 1; i < count; i++)
		pthread_join(threads[i], NULL);
	if (gettid() != tid || getpid() != tid || atomic_load(&failures)) {
		printf("FAIL: %d threads lost their tid or their thread-local value\n", atomic_load(&failures));
		return 1;
	}
	printf("PASS\n");
	return 0;
}
