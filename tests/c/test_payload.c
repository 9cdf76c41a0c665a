/*
 * Payload bytes on their way through the emit family: the copy
 * chronica_director_emit makes (carved from a per-thread slab when small)
 * and the shared chronica_payload that chronica_director_emit_payload sends
 * without a copy. Every delivered payload is checked byte for byte, after
 * the emitter has overwritten its own buffer, under ASan and valgrind.
 */
#include "harness.h"

#define MAX_LEN 700          /* beyond the slab's small-payload limit */
#define PRODUCERS 4
#define PER_PRODUCER 3000
#define FANOUT_EVENTS 200

/* The bytes of emit `seq` of producer `who`: its length and every byte
   follow from those two numbers, and the first bytes carry them. */
static size_t length_of(unsigned seq) {
    return (seq * 37u) % MAX_LEN;
}

static uint8_t byte_of(unsigned who, unsigned seq, size_t j) {
    return (uint8_t)(who * 31u + seq * 7u + j);
}

static void fill(uint8_t *buf, unsigned who, unsigned seq) {
    for (size_t j = 0; j < length_of(seq); j++) {
        buf[j] = byte_of(who, seq, j);
    }
}

/* ---- a node that checks every payload against the pattern ---------------- */

typedef struct checker {
    unsigned next[PRODUCERS];  /* the sequence number expected next, per producer */
    atomic_int received;
    atomic_int bad;
} checker;

static int32_t check_send(void *user_data, const chronica_event *events, size_t count) {
    checker *c = user_data;
    for (size_t i = 0; i < count; i++) {
        const chronica_event *e = &events[i];
        if (e->kind != CHRONICA_EVENT_USER) {
            continue;
        }
        /* the topic names the producer: "p0".."p3" */
        unsigned who = e->topic_len == 2 ? (unsigned)(e->topic[1] - '0') : PRODUCERS;
        if (who >= PRODUCERS) {
            atomic_fetch_add(&c->bad, 1);
            atomic_fetch_add(&c->received, 1);
            continue;
        }
        unsigned seq = c->next[who]++;
        int ok = e->payload != NULL && e->payload_len == length_of(seq);
        for (size_t j = 0; ok && j < e->payload_len; j++) {
            ok = e->payload[j] == byte_of(who, seq, j);
        }
        if (!ok) {
            atomic_fetch_add(&c->bad, 1);
        }
        atomic_fetch_add(&c->received, 1);
    }
    return 0;
}

typedef struct producer_arg {
    chronica_director *d;
    unsigned who;
    int failures;
} producer_arg;

static void *produce(void *p) {
    producer_arg *a = p;
    uint8_t buf[MAX_LEN];
    char topic[4] = {'p', (char)('0' + a->who), '\0', '\0'};
    for (unsigned seq = 0; seq < PER_PRODUCER; seq++) {
        fill(buf, a->who, seq);
        if (chronica_director_emit(a->d, NULL, topic, buf, length_of(seq)) != CHRONICA_OK) {
            a->failures++;
        }
        memset(buf, 0xee, sizeof buf); /* the caller reuses its buffer at once */
    }
    return NULL;
}

/* Several threads emit payloads of every size from 0 to MAX_LEN bytes
   (small ones share slabs, large ones do not); each arrives intact and in
   order per producer, long after the emitter overwrote its buffer. */
static void test_copies_arrive_intact(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_overflow(o, CHRONICA_OVERFLOW_BLOCK));
    CHECK_OK(chronica_options_set_block_timeout(o, 60000));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    checker *c = calloc(1, sizeof *c);
    CHECK_OK(chronica_director_register(d, "checker", check_send, c, NULL));

    pthread_t threads[PRODUCERS];
    producer_arg args[PRODUCERS];
    for (unsigned k = 0; k < PRODUCERS; k++) {
        args[k] = (producer_arg){d, k, 0};
        pthread_create(&threads[k], NULL, produce, &args[k]);
    }
    int failures = 0;
    for (unsigned k = 0; k < PRODUCERS; k++) {
        pthread_join(threads[k], NULL);
        failures += args[k].failures;
    }
    CHECK(failures == 0);
    CHECK(wait_count(&c->received, PRODUCERS * PER_PRODUCER));
    CHECK(atomic_load(&c->bad) == 0);
    chronica_director_free(d);
    free(c);
}

/* ---- fan-out: one payload, never copied per node ------------------------- */

static int32_t ignore_send(void *user_data, const chronica_event *events, size_t count) {
    (void)user_data;
    (void)events;
    (void)count;
    return 0;
}

typedef struct witness {
    uintptr_t seen[FANOUT_EVENTS];  /* the payload address of each user event */
    size_t n;
    atomic_int received;
    atomic_int bad;
} witness;

static const char SHARED_TEXT[] = "the same bytes for everyone";

static int32_t witness_send(void *user_data, const chronica_event *events, size_t count) {
    witness *w = user_data;
    for (size_t i = 0; i < count; i++) {
        const chronica_event *e = &events[i];
        if (e->kind != CHRONICA_EVENT_USER) {
            continue;
        }
        int ok = w->n < FANOUT_EVENTS && e->payload_len == sizeof SHARED_TEXT &&
                 memcmp(e->payload, SHARED_TEXT, sizeof SHARED_TEXT) == 0;
        if (!ok) {
            atomic_fetch_add(&w->bad, 1);
        } else {
            w->seen[w->n++] = (uintptr_t)e->payload;
        }
        atomic_fetch_add(&w->received, 1);
    }
    return 0;
}

