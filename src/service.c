/*
 * service.c -- the running service: pipeline threads plus a libuv loop
 * (this thread) for the HTTP endpoints, signals and timers. Shutdown on
 * SIGINT/SIGTERM: close the endpoints, then stop the pipeline (finish the
 * batches in flight, flush the producer, commit, leave the group).
 */
#include "touchpulse/service.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "touchpulse/decode.h"
#include "touchpulse/log.h"

typedef struct {
  const tp_config_t *cfg;
  const tp_service_hooks_t *hooks;
  tp_pipeline_t *pl;
  tp_http_t *http;
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  uv_timer_t tick, check;
  uint64_t started_ms;
  bool stopping;
  int exit_code;
} service_t;

void tp_service_route(tp_pipeline_t *pl, const char *path, size_t len, tp_http_reply_t *reply) {
  static const char prefix[] = "/v1/touchpoints/";
  const size_t plen = sizeof(prefix) - 1;
  if (len == 8 && memcmp(path, "/metrics", 8) == 0) {
    reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
    tp_pipeline_metrics(pl, &reply->body);
  } else if (len == 8 && memcmp(path, "/healthz", 8) == 0) {
    bool ok = !tp_pipeline_failed(pl);
    reply->status = ok ? 200 : 503;
    tp_buf_puts(&reply->body, ok ? "ok\n" : "failed\n");
  } else if (len == 7 && memcmp(path, "/readyz", 7) == 0) {
    bool ok = tp_pipeline_ready(pl) && !tp_pipeline_failed(pl);
    reply->status = ok ? 200 : 503;
    tp_buf_puts(&reply->body, ok ? "ready\n" : "not ready\n");
  } else if (len > plen && memcmp(path, prefix, plen) == 0) {
    const char *id = path + plen;
    size_t id_len = len - plen;
    reply->content_type = "application/json";
    if (!tp_touchpoint_valid(id, id_len)) {
      reply->status = 400;
      tp_buf_puts(&reply->body, "{\"error\":\"a touchpoint id is 1-128 bytes of "
                                "[A-Za-z0-9._:/-]\"}\n");
    } else if (!tp_state_view_touchpoint(tp_pipeline_state(pl), id, id_len, &reply->body)) {
      reply->status = 404;
      tp_buf_reset(&reply->body);
      tp_buf_puts(&reply->body, "{\"error\":\"unknown touchpoint\",\"touchpoint\":\"");
      tp_buf_json_escape(&reply->body, id, id_len);
      tp_buf_puts(&reply->body, "\"}\n");
    }
  } else {
    reply->status = 404;
    tp_buf_puts(&reply->body, "not found: try /metrics, /healthz, /readyz or "
                              "/v1/touchpoints/{id}\n");
  }
}

static void route(void *opaque, const char *path, size_t len, tp_http_reply_t *reply) {
  service_t *svc = opaque;
  tp_service_route(svc->pl, path, len, reply);
  if (reply->status == 200 && len == 8 && memcmp(path, "/metrics", 8) == 0 && svc->http) {
    tp_http_stats_t hs;
    tp_http_get_stats(svc->http, &hs);
    tp_buf_t *b = &reply->body;
    tp_buf_puts(b, "# HELP touchpulse_http_requests_total HTTP requests answered.\n"
                   "# TYPE touchpulse_http_requests_total counter\n");
    tp_buf_printf(b, "touchpulse_http_requests_total{outcome=\"ok\"} %llu\n",
                  (unsigned long long)(hs.requests - hs.bad_requests));
    tp_buf_printf(b, "touchpulse_http_requests_total{outcome=\"bad\"} %llu\n",
                  (unsigned long long)hs.bad_requests);
    tp_buf_puts(b, "# HELP touchpulse_http_connections_rejected_total Connections closed at "
                   "once because max_connections were open.\n"
                   "# TYPE touchpulse_http_connections_rejected_total counter\n");
    tp_buf_printf(b, "touchpulse_http_connections_rejected_total %llu\n",
                  (unsigned long long)hs.rejected_connections);
    tp_buf_puts(b, "# HELP touchpulse_http_timeouts_total Connections closed for a slow or "
                   "idle request.\n# TYPE touchpulse_http_timeouts_total counter\n");
    tp_buf_printf(b, "touchpulse_http_timeouts_total %llu\n", (unsigned long long)hs.timeouts);
  }
}

