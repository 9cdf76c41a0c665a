/*
 * The EventBus workload (issue 5) through the C API, mirroring
 * core/benches/bus.rs: 4 topics, 2 consumer groups of 4 members and 4 plain
 * subscribers, the same 202-byte JSON payload, 1,000,000 emits (BUS_EVENTS
 * overrides). Each emit reaches one member of each group and every plain
 * subscriber: 6 deliveries. Block overflow (timeout 60 s), default capacity
 * and batch size, so nothing is dropped. The same topology runs, in one
 * process and in this order:
 *
 *   raw       chronica_director_* : 12 nodes registered with the same
 *             patterns and groups (">" + group, "*.*"), batch callbacks
 *             counting the user events of each batch;
 *   bus       chronica_bus_* : 12 subscriptions, one handler call per
 *             event, payload emitted with chronica_bus_emit (no content
 *             type, like chronica_director_emit);
 *   bus-ct    the same bus, emitted with chronica_bus_emit_with and the
 *             content type "application/json" (as the Rust bench does).
 *
 * C has no serializer, so there is no counterpart of the Rust emit_value
 * case. The clock runs from the first emit until the last delivery was
 * counted (polled every 200 us, as the Rust bench does). Prints a table and
 * one line "RESULT <case> <emits> <seconds>" per case.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "chronica.h"

#define GROUP_MEMBERS 4
#define PLAIN 4
#define DELIVERIES_PER_EMIT (2ULL + PLAIN)
#define SUBS (2 * GROUP_MEMBERS + PLAIN)

static const char *const TOPICS[4] = {"orders.created", "orders.paid", "users.joined", "stock.moved"};
static const char *const GROUPS[2] = {"group-a", "group-b"};

/* serde_json's encoding of core/benches/bus.rs's payload(1_000_000). */
static const char PAYLOAD[] =
    "{\"id\":1000000,\"customer\":\"customer-00042\","
    "\"items\":[\"sku-1001-red\",\"sku-2002-blue\",\"sku-3003-green\"],"
    "\"total\":123.45,\"currency\":\"EUR\","
    "\"note\":\"leave the parcel with the neighbour at number twelve, please\"}";
#define PAYLOAD_LEN (sizeof PAYLOAD - 1)

/* One counter shared by every node, as the Rust bench's Arc<AtomicU64>. */
static atomic_ullong counted;

static int32_t count_batch(void *user_data, const chronica_event *events, size_t count) {
    (void)user_data;
    unsigned long long users = 0;
    for (size_t i = 0; i < count; i++) {
        users += events[i].kind == CHRONICA_EVENT_USER;
    }
    atomic_fetch_add_explicit(&counted, users, memory_order_relaxed);
    return 0;
}

static int32_t count_event(void *user_data, const chronica_event *event) {
    (void)user_data;
    (void)event;
    atomic_fetch_add_explicit(&counted, 1, memory_order_relaxed);
    return 0;
}

/* Waits until `target` deliveries were counted; returns the seconds since
 * `start`, or a negative value when nothing moved for 60 s. */
static double finish(unsigned long long target, double start) {
    const struct timespec tick = {0, 200000};
    unsigned long long last = 0;
    double moved = now_s();
    for (;;) {
        unsigned long long c = atomic_load_explicit(&counted, memory_order_relaxed);
        if (c >= target) {
            return now_s() - start;
        }
        if (c != last) {
            last = c;
            moved = now_s();
        } else if (now_s() - moved > 60.0) {
            fprintf(stderr, "stalled at %llu of %llu deliveries\n", c, target);
            return -1.0;
        }
        nanosleep(&tick, NULL);
    }
}

