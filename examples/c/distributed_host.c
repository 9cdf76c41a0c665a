/*
 * Distributed mode from C: two directors ("east" and "west") joined to one
 * fabric through a broker. West runs a "ledger" node in consumer group
 * "ledgers"; east emits orders and a signed root event. With the default
 * URL, memory://example, both live in this process on the in-memory
 * broker; pass a broker URL (nats://127.0.0.1:14222, redis://..., kafka://...)
 * to go through a real one (libchronica built with the cargo feature of
 * that adapter: cargo build --release -p chronica-ffi --features nats).
 *
 *   cc distributed_host.c $(pkg-config --cflags --libs chronica) -o distributed_host
 *   ./distributed_host [URL]
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chronica.h"

#define TRY(expr)                                                                          \
    do {                                                                                   \
        chronica_status s_ = (expr);                                                       \
        if (s_ != CHRONICA_OK) {                                                           \
            char why_[256];                                                                \
            chronica_last_error(why_, sizeof why_);                                        \
            fprintf(stderr, "%s failed: %s (%s)\n", #expr, chronica_status_str(s_), why_); \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

typedef struct ledger {
    atomic_long total;
    atomic_long orders;
    atomic_int reloads;
} ledger;

/* Runs on the ledger's fiber thread in the west director. */
static int32_t ledger_send(void *user_data, const chronica_event *events, size_t count) {
    ledger *l = user_data;
    for (size_t i = 0; i < count; i++) {
        const chronica_event *e = &events[i];
        if (e->kind == CHRONICA_EVENT_USER) {
            char amount[32] = {0};
            size_t n = e->payload_len < sizeof amount - 1 ? e->payload_len : sizeof amount - 1;
            memcpy(amount, e->payload, n);
            atomic_fetch_add(&l->total, atol(amount));
            atomic_fetch_add(&l->orders, 1);
        } else if (e->topic_len == 10 && memcmp(e->topic, "app.reload", 10) == 0) {
            atomic_fetch_add(&l->reloads, 1);
        }
    }
    return 0;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A director sharing the fabric's trust token, and its membership. */
static chronica_director *start(const char *url, const char *instance_id, chronica_distributed **out) {
    chronica_options *o = chronica_options_new();
    TRY(chronica_options_set_trust_token(o, "example-shared-secret"));
    chronica_director *d = NULL;
    TRY(chronica_director_new(o, &d));
    chronica_options_free(o);

    chronica_distributed_options *xo = chronica_distributed_options_new();
    TRY(chronica_distributed_options_set_instance_id(xo, instance_id));
    TRY(chronica_distributed_options_set_topic_prefix(xo, "chronica-example-c"));
    TRY(chronica_distributed_options_set_ack_mode(xo, CHRONICA_ACK_DELIVERY));
    TRY(chronica_distributed_new(d, url, xo, out));
    chronica_distributed_options_free(xo);
    return d;
}

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : "memory://example";
    chronica_distributed *east = NULL, *west = NULL;
    chronica_director *east_d = start(url, "east", &east);
    chronica_director *west_d = start(url, "west", &west);

    static ledger book;
    chronica_node_options *no = chronica_node_options_new();
    TRY(chronica_node_options_add_topic(no, "orders.*"));
    TRY(chronica_node_options_set_group(no, "ledgers"));
    /* Joins the broker group "ledgers" before returning. */
    TRY(chronica_distributed_register_with(west, "ledger", no, ledger_send, &book, NULL));
    chronica_node_options_free(no);

    const char *amounts[] = {"100", "42", "100"};
    for (int i = 0; i < 3; i++) {
        uint64_t id = 0;
        TRY(chronica_distributed_emit(east, NULL, "orders.created", (const uint8_t *)amounts[i], strlen(amounts[i]), &id));
        printf("east: emitted order %d (wire id %llu)\n", i, (unsigned long long)id);
    }
    TRY(chronica_distributed_emit_root(east, NULL, "app.reload", NULL, 0, NULL));

    for (int waited = 0; waited < 20000 && (atomic_load(&book.orders) < 3 || atomic_load(&book.reloads) < 1);
         waited += 10) {
        sleep_ms(10);
    }
    chronica_distributed_stats s;
    TRY(chronica_distributed_get_stats(east, &s));
    printf("east: published %llu\n", (unsigned long long)s.published);
    TRY(chronica_distributed_get_stats(west, &s));
    printf("west: received %llu, injected %llu\n", (unsigned long long)s.received, (unsigned long long)s.injected);
    printf("ledger: %ld orders, total %ld, %d reload\n", atomic_load(&book.orders), atomic_load(&book.total),
           atomic_load(&book.reloads));

    uint64_t unpublished = 0, undelivered = 0;
    TRY(chronica_distributed_close(east, 5000, &unpublished));
    TRY(chronica_distributed_close(west, 5000, NULL));
    chronica_distributed_free(east);
    chronica_distributed_free(west);
    TRY(chronica_director_close(east_d, 5000, &undelivered));
    TRY(chronica_director_close(west_d, 5000, NULL));
    chronica_director_free(east_d);
    chronica_director_free(west_d);
    printf("closed, %llu unpublished, %llu undelivered\n", (unsigned long long)unpublished,
           (unsigned long long)undelivered);
    return atomic_load(&book.orders) == 3 && atomic_load(&book.total) == 242 ? 0 : 1;
}
