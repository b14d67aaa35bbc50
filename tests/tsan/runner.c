/*
 * runner.c -- main() of the ThreadSanitizer build of a criterion suite (see
 * criterion/criterion.h beside this file). Each test runs in a forked child;
 * a failed expectation or a TSan report (halt_on_error) fails the test.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/wait.h>
#include <threads.h>
#include <unistd.h>

#include "criterion/criterion.h"

/*
 * librdkafka uses C11 threads (thrd_*, mtx_*, cnd_*). glibc 2.34+ implements
 * them on internal pthread entry points that ThreadSanitizer does not
 * intercept: TSan never sets up librdkafka's threads (they crash in their
 * first malloc) and cannot see its locks (so it would miss real
 * happens-before edges and report false races). The executable's symbols
 * win over libc's, so these definitions route every call through the
 * intercepted pthread functions. In glibc, thrd_t is a pthread_t and mtx_t
 * and cnd_t wrap pthread_mutex_t and pthread_cond_t.
 */
typedef struct {
  thrd_start_t fn;
  void *arg;
} trampoline_t;

static void *trampoline(void *p) {
  trampoline_t t = *(trampoline_t *)p;
  free(p);
  return (void *)(intptr_t)t.fn(t.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg) {
  trampoline_t *t = malloc(sizeof(*t));
  if (t == NULL)
    return thrd_nomem;
  t->fn = fn;
  t->arg = arg;
  int rc = pthread_create((pthread_t *)thr, NULL, trampoline, t);
  if (rc != 0) {
    free(t);
    return rc == EAGAIN ? thrd_nomem : thrd_error;
  }
  return thrd_success;
}

static int thrd_result(int rc) {
  return rc == 0 ? thrd_success : rc == ETIMEDOUT ? thrd_timedout : rc == EBUSY ? thrd_busy
                                                                                 : thrd_error;
}

int thrd_join(thrd_t thr, int *res) {
  void *ret = NULL;
  int rc = pthread_join((pthread_t)thr, &ret);
  if (rc == 0 && res)
    *res = (int)(intptr_t)ret;
  return thrd_result(rc);
}

int thrd_detach(thrd_t thr) { return thrd_result(pthread_detach((pthread_t)thr)); }

int mtx_init(mtx_t *m, int type) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  if (type & mtx_recursive)
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  int rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
  pthread_mutexattr_destroy(&a);
  return thrd_result(rc);
}
int mtx_lock(mtx_t *m) { return thrd_result(pthread_mutex_lock((pthread_mutex_t *)m)); }
int mtx_trylock(mtx_t *m) { return thrd_result(pthread_mutex_trylock((pthread_mutex_t *)m)); }
int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts) {
  return thrd_result(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}
int mtx_unlock(mtx_t *m) { return thrd_result(pthread_mutex_unlock((pthread_mutex_t *)m)); }
void mtx_destroy(mtx_t *m) { pthread_mutex_destroy((pthread_mutex_t *)m); }
int cnd_init(cnd_t *c) { return thrd_result(pthread_cond_init((pthread_cond_t *)c, NULL)); }
int cnd_signal(cnd_t *c) { return thrd_result(pthread_cond_signal((pthread_cond_t *)c)); }
int cnd_broadcast(cnd_t *c) { return thrd_result(pthread_cond_broadcast((pthread_cond_t *)c)); }
int cnd_wait(cnd_t *c, mtx_t *m) {
  return thrd_result(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}
int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts) {
  return thrd_result(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}
void cnd_destroy(cnd_t *c) { pthread_cond_destroy((pthread_cond_t *)c); }

#define MAX_TESTS 256

static struct {
  const char *suite, *name;
  void (*fn)(void);
  struct tp_shim_opts opts;
} tests[MAX_TESTS];
static int n_tests;
static int failures_in_child;

void tp_shim_register(const char *suite, const char *name, void (*fn)(void),
                      struct tp_shim_opts opts) {
  if (n_tests == MAX_TESTS) {
    fprintf(stderr, "too many tests\n");
    exit(2);
  }
  tests[n_tests].suite = suite;
  tests[n_tests].name = name;
  tests[n_tests].fn = fn;
  tests[n_tests].opts = opts;
  n_tests++;
}

void tp_shim_fail(const char *file, int line, bool fatal, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: %s failed: ", file, line, fatal ? "assertion" : "expectation");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  failures_in_child++;
  if (fatal)
    _exit(1);
}

int main(int argc, char **argv) {
  const char *only = argc > 1 && strncmp(argv[1], "--", 2) != 0 ? argv[1] : NULL;
  int failed = 0, ran = 0;
  for (int i = 0; i < n_tests; i++) {
    if (tests[i].opts.disabled || (only && strstr(tests[i].name, only) == NULL))
      continue;
    ran++;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
      unsigned timeout = tests[i].opts.timeout > 0 ? (unsigned)tests[i].opts.timeout : 600;
      alarm(timeout);
      if (tests[i].opts.init)
        tests[i].opts.init();
      tests[i].fn();
      if (tests[i].opts.fini)
        tests[i].opts.fini();
      _exit(failures_in_child ? 1 : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (tests[i].opts.signal)
      ok = WIFSIGNALED(status) && WTERMSIG(status) == tests[i].opts.signal;
    printf("[%s] %s::%s\n", ok ? "PASS" : "FAIL", tests[i].suite, tests[i].name);
    if (!ok) {
      failed++;
      if (WIFSIGNALED(status))
        printf("       killed by signal %d%s\n", WTERMSIG(status),
               WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    }
  }
  printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d\n", ran, ran - failed, failed);
  return failed ? 1 : 0;
}
