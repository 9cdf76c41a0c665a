/*
 * W1 through the C API (SPEC section 6): one producer, a registered 9th node
 * used as the source (so it is excluded), emits 1,000,000 events of 64 bytes
 * to 8 nodes; each node's callback counts the user events of each batch.
 * Same settings as the Rust W1 (core/benches/w1.rs): block policy, capacity
 * 65,536, so nothing is dropped. Prints "RESULT c-api <deliveries> <seconds>
 * <peak KiB>".
 *
 * With the argument "payload" the producer copies its 64 bytes once into a
 * chronica_payload and emits that with chronica_director_emit_payload (no
 * copy per emit, as the Rust W1 shares one Bytes), and the line reads
 * "RESULT c-api-payload ...". The headline figure is the standard emit.
 *
 * With the argument "many" the producer emits runs of RUN (64) messages
 * per chronica_director_emit_many call, each message copying its payload
 * as chronica_director_emit does (the batch of 64 is the crossbeam peer's
 * in core/benches/w1.rs), and the line reads "RESULT c-api-many ...".
 */
#define _POSIX_C_SOURCE 200809L
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "chronica.h"

#define EVENTS 1000000ULL
#define NODES 8
#define PAYLOAD 64
#define RUN 64
_Static_assert(EVENTS % RUN == 0, "every call carries a full run");

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

static int32_t ignore(void *user_data, const chronica_event *events, size_t count) {
    (void)user_data;
    (void)events;
    (void)count;
    return 0;
}

#define TRY(expr)                                                              \
    do {                                                                       \
        chronica_status s_ = (expr);                                           \
        if (s_ != CHRONICA_OK) {                                               \
            fprintf(stderr, "%s: %s\n", #expr, chronica_status_str(s_));       \
            return 1;                                                          \
        }                                                                      \
    } while (0)

int main(int argc, char **argv) {
    const int shared = argc > 1 && strcmp(argv[1], "payload") == 0;
    const int many = argc > 1 && strcmp(argv[1], "many") == 0;
    chronica_options *o = chronica_options_new();
    TRY(chronica_options_set_overflow(o, CHRONICA_OVERFLOW_BLOCK));
    TRY(chronica_options_set_queue_capacity(o, 65536));
    TRY(chronica_options_set_block_timeout(o, 60000));
    chronica_director *d = NULL;
    TRY(chronica_director_new(o, &d));
    chronica_options_free(o);
    for (int i = 0; i < NODES; i++) {
        char uid[16];
        snprintf(uid, sizeof uid, "node-%d", i);
        TRY(chronica_director_register(d, uid, count_batch, NULL, NULL));
    }
    TRY(chronica_director_register(d, "producer", ignore, NULL, NULL));
    uint8_t payload[PAYLOAD];
    memset(payload, 7, sizeof payload);
    chronica_payload *handle = NULL;
    TRY(chronica_payload_new(payload, sizeof payload, &handle));
    const unsigned long long want = EVENTS * NODES;
    chronica_message run[RUN];
    for (int i = 0; i < RUN; i++) {
        run[i] = (chronica_message){"w1", payload, sizeof payload, NULL, 0};
    }

    double start = now_s();
    if (many) {
        for (unsigned long long i = 0; i < EVENTS; i += RUN) {
            TRY(chronica_director_emit_many(d, "producer", run, RUN, NULL));
        }
    } else if (shared) {
        for (unsigned long long i = 0; i < EVENTS; i++) {
            TRY(chronica_director_emit_payload(d, "producer", "w1", handle));
        }
    } else {
        for (unsigned long long i = 0; i < EVENTS; i++) {
            TRY(chronica_director_emit(d, "producer", "w1", payload, sizeof payload));
        }
    }
    while (atomic_load_explicit(&counted, memory_order_relaxed) < want) {
        sched_yield();
    }
    double secs = now_s() - start;

    for (int i = 0; i < NODES; i++) {
        char uid[16];
        chronica_node_stats s = {0};
        snprintf(uid, sizeof uid, "node-%d", i);
        TRY(chronica_director_node_stats(d, uid, &s));
        if (s.dropped != 0) {
            fprintf(stderr, "%s dropped %llu events\n", uid, (unsigned long long)s.dropped);
            return 1;
        }
    }
    TRY(chronica_director_close(d, 5000, NULL));
    chronica_director_free(d);
    chronica_payload_free(handle);
    printf("RESULT %s %llu %.6f %ld\n", many ? "c-api-many" : shared ? "c-api-payload" : "c-api", want, secs,
           peak_kib());
    return 0;
}