static void *emit_shared(void *p) {
    void **a = p;
    chronica_director *d = a[0];
    const chronica_payload *shared = a[1];
    for (int i = 0; i < FANOUT_EVENTS / 2; i++) {
        if (chronica_director_emit_payload(d, "producer", "fan", shared) != CHRONICA_OK) {
            a[2] = (void *)1;
        }
    }
    return NULL;
}

/* Two threads emit one chronica_payload to two nodes, then free it before
   anything is delivered: every event arrives intact, and every node sees
   the very same bytes (one buffer, shared, never copied). */
static void test_shared_payload(void) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    witness *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false)); /* hold events until both emitters are done */
    CHECK_OK(chronica_director_register_with(d, "a", no, witness_send, a, NULL));
    CHECK_OK(chronica_director_register_with(d, "b", no, witness_send, b, NULL));
    chronica_node_options_free(no);
    CHECK_OK(chronica_director_register(d, "producer", ignore_send, NULL, NULL));

    uint8_t buf[sizeof SHARED_TEXT];
    memcpy(buf, SHARED_TEXT, sizeof buf);
    chronica_payload *shared = NULL;
    CHECK_OK(chronica_payload_new(buf, sizeof buf, &shared));
    CHECK(shared != NULL);
    memset(buf, 0, sizeof buf); /* the payload holds its own copy */

    void *args[2][3] = {{d, shared, NULL}, {d, shared, NULL}};
    pthread_t t[2];
    pthread_create(&t[0], NULL, emit_shared, args[0]);
    pthread_create(&t[1], NULL, emit_shared, args[1]);
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    CHECK(args[0][2] == NULL && args[1][2] == NULL);
    chronica_payload_free(shared); /* the events keep the bytes */

    CHECK_OK(chronica_director_node_connected(d, "a"));
    CHECK_OK(chronica_director_node_connected(d, "b"));
    CHECK(wait_count(&a->received, FANOUT_EVENTS));
    CHECK(wait_count(&b->received, FANOUT_EVENTS));
    CHECK(atomic_load(&a->bad) == 0 && atomic_load(&b->bad) == 0);
    int same = a->n == FANOUT_EVENTS && b->n == FANOUT_EVENTS;
    for (size_t i = 0; same && i < FANOUT_EVENTS; i++) {
        same = a->seen[i] == a->seen[0] && b->seen[i] == a->seen[0];
    }
    CHECK(same);
    chronica_director_free(d);
    free(a);
    free(b);
}

/* The standard emit copies once per emit, not once per node: both nodes
   see one address for each event. */
static void test_copy_is_shared_by_nodes(void) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    witness *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    CHECK_OK(chronica_director_register(d, "a", witness_send, a, NULL));
    CHECK_OK(chronica_director_register(d, "b", witness_send, b, NULL));
    for (int i = 0; i < FANOUT_EVENTS; i++) {
        CHECK_STATUS(chronica_director_emit(d, NULL, "fan", (const uint8_t *)SHARED_TEXT, sizeof SHARED_TEXT),
                     CHRONICA_OK);
    }
    CHECK(wait_count(&a->received, FANOUT_EVENTS));
    CHECK(wait_count(&b->received, FANOUT_EVENTS));
    CHECK(atomic_load(&a->bad) == 0 && atomic_load(&b->bad) == 0);
    int same = a->n == FANOUT_EVENTS && b->n == FANOUT_EVENTS;
    for (size_t i = 0; same && i < FANOUT_EVENTS; i++) {
        same = a->seen[i] == b->seen[i];
    }
    CHECK(same);
    chronica_director_free(d);
    free(a);
    free(b);
}

/* An empty payload, made from NULL: delivered with length 0 and a pointer
   that is not NULL (as every event pointer but the key). */
static int32_t empty_send(void *user_data, const chronica_event *events, size_t count) {
    atomic_int *n = user_data;
    for (size_t i = 0; i < count; i++) {
        if (events[i].kind == CHRONICA_EVENT_USER && events[i].payload != NULL && events[i].payload_len == 0) {
            atomic_fetch_add(n, 1);
        }
    }
    return 0;
}

static void test_empty_payload(void) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    atomic_int n = 0;
    CHECK_OK(chronica_director_register(d, "a", empty_send, &n, NULL));
    chronica_payload *empty = NULL;
    CHECK_OK(chronica_payload_new(NULL, 0, &empty));
    CHECK_OK(chronica_director_emit_payload(d, NULL, "e", empty));
    CHECK_OK(chronica_director_emit(d, NULL, "e", NULL, 0));
    chronica_payload_free(empty);
    CHECK(wait_count(&n, 2));
    chronica_director_free(d);
}

int main(void) {
    test_copies_arrive_intact();
    test_shared_payload();
    test_copy_is_shared_by_nodes();
    test_empty_payload();
    return finish();
}