#define TRY(expr)                                                              \
    do {                                                                       \
        chronica_status s_ = (expr);                                           \
        if (s_ != CHRONICA_OK) {                                               \
            fprintf(stderr, "%s: %s\n", #expr, chronica_status_str(s_));       \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

static chronica_options *director_options(void) {
    chronica_options *o = chronica_options_new();
    if (o == NULL) {
        fprintf(stderr, "chronica_options_new failed\n");
        exit(1);
    }
    TRY(chronica_options_set_overflow(o, CHRONICA_OVERFLOW_BLOCK));
    TRY(chronica_options_set_block_timeout(o, 60000));
    return o;
}

static double raw(unsigned long long events) {
    chronica_options *o = director_options();
    chronica_director *d = NULL;
    TRY(chronica_director_new(o, &d));
    chronica_options_free(o);
    atomic_store(&counted, 0);
    char uid[32];
    for (int g = 0; g < 2; g++) {
        for (int m = 0; m < GROUP_MEMBERS; m++) {
            chronica_node_options *n = chronica_node_options_new();
            TRY(chronica_node_options_add_topic(n, ">"));
            TRY(chronica_node_options_set_group(n, GROUPS[g]));
            snprintf(uid, sizeof uid, "%s-%d", GROUPS[g], m);
            TRY(chronica_director_register_with(d, uid, n, count_batch, NULL, NULL));
            chronica_node_options_free(n);
        }
    }
    for (int p = 0; p < PLAIN; p++) {
        chronica_node_options *n = chronica_node_options_new();
        TRY(chronica_node_options_add_topic(n, "*.*"));
        snprintf(uid, sizeof uid, "plain-%d", p);
        TRY(chronica_director_register_with(d, uid, n, count_batch, NULL, NULL));
        chronica_node_options_free(n);
    }
    const uint8_t *payload = (const uint8_t *)PAYLOAD;
    double start = now_s();
    for (unsigned long long i = 0; i < events; i++) {
        TRY(chronica_director_emit(d, NULL, TOPICS[i % 4], payload, PAYLOAD_LEN));
    }
    double secs = finish(events * DELIVERIES_PER_EMIT, start);
    TRY(chronica_director_close(d, 10000, NULL));
    chronica_director_free(d);
    return secs;
}

static double bus(unsigned long long events, const char *content_type) {
    chronica_options *o = director_options();
    chronica_bus *b = NULL;
    TRY(chronica_bus_new_with_options(o, &b));
    chronica_options_free(o);
    atomic_store(&counted, 0);
    chronica_subscription *subs[SUBS];
    int k = 0;
    for (int g = 0; g < 2; g++) {
        for (int m = 0; m < GROUP_MEMBERS; m++) {
            chronica_subscribe_options *s = chronica_subscribe_options_new();
            TRY(chronica_subscribe_options_set_group(s, GROUPS[g]));
            TRY(chronica_bus_on(b, ">", s, count_event, NULL, NULL, &subs[k++]));
            chronica_subscribe_options_free(s);
        }
    }
    for (int p = 0; p < PLAIN; p++) {
        TRY(chronica_bus_on(b, "*.*", NULL, count_event, NULL, NULL, &subs[k++]));
    }
    const uint8_t *payload = (const uint8_t *)PAYLOAD;
    double start = now_s();
    if (content_type == NULL) {
        for (unsigned long long i = 0; i < events; i++) {
            TRY(chronica_bus_emit(b, TOPICS[i % 4], payload, PAYLOAD_LEN));
        }
    } else {
        for (unsigned long long i = 0; i < events; i++) {
            TRY(chronica_bus_emit_with(b, TOPICS[i % 4], NULL, 0, content_type, payload, PAYLOAD_LEN));
        }
    }
    double secs = finish(events * DELIVERIES_PER_EMIT, start);
    TRY(chronica_bus_close(b, 10000, NULL));
    for (int i = 0; i < SUBS; i++) {
        chronica_subscription_free(subs[i]);
    }
    chronica_bus_free(b);
    return secs;
}

int main(void) {
    unsigned long long events = 1000000ULL;
    const char *env = getenv("BUS_EVENTS");
    if (env != NULL && *env != '\0') {
        char *end = NULL;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end != '\0' || v == 0) {
            fprintf(stderr, "BUS_EVENTS must be a positive integer, got %s\n", env);
            return 2;
        }
        events = v;
    }
    printf("EventBus workload (C API): %llu emits, %zu byte JSON payloads, 4 topics,\n", events,
           PAYLOAD_LEN);
    printf("2 groups x %d members + %d plain subscribers (%llu deliveries per emit)\n", GROUP_MEMBERS,
           PLAIN, DELIVERIES_PER_EMIT);
    struct {
        const char *key, *name;
        double secs;
    } rows[3] = {
        {"raw", "raw director (C)", 0},
        {"bus", "bus, emit (bytes)", 0},
        {"bus-ct", "bus, emit_with (json ct)", 0},
    };
    rows[0].secs = raw(events);
    rows[1].secs = bus(events, NULL);
    rows[2].secs = bus(events, "application/json");
    printf("%-28s %12s %14s %9s\n", "case", "emits/s", "deliveries/s", "vs raw");
    int failed = 0;
    for (int i = 0; i < 3; i++) {
        if (rows[i].secs <= 0) {
            printf("%-28s %12s\n", rows[i].name, "stalled");
            failed = 1;
            continue;
        }
        double rate = (double)events / rows[i].secs;
        printf("%-28s %12.0f %14.0f", rows[i].name, rate, rate * (double)DELIVERIES_PER_EMIT);
        if (rows[0].secs > 0) {
            printf(" %+8.1f%%", (rows[i].secs / rows[0].secs - 1.0) * 100.0);
        }
        printf("\n");
    }
    for (int i = 0; i < 3; i++) {
        printf("RESULT %s %llu %.6f\n", rows[i].key, events, rows[i].secs);
    }
    return failed;
}
