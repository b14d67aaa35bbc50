/*
 * service.h -- run touchpulse: the pipeline, the HTTP endpoints on a libuv
 * loop, and signal handling, until SIGINT/SIGTERM or a fatal error.
 */
#ifndef TOUCHPULSE_SERVICE_H
#define TOUCHPULSE_SERVICE_H

#include "touchpulse/config.h"
#include "touchpulse/http.h"
#include "touchpulse/pipeline.h"

typedef struct {
  /* Called once a second on the loop thread (the demo's live view). */
  void (*on_tick)(void *opaque, tp_pipeline_t *pl);
  /* Called once the pipeline runs and the HTTP server listens. */
  void (*on_start)(void *opaque, tp_pipeline_t *pl, int http_port);
  /* Called when shutdown begins, before the pipeline stops. */
  void (*on_stop)(void *opaque);
  void *opaque;
  int64_t run_for_ms; /* stop by itself after this long; 0 = until a signal */
} tp_service_hooks_t;

/**
 * @brief Run until a signal, a fatal error or run_for_ms.
 * @returns the process exit code: 0 clean shutdown, 1 runtime failure,
 *          2 bad configuration found at start (e.g. cannot bind http.listen).
 */
int tp_service_run(const tp_config_t *cfg, const tp_service_hooks_t *hooks);

/**
 * @brief Route one HTTP GET for a running pipeline: /metrics, /healthz,
 *        /readyz, /v1/touchpoints/{id}. Exposed for tests.
 */
void tp_service_route(tp_pipeline_t *pl, const char *path, size_t path_len,
                      tp_http_reply_t *reply);

#endif
