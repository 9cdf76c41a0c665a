/*
 * chronica_last_event_id: after every successful emit of the director and
 * the bus it is the id of the event the call created, the id its nodes
 * receive and a chronica.lagged notice counts in; 0 before the thread's
 * first emit; a failed emit leaves it as it was; it is the calling
 * thread's own, even when a hook runs an emit of its own in the middle of
 * the call. Ends with "N passed, N failed".
 */
#include "harness.h"

/* The id of the only recorded event on `topic`; 0 when there is not
   exactly one. */
static uint64_t id_received(recorder *r, const char *topic) {
    uint64_t id = 0;
    int n = 0;
    for (size_t i = 0; i < rec_len(r); i++) {
        rec_event e = rec_at(r, i);
        if (strcmp(e.topic, topic) == 0) {
            id = e.id;
            n++;
        }
    }
    return n == 1 ? id : 0;
}

struct topic_ctx {
    recorder *r;
    const char *topic;
};

static int has_topic(void *p) {
    struct topic_ctx *c = p;
    return id_received(c->r, c->topic) != 0;
}

/* Checks that the last event id is above `*prev`, that node `r` received
   exactly one event on `topic` and with that id, and moves `*prev` on. */
static void check_received(recorder *r, const char *topic, uint64_t *prev) {
    uint64_t id = chronica_last_event_id();
    CHECK(id > *prev);
    struct topic_ctx c = {r, topic};
    CHECK(wait_until(has_topic, &c));
    CHECK(id_received(r, topic) == id);
    if (id_received(r, topic) != id) {
        fprintf(stderr, "  %s: last event id %llu, received %llu\n", topic, (unsigned long long)id,
                (unsigned long long)id_received(r, topic));
    }
    *prev = id;
}

static void *read_on_a_new_thread(void *out) {
    *(uint64_t *)out = chronica_last_event_id();
    return NULL;
}

/* Every emit of the director records its event's id. */
static void test_every_director_emit(void) {
    uint64_t fresh = 99;
    pthread_t t;
    pthread_create(&t, NULL, read_on_a_new_thread, &fresh);
    pthread_join(t, NULL);
    CHECK(fresh == 0); /* nothing emitted on that thread */
    CHECK(chronica_last_event_id() == 0);

    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    recorder *a = rec_new("a");
    CHECK_OK(reg(d, a));
    uint64_t prev = 0;
    const uint8_t *p = (const uint8_t *)"x";

    CHECK_OK(chronica_director_emit(d, NULL, "emit", p, 1));
    check_received(a, "emit", &prev);
    CHECK_OK(chronica_director_try_emit(d, NULL, "try_emit", p, 1));
    check_received(a, "try_emit", &prev);
    chronica_payload *pl = NULL;
    CHECK_OK(chronica_payload_new(p, 1, &pl));
    CHECK_OK(chronica_director_emit_payload(d, NULL, "emit_payload", pl));
    chronica_payload_free(pl);
    check_received(a, "emit_payload", &prev);
    CHECK_OK(chronica_director_emit_keyed(d, NULL, "emit_keyed", p, 1, p, 1));
    check_received(a, "emit_keyed", &prev);
    CHECK_OK(chronica_director_emit_to(d, NULL, "a", "emit_to", p, 1));
    check_received(a, "emit_to", &prev);
    CHECK_OK(chronica_director_try_emit_to(d, NULL, "a", "try_emit_to", p, 1));
    check_received(a, "try_emit_to", &prev);
    CHECK_OK(chronica_director_emit_root(d, "emit_root", p, 1));
    check_received(a, "emit_root", &prev);
    CHECK_OK(chronica_director_emit_root_to(d, "a", "emit_root_to", p, 1));
    check_received(a, "emit_root_to", &prev);

    /* a failed emit leaves it as it was */
    CHECK_STATUS(chronica_director_emit(d, "ghost", "t", p, 1), CHRONICA_ERR_UNKNOWN_NODE);
    CHECK_STATUS(chronica_director_emit_to(d, NULL, "ghost", "t", p, 1), CHRONICA_ERR_UNKNOWN_NODE);
    CHECK_STATUS(chronica_director_emit_root(d, NULL, p, 1), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK(chronica_last_event_id() == prev);

    /* another thread's emits do not change this thread's value */
    uint64_t there = 0;
    pthread_create(&t, NULL, read_on_a_new_thread, &there);
    pthread_join(t, NULL);
    CHECK(there == 0);

    CHECK_OK(chronica_director_close(d, 1000, NULL));
    CHECK_STATUS(chronica_director_emit(d, NULL, "t", p, 1), CHRONICA_ERR_CLOSED);
    CHECK(chronica_last_event_id() == prev);
    chronica_director_free(d);
    rec_delete(a);
}

struct thread_emit {
    chronica_director *d;
    uint64_t id;
};

static void *emit_on_a_thread(void *p) {
    struct thread_emit *t = p;
    CHECK_OK(emit_str(t->d, NULL, "elsewhere", "x"));
    t->id = chronica_last_event_id();
    return NULL;
}

static void test_it_is_the_threads_own(void) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    CHECK_OK(emit_str(d, NULL, "here", "x"));
    uint64_t mine = chronica_last_event_id();
    struct thread_emit t = {d, 0};
    pthread_t th;
    pthread_create(&th, NULL, emit_on_a_thread, &t);
    pthread_join(th, NULL);
    CHECK(t.id > mine);
    CHECK(chronica_last_event_id() == mine);
    chronica_director_free(d);
}

