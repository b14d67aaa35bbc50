/*
 * main.c -- command line, configuration loading and wiring. No logic lives
 * here. Exit codes (SPEC): 0 clean shutdown, 1 runtime failure, 2 bad usage
 * or configuration.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "touchpulse/config.h"
#include "touchpulse/decode.h"
#include "touchpulse/demo.h"
#include "touchpulse/log.h"
#include "touchpulse/service.h"
#include "touchpulse/state.h"

#ifdef TP_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

static const char usage[] =
    "usage: touchpulse --config FILE        run the service\n"
    "       touchpulse --check-config FILE  validate a configuration file and exit\n"
    "       touchpulse --demo [--demo-speed N] [--demo-seconds N] [--config FILE]\n"
    "                                       run the demo: in-process Kafka cluster, generated\n"
    "                                       traffic with incidents, live alerts (no broker needed)\n"
    "       touchpulse --generate [--demo-speed N] [--demo-seconds N] [--config FILE]\n"
    "                                       produce the demo's traffic to the Kafka cluster of\n"
    "                                       the configuration (its kafka: section), no processing\n"
    "       touchpulse --help | --version\n"
    "\n"
    "Every configuration key can be overridden by an environment variable:\n"
    "TOUCHPULSE_ + the key path in upper case, dots and dashes as underscores\n"
    "(TOUCHPULSE_HTTP_LISTEN=127.0.0.1:9464, TOUCHPULSE_KAFKA_BOOTSTRAP_SERVERS=...).\n"
    "\n"
    "--demo-speed N    event-time seconds per wall-clock second (default 120)\n"
    "--demo-seconds N  stop after N seconds (default: run until Ctrl-C or SIGTERM)\n"
    "\n"
    "Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad usage or configuration.\n";

static int bad_usage(const char *what, const char *arg) {
  fprintf(stderr, "touchpulse: %s%s%s%s\n\n%s", what, arg ? " '" : "", arg ? arg : "",
          arg ? "'" : "", usage);
  return 2;
}

static bool parse_number(const char *s, double lo, double hi, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end != '\0' || !(v >= lo && v <= hi))
    return false;
  *out = v;
  return true;
}

/*
 * The allocator the process runs on, for the start-up log. The release
 * build links jemalloc ahead of the C library (CMakeLists.txt says why);
 * that its malloc is the one in use is checked, not assumed: jemalloc's
 * count of the bytes this thread allocated must grow with an allocation.
 */
static const char *allocator(void) {
#ifdef TP_JEMALLOC
  static char name[128];
  const char *version = NULL;
  uint64_t before = 0, after = 0;
  size_t vlen = sizeof version, len = sizeof before;
  if (mallctl("version", (void *)&version, &vlen, NULL, 0) != 0 ||
      mallctl("thread.allocated", &before, &len, NULL, 0) != 0)
    return "the C library's malloc (jemalloc is linked but does not answer)";
  void *volatile probe = malloc(4096);
  int rc = mallctl("thread.allocated", &after, &len, NULL, 0);
  free(probe);
  if (rc != 0 || after - before < 4096)
    return "not jemalloc: it is linked, but another malloc comes first";
  (void)snprintf(name, sizeof name, "jemalloc %s", version);
  return name;
#else
  return "the C library's malloc";
#endif
}

/* Load a configuration; the demo's default is the example file compiled in. */
static tp_config_t *load(const char *path, bool demo) {
  static char err[16384];
  tp_config_t *cfg = NULL;
  tp_err_t rc;
  if (path != NULL)
    rc = tp_config_load(path, NULL, &cfg, err, sizeof(err));
  else if (demo)
    rc = tp_config_load_string(tp_example_config_yaml, strlen(tp_example_config_yaml),
                               "examples/touchpulse.yaml", NULL, &cfg, err, sizeof(err));
  else
    rc = tp_config_load(NULL, NULL, &cfg, err, sizeof(err));
  if (rc != TP_OK) {
    fprintf(stderr, "%s%s", err, err[0] && err[strlen(err) - 1] == '\n' ? "" : "\n");
    return NULL;
  }
  /* Rules the state module refuses (too many windows per topic) are
   * configuration errors too: find them now, not at the first assignment. */
  tp_state_t *st = tp_state_new(cfg, err, sizeof(err));
  if (st == NULL) {
    fprintf(stderr, "%s: %s\n", path ? path : "configuration", err);
    tp_config_destroy(cfg);
    return NULL;
  }
  tp_state_destroy(st);
  return cfg;
}

