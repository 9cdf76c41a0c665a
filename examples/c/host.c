/*
 * A small C host: a director with three nodes, the way a C server embeds
 * Chronica. "ledger" keeps a running total of orders, "audit" logs every
 * event it sees (root events included), and "mailer" fails its first
 * attempt to show the timed retry. Build against an installed prefix:
 *
 *   cc host.c $(pkg-config --cflags --libs chronica) -o host
 *   or: cmake -S examples/c -B build && cmake --build build
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chronica.h"

#define TRY(expr)                                                                 \
    do {                                                                          \
        chronica_status s_ = (expr);                                              \
        if (s_ != CHRONICA_OK) {                                                  \
            char why_[256];                                                       \
            chronica_last_error(why_, sizeof why_);                               \
            fprintf(stderr, "%s failed: %s (%s)\n", #expr, chronica_status_str(s_), why_); \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

typedef struct ledger {
    long total;
    long orders;
} ledger;

/* Runs on the ledger's own fiber thread, never concurrently with itself. */
static int32_t ledger_send(void *user_data, const chronica_event *events, size_t count) {
    ledger *l = user_data;
    for (size_t i = 0; i < count; i++) {
        if (events[i].kind == CHRONICA_EVENT_USER) {
            char amount[32] = {0};
            size_t n = events[i].payload_len < sizeof amount - 1 ? events[i].payload_len : sizeof amount - 1;
            memcpy(amount, events[i].payload, n);
            l->total += atol(amount);
            l->orders++;
        }
    }
    return 0;
}

static void ledger_free(void *user_data) {
    ledger *l = user_data;
    printf("ledger: %ld orders, total %ld\n", l->orders, l->total);
    free(l);
}

static int32_t audit_send(void *user_data, const chronica_event *events, size_t count) {
    (void)user_data;
    for (size_t i = 0; i < count; i++) {
        const chronica_event *e = &events[i];
        printf("audit: #%llu %s %.*s %.*s\n", (unsigned long long)e->id,
               e->kind == CHRONICA_EVENT_ROOT ? "root" : "user", (int)e->topic_len, e->topic,
               (int)e->payload_len, (const char *)e->payload);
    }
    return 0;
}

static atomic_int mailer_attempts;

static int32_t mailer_send(void *user_data, const chronica_event *events, size_t count) {
    (void)user_data;
    for (size_t i = 0; i < count; i++) {
        if (events[i].kind == CHRONICA_EVENT_USER && atomic_fetch_add(&mailer_attempts, 1) == 0) {
            /* the mail server is "down": retried on a timer; the text is
               what the error hook reports */
            chronica_send_error("mail server unavailable");
            return 1;
        }
    }
    return 0;
}

static void on_error(void *ud, const char *uid, size_t uid_len, const char *err, size_t err_len) {
    (void)ud;
    printf("error hook: %.*s: %.*s (will retry)\n", (int)uid_len, uid, (int)err_len, err);
}

int main(void) {
    printf("chronica %s\n", chronica_version());
    chronica_options *o = chronica_options_new();
    TRY(chronica_options_set_trust_token(o, "demo-token"));
    TRY(chronica_options_set_retry(o, 50, 1000, 2.0, 0));
    TRY(chronica_options_set_error_hook(o, on_error, NULL));
    chronica_director *d = NULL;
    TRY(chronica_director_new(o, &d));
    chronica_options_free(o);

    ledger *l = calloc(1, sizeof *l);
    chronica_node_options *orders_only = chronica_node_options_new();
    TRY(chronica_node_options_add_topic(orders_only, "orders.*"));
    TRY(chronica_director_register_with(d, "ledger", orders_only, ledger_send, l, ledger_free));
    TRY(chronica_director_register_with(d, "mailer", orders_only, mailer_send, NULL, NULL));
    chronica_node_options_free(orders_only);
    TRY(chronica_director_register(d, "audit", audit_send, NULL, NULL));

    const char *amounts[] = {"120", "80", "42"};
    for (int i = 0; i < 3; i++) {
        TRY(chronica_director_emit(d, NULL, "orders.created", (const uint8_t *)amounts[i], strlen(amounts[i])));
    }
    TRY(chronica_director_emit(d, NULL, "users.signup", (const uint8_t *)"alice", 5));
    TRY(chronica_director_emit_root(d, "resync", NULL, 0));

    /* wait (bounded) until the mailer got through its retry */
    for (int i = 0; i < 500; i++) {
        chronica_node_stats s = {0};
        TRY(chronica_director_node_stats(d, "mailer", &s));
        if (s.pending == 0 && s.delivered >= 4) {
            break;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    const char *uids[] = {"ledger", "mailer", "audit"};
    for (int i = 0; i < 3; i++) {
        chronica_node_stats s = {0};
        TRY(chronica_director_node_stats(d, uids[i], &s));
        printf("%-6s accepted=%llu delivered=%llu dropped=%llu pending=%llu retries=%llu failures=%llu\n", uids[i],
               (unsigned long long)s.accepted, (unsigned long long)s.delivered, (unsigned long long)s.dropped,
               (unsigned long long)s.pending, (unsigned long long)s.retries, (unsigned long long)s.failures);
    }
    uint64_t undelivered = 0;
    TRY(chronica_director_close(d, 2000, &undelivered));
    printf("closed, %llu undelivered\n", (unsigned long long)undelivered);
    chronica_director_free(d);
    return 0;
}