static void begin_shutdown(service_t *svc, const char *why) {
  if (svc->stopping)
    return;
  svc->stopping = true;
  tp_log_info("shutting down: %s", why);
  if (svc->hooks && svc->hooks->on_stop)
    svc->hooks->on_stop(svc->hooks->opaque);
  tp_http_stop(svc->http);
  svc->http = NULL;
  uv_close((uv_handle_t *)&svc->sigint, NULL);
  uv_close((uv_handle_t *)&svc->sigterm, NULL);
  uv_close((uv_handle_t *)&svc->tick, NULL);
  uv_close((uv_handle_t *)&svc->check, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  begin_shutdown(h->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_tick(uv_timer_t *t) {
  service_t *svc = t->data;
  if (svc->hooks && svc->hooks->on_tick)
    svc->hooks->on_tick(svc->hooks->opaque, svc->pl);
}

static void on_check(uv_timer_t *t) {
  service_t *svc = t->data;
  if (tp_pipeline_failed(svc->pl)) {
    svc->exit_code = 1;
    begin_shutdown(svc, "runtime failure (see the errors above)");
  } else if (svc->hooks && svc->hooks->run_for_ms > 0 &&
             uv_now(&svc->loop) - svc->started_ms >= (uint64_t)svc->hooks->run_for_ms) {
    begin_shutdown(svc, "run time elapsed");
  }
}

int tp_service_run(const tp_config_t *cfg, const tp_service_hooks_t *hooks) {
  service_t svc;
  char err[512];
  memset(&svc, 0, sizeof(svc));
  svc.cfg = cfg;
  svc.hooks = hooks;
  tp_pipeline_opts_t opts = {.cfg = cfg};
  svc.pl = tp_pipeline_new(&opts, err, sizeof(err));
  if (svc.pl == NULL) {
    tp_log_error("%s", err);
    return 2;
  }
  if (uv_loop_init(&svc.loop) != 0) {
    tp_log_error("cannot create the event loop");
    tp_pipeline_destroy(svc.pl);
    return 1;
  }
  tp_http_opts_t hopts = {.listen = cfg->http_listen, .route = route, .opaque = &svc};
  if (tp_http_start(&svc.loop, &hopts, &svc.http, err, sizeof(err)) != TP_OK) {
    tp_log_error("%s", err);
    tp_pipeline_destroy(svc.pl);
    uv_run(&svc.loop, UV_RUN_DEFAULT);
    uv_loop_close(&svc.loop);
    return 2;
  }
  if (tp_pipeline_start(svc.pl, err, sizeof(err)) != TP_OK) {
    tp_log_error("%s", err);
    svc.exit_code = 1;
    tp_http_stop(svc.http);
    uv_run(&svc.loop, UV_RUN_DEFAULT);
    tp_pipeline_destroy(svc.pl);
    uv_loop_close(&svc.loop);
    return 1;
  }
  tp_log_info("touchpulse %s running: %s, %s, %s -> %s; http on %s", TP_VERSION_STRING,
              cfg->topics[0], cfg->topics[1], cfg->topics[2], cfg->topics[TP_TOPIC_ALERTS],
              cfg->http_listen);

  svc.sigint.data = svc.sigterm.data = svc.tick.data = svc.check.data = &svc;
  uv_signal_init(&svc.loop, &svc.sigint);
  uv_signal_init(&svc.loop, &svc.sigterm);
  uv_signal_start(&svc.sigint, on_signal, SIGINT);
  uv_signal_start(&svc.sigterm, on_signal, SIGTERM);
  uv_timer_init(&svc.loop, &svc.tick);
  uv_timer_init(&svc.loop, &svc.check);
  uv_timer_start(&svc.tick, on_tick, 1000, 1000);
  uv_timer_start(&svc.check, on_check, 100, 100);
  svc.started_ms = uv_now(&svc.loop);
  if (hooks && hooks->on_start)
    hooks->on_start(hooks->opaque, svc.pl, tp_http_port(svc.http));

  uv_run(&svc.loop, UV_RUN_DEFAULT);

  if (tp_pipeline_stop(svc.pl) != TP_OK)
    svc.exit_code = 1;
  tp_pipeline_destroy(svc.pl);
  uv_run(&svc.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&svc.loop) != 0)
    tp_log_warn("event loop closed with handles still open");
  tp_log_info("stopped (exit code %d)", svc.exit_code);
  return svc.exit_code;
}