/* Under the block policy an emit that times out consumes an id, but it
   failed: the value stays that of the last success. */
static void test_a_full_lane_leaves_it(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_queue_capacity(o, 1));
    CHECK_OK(chronica_options_set_overflow(o, CHRONICA_OVERFLOW_BLOCK));
    CHECK_OK(chronica_options_set_block_timeout(o, 10));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    CHECK_OK(chronica_director_register_with(d, "held", no, ok_send, NULL, NULL));
    chronica_node_options_free(no);
    CHECK_OK(emit_str(d, NULL, "t", "fills the lane"));
    uint64_t ok = chronica_last_event_id();
    CHECK(ok > 0);
    CHECK_STATUS(emit_str(d, NULL, "t", "waits, then fails"), CHRONICA_ERR_QUEUE_FULL);
    CHECK_STATUS(chronica_director_try_emit(d, NULL, "t", (const uint8_t *)"x", 1), CHRONICA_ERR_QUEUE_FULL);
    CHECK(chronica_last_event_id() == ok);
    CHECK_OK(chronica_director_emit_root(d, "root lane", NULL, 0));
    /* the two ids the failures consumed lie in between */
    CHECK(chronica_last_event_id() == ok + 3);
    chronica_director_free(d);
}

/* The first and last ids of the one chronica.lagged notice `r` received. */
static int lag_range(recorder *r, unsigned long long *first, unsigned long long *last) {
    for (size_t i = 0; i < rec_len(r); i++) {
        rec_event e = rec_at(r, i);
        if (strcmp(e.topic, "chronica.lagged") == 0) {
            const char *f = strstr(e.payload, "\"first_id\":"), *l = strstr(e.payload, "\"last_id\":");
            return f && l && sscanf(f, "\"first_id\":%llu", first) == 1 && sscanf(l, "\"last_id\":%llu", last) == 1;
        }
    }
    return 0;
}

/* The use it exists for: a producer matches a chronica.lagged notice's id
   range with the emits it made. A disconnected node with a lane of 4 gets
   10 events under drop-oldest: the first 6 are dropped. */
static void test_matches_a_lagged_notice(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_queue_capacity(o, 4));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    recorder *r = rec_new("slow");
    CHECK_OK(reg_with(d, r, no));
    chronica_node_options_free(no);
    uint64_t ids[10];
    for (int i = 0; i < 10; i++) {
        CHECK_OK(emit_str(d, NULL, "t", "x"));
        ids[i] = chronica_last_event_id();
    }
    CHECK_OK(chronica_director_node_connected(d, "slow"));
    CHECK(wait_idle(d, "slow", 6)); /* the pull, the notice, 4 events */
    unsigned long long first = 0, last = 0;
    CHECK(lag_range(r, &first, &last));
    CHECK(first == ids[0] && last == ids[5]);
    size_t user = 0;
    for (size_t i = 0; i < rec_len(r); i++) {
        rec_event e = rec_at(r, i);
        if (e.kind == CHRONICA_EVENT_USER) {
            CHECK(e.id == ids[6 + user]);
            user++;
        }
    }
    CHECK(user == 4);
    chronica_director_free(d);
    rec_delete(r);
}