int main(int argc, char **argv) {
  const char *config = NULL, *check = NULL;
  bool demo = false, generate = false;
  tp_demo_opts_t demo_opts = {.speed = 120, .run_for_ms = 0, .seed = 20261123};

#if defined(TP_NEEDS_SSSE3) && (defined(__x86_64__) || defined(__i386__))
  /* decode.c is built with SSSE3 (CMakeLists.txt, TP_SSSE3): say so plainly
   * instead of dying of SIGILL on the first record. */
  if (!__builtin_cpu_supports("ssse3")) {
    fputs("touchpulse: this build decodes records with SSSE3 instructions, "
          "which this CPU lacks; build with cmake -DTP_SSSE3=OFF\n",
          stderr);
    return 1;
  }
#endif

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      return 0;
    } else if (strcmp(a, "--version") == 0) {
      printf("touchpulse %s\n", TP_VERSION_STRING);
      return 0;
    } else if (strcmp(a, "--config") == 0 || strcmp(a, "--check-config") == 0) {
      if (next == NULL)
        return bad_usage("this option needs a file name:", a);
      if (strcmp(a, "--config") == 0)
        config = next;
      else
        check = next;
      i++;
    } else if (strcmp(a, "--demo") == 0) {
      demo = true;
    } else if (strcmp(a, "--generate") == 0) {
      generate = true;
    } else if (strcmp(a, "--demo-speed") == 0) {
      if (next == NULL || !parse_number(next, 1, 100000, &demo_opts.speed))
        return bad_usage("--demo-speed needs a number from 1 to 100000, got", next ? next : "");
      i++;
    } else if (strcmp(a, "--demo-seconds") == 0) {
      double s;
      if (next == NULL || !parse_number(next, 0, 1e7, &s))
        return bad_usage("--demo-seconds needs a number of seconds, got", next ? next : "");
      demo_opts.run_for_ms = (int64_t)(s * 1000);
      i++;
    } else {
      return bad_usage("unknown argument", a);
    }
  }

  if (check != NULL) {
    if (config != NULL || demo || generate)
      return bad_usage("--check-config runs alone", NULL);
    tp_config_t *cfg = load(check, false);
    if (cfg == NULL)
      return 2;
    char err[256];
    if (tp_decode_check_schemas(err, sizeof(err)) != TP_OK) {
      fprintf(stderr, "%s\n", err);
      tp_config_destroy(cfg);
      return 2;
    }
    printf("%s: ok (%zu rules)\n", check, cfg->n_rules);
    tp_config_destroy(cfg);
    return 0;
  }
  if (demo && generate)
    return bad_usage("--demo and --generate exclude each other", NULL);
  if (config == NULL && !demo && !generate)
    return bad_usage("nothing to do: give --config FILE, --demo or --check-config FILE", NULL);

  tp_config_t *cfg = load(config, demo || generate);
  if (cfg == NULL)
    return 2;
  tp_log_setup(cfg->log_level, cfg->log_format);
  if (demo && isatty(1) && cfg->log_level == TP_LOG_INFO)
    tp_log_setup(TP_LOG_WARN, cfg->log_format); /* keep the live view readable */

  /* The effective configuration, one log line per YAML line. */
  char *dump = tp_config_dump(cfg);
  for (char *line = dump, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    if (*line && *line != '#')
      tp_log_info("config | %s", line);
    if (!next)
      break;
  }
  tp_free(dump);
  tp_log_info("memory allocator: %s", allocator());
  int rc = demo       ? tp_demo_run(cfg, &demo_opts)
           : generate ? tp_demo_generate(cfg, &demo_opts)
                      : tp_service_run(cfg, NULL);
  tp_config_destroy(cfg);
  return rc;
}