/* A drop hook runs on the emitting thread in the middle of the emit, and
   emits from there: the outer emit's own id wins when it returns. */
struct hook_ctx {
    chronica_director *d;
    uint64_t dropped_id;
    uint64_t hook_emit_id;
};

static void emit_from_hook(void *ud, const char *uid, size_t uid_len, const chronica_event *e,
                           chronica_drop_reason why) {
    (void)uid;
    (void)uid_len;
    (void)why;
    struct hook_ctx *c = ud;
    if (c->dropped_id == 0) {
        c->dropped_id = e->id;
        CHECK_OK(chronica_director_emit_to(c->d, NULL, "sink", "from the hook", NULL, 0));
        c->hook_emit_id = chronica_last_event_id();
    }
}

static void test_an_emit_inside_a_hook(void) {
    struct hook_ctx c = {NULL, 0, 0};
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_queue_capacity(o, 1));
    CHECK_OK(chronica_options_set_overflow(o, CHRONICA_OVERFLOW_DROP_NEWEST));
    CHECK_OK(chronica_options_set_drop_hook(o, emit_from_hook, &c));
    CHECK_OK(chronica_director_new(o, &c.d));
    chronica_options_free(o);
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    CHECK_OK(chronica_node_options_add_topic(no, "t"));
    CHECK_OK(chronica_director_register_with(c.d, "held", no, ok_send, NULL, NULL));
    chronica_node_options_free(no);
    CHECK_OK(chronica_director_register(c.d, "sink", ok_send, NULL, NULL));
    CHECK_OK(emit_str(c.d, NULL, "t", "fills the lane"));
    CHECK_OK(emit_str(c.d, NULL, "t", "dropped at once"));
    uint64_t outer = chronica_last_event_id();
    CHECK(c.dropped_id != 0 && c.hook_emit_id > c.dropped_id);
    CHECK(outer == c.dropped_id);
    chronica_director_free(c.d);
}

/* ---- the bus ------------------------------------------------------------ */

static _Atomic uint64_t g_bus_seen;

static int32_t remember_id(void *ud, const chronica_event *e) {
    (void)ud;
    atomic_store(&g_bus_seen, e->id);
    return 0;
}

static int bus_seen(void *want) {
    return atomic_load(&g_bus_seen) == *(uint64_t *)want;
}

static void test_bus_emits(void) {
    chronica_bus *bus = NULL;
    CHECK_OK(chronica_bus_new_with_options(NULL, &bus));
    chronica_subscription *s = NULL;
    CHECK_OK(chronica_bus_on(bus, "b.>", NULL, remember_id, NULL, NULL, &s));
    uint64_t before = chronica_last_event_id();
    CHECK_OK(chronica_bus_emit(bus, "b.plain", (const uint8_t *)"x", 1));
    uint64_t id = chronica_last_event_id();
    CHECK(id != before);
    CHECK(wait_until(bus_seen, &id));
    CHECK_OK(chronica_bus_emit_with(bus, "b.keyed", (const uint8_t *)"k", 1, "text/plain", (const uint8_t *)"x", 1));
    uint64_t id2 = chronica_last_event_id();
    CHECK(id2 > id);
    CHECK(wait_until(bus_seen, &id2));
    CHECK_STATUS(chronica_bus_emit(bus, NULL, NULL, 0), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK(chronica_last_event_id() == id2);
    CHECK_OK(chronica_bus_off(bus, s, 1000, NULL));
    chronica_subscription_free(s);
    chronica_bus_free(bus);
}

int main(void) {
    test_every_director_emit();
    test_it_is_the_threads_own();
    test_a_full_lane_leaves_it();
    test_matches_a_lagged_notice();
    test_an_emit_inside_a_hook();
    test_bus_emits();
    return finish();
}
