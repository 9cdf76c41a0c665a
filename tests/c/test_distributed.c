/*
 * Distributed mode through the C API (issue 6), over the in-memory broker:
 * two directors, each joined to one named hub ("memory://NAME") exactly as
 * processes join a real broker. Broadcast across instances, unicast to a
 * remote node, a consumer group spanning both instances, signed root
 * events, forged root events refused, stats, refused arguments, close and
 * free. Output ends with "N passed, N failed".
 */
#include "distributed_harness.h"

typedef struct instance {
    chronica_director *d;
    chronica_distributed *x;
} instance;

static instance join(const char *url, const char *id, const char *token, uint32_t ack_mode) {
    instance in = {NULL, NULL};
    in.d = director_with(token);
    chronica_distributed_options *xo = xoptions(id, ack_mode);
    CHECK_OK(chronica_distributed_new(in.d, url, xo, &in.x));
    chronica_distributed_options_free(xo);
    return in;
}

static void leave(instance in) {
    uint64_t unpublished = 99, undelivered = 99;
    CHECK_OK(chronica_distributed_close(in.x, 5000, &unpublished));
    CHECK(unpublished == 0);
    CHECK_STATUS(chronica_distributed_close(in.x, 5000, NULL), CHRONICA_ERR_CLOSED);
    chronica_distributed_free(in.x);
    CHECK_OK(chronica_director_close(in.d, 5000, &undelivered));
    CHECK(undelivered == 0);
    chronica_director_free(in.d);
}

static chronica_status xreg(instance in, recorder *r, const char *topic, const char *group) {
    return xreg_on(in.d, in.x, r, topic, group);
}

static chronica_status xemit(instance in, const char *source, const char *topic, const char *payload, uint64_t *id) {
    return xemit_on(in.x, source, topic, payload, id);
}

struct stat_ctx {
    chronica_distributed *x;
    int field; /* 0 published, 1 received, 2 rejected_forged, 3 injected, 4 unicast_not_here */
    uint64_t want;
};

static int stat_pred(void *p) {
    struct stat_ctx *c = p;
    chronica_distributed_stats s = {.struct_size = sizeof s};
    if (chronica_distributed_get_stats(c->x, &s) != CHRONICA_OK) {
        return 0;
    }
    uint64_t v = c->field == 0   ? s.published
                 : c->field == 1 ? s.received
                 : c->field == 2 ? s.rejected_forged
                 : c->field == 3 ? s.injected
                                 : s.unicast_not_here;
    return v >= c->want;
}

static int wait_stat(chronica_distributed *x, int field, uint64_t want) {
    struct stat_ctx c = {x, field, want};
    return wait_until(stat_pred, &c);
}

static void test_broadcast_and_unicast(void) {
    instance a = join("memory://c-broadcast", "ca", "tok", CHRONICA_ACK_ENQUEUE);
    instance b = join("memory://c-broadcast", "cb", "tok", CHRONICA_ACK_DELIVERY);
    recorder *src = rec_new("src"), *local = rec_new("local"), *remote = rec_new("remote");
    recorder *direct = rec_new("direct");
    CHECK_OK(xreg(a, src, "orders.*", NULL));
    CHECK_OK(xreg(a, local, "orders.*", NULL));
    CHECK_OK(xreg(b, remote, "orders.*", NULL));
    CHECK_OK(xreg(b, direct, "never.matches", NULL));

    uint64_t prev = 0;
    char payload[16];
    for (int i = 0; i < 5; i++) {
        uint64_t id = 0;
        snprintf(payload, sizeof payload, "o%d", i);
        CHECK_OK(xemit(a, "src", "orders.created", payload, &id));
        CHECK(id > prev);
        CHECK(chronica_last_event_id() == id); /* as id_out says */
        prev = id;
    }
    CHECK(wait_events(remote, CHRONICA_EVENT_USER, "orders.created", 5));
    CHECK(wait_events(local, CHRONICA_EVENT_USER, "orders.created", 5));
    /* Order kept, payload and source carried across the broker. */
    size_t seen = 0;
    for (size_t i = 0; i < rec_len(remote); i++) {
        rec_event e = rec_at(remote, i);
        if (e.kind != CHRONICA_EVENT_USER) {
            continue;
        }
        snprintf(payload, sizeof payload, "o%zu", seen);
        CHECK(strcmp(e.payload, payload) == 0);
        CHECK(strcmp(e.source, "src") == 0);
        seen++;
    }
    CHECK(seen == 5);
    CHECK(rec_count(src, CHRONICA_EVENT_USER, NULL) == 0);

    /* Unicast to a node on the other instance, whatever its topics. */
    uint64_t id = 0;
    CHECK_OK(chronica_distributed_emit_to(a.x, NULL, "direct", "dm", (const uint8_t *)"hi", 2, &id));
    CHECK(chronica_last_event_id() == id);
    CHECK(wait_events(direct, CHRONICA_EVENT_USER, "dm", 1));
    CHECK(strcmp(rec_at(direct, rec_len(direct) - 1).payload, "hi") == 0);

    CHECK(wait_stat(a.x, 0, 6));
    CHECK(wait_stat(b.x, 3, 6));
    chronica_distributed_stats s = {.struct_size = sizeof s};
    CHECK_OK(chronica_distributed_get_stats(a.x, &s));
    CHECK(s.published == 6);
    CHECK(s.buffer_dropped == 0 && s.malformed == 0 && s.rejected_forged == 0);

    /* Every instance reads every unicast; the ones without its target
     * count it, so a unicast to a uid nobody has is counted by both. */
    CHECK(wait_stat(a.x, 4, 1));
    CHECK_OK(chronica_distributed_emit_to(a.x, NULL, "nobody", "dm", (const uint8_t *)"lost", 4, NULL));
    CHECK(wait_stat(a.x, 4, 2));
    CHECK(wait_stat(b.x, 4, 1));
    CHECK_OK(chronica_distributed_get_stats(b.x, &s));
    CHECK(s.unicast_not_here == 1);
    CHECK(rec_count(direct, CHRONICA_EVENT_USER, NULL) == 1);
    bool flushed = false;
    CHECK_OK(chronica_distributed_flush(a.x, 5000, &flushed));
    CHECK(flushed);

    leave(a);
    leave(b);
    CHECK(atomic_load(&src->freed) == 1 && atomic_load(&remote->freed) == 1);
    rec_delete(src);
    rec_delete(local);
    rec_delete(remote);
    rec_delete(direct);
}

static void test_group_spans_instances(void) {
    instance a = join("memory://c-group", "ga", "tok", CHRONICA_ACK_ENQUEUE);
    instance b = join("memory://c-group", "gb", "tok", CHRONICA_ACK_ENQUEUE);
    recorder *wa = rec_new("worker-a"), *wb = rec_new("worker-b");
    CHECK_OK(xreg(a, wa, "jobs", "workers"));
    CHECK_OK(xreg(b, wb, "jobs", "workers"));
    enum { N = 40 };
    char payload[16];
    for (int i = 0; i < N; i++) {
        snprintf(payload, sizeof payload, "%d", i);
        CHECK_OK(xemit(a, NULL, "jobs", payload, NULL));
    }
    int done = 0;
    int64_t end = now_ms() + WAIT_DEADLINE_MS;
    while (now_ms() < end) {
        if (rec_count(wa, CHRONICA_EVENT_USER, "jobs") + rec_count(wb, CHRONICA_EVENT_USER, "jobs") >= N) {
            done = 1;
            break;
        }
        sleep_ms(2);
    }
    CHECK(done);
    CHECK_OK(chronica_distributed_flush(a.x, 5000, NULL));
    sleep_ms(50); /* a second copy would come after the first: time to show */
    /* Each job exactly once across the two members. */
    int seen[N] = {0};
    recorder *rs[2] = {wa, wb};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < rec_len(rs[k]); i++) {
            rec_event e = rec_at(rs[k], i);
            if (e.kind == CHRONICA_EVENT_USER) {
                int v = atoi(e.payload);
                if (v >= 0 && v < N) {
                    seen[v]++;
                }
            }
        }
    }
    int exact = 1;
    for (int i = 0; i < N; i++) {
        exact &= seen[i] == 1;
    }
    CHECK(exact);
    leave(a);
    leave(b);
    rec_delete(wa);
    rec_delete(wb);
}

static void test_root_events(void) {
    instance a = join("memory://c-root", "ra", "secret", CHRONICA_ACK_ENQUEUE);
    instance b = join("memory://c-root", "rb", "secret", CHRONICA_ACK_ENQUEUE);
    instance evil = join("memory://c-root", "evil", "guess", CHRONICA_ACK_ENQUEUE);
    recorder *na = rec_new("na"), *nb = rec_new("nb");
    CHECK_OK(xreg(a, na, NULL, NULL));
    CHECK_OK(xreg(b, nb, NULL, NULL));

    CHECK_OK(chronica_distributed_emit_root(a.x, NULL, "app.reload", (const uint8_t *)"{}", 2, NULL));
    CHECK(wait_events(na, CHRONICA_EVENT_ROOT, "app.reload", 1));
    CHECK(wait_events(nb, CHRONICA_EVENT_ROOT, "app.reload", 1));
    for (size_t i = 0; i < rec_len(nb); i++) {
        rec_event e = rec_at(nb, i);
        if (e.kind == CHRONICA_EVENT_ROOT && strcmp(e.topic, "app.reload") == 0) {
            CHECK(strcmp(e.token, "secret") == 0);
        }
    }
    CHECK_OK(chronica_distributed_emit_root(a.x, "nb", "app.only-nb", NULL, 0, NULL));
    CHECK(wait_events(nb, CHRONICA_EVENT_ROOT, "app.only-nb", 1));
    CHECK(rec_count(na, CHRONICA_EVENT_ROOT, "app.only-nb") == 0);

    /* A root event signed with another token is refused and counted. */
    CHECK_OK(chronica_distributed_emit_root(evil.x, NULL, "app.takeover", NULL, 0, NULL));
    CHECK(wait_stat(b.x, 2, 1));
    CHECK(wait_stat(a.x, 2, 1));
    CHECK_OK(xemit(evil, NULL, "marker", "m", NULL));
    CHECK(wait_events(nb, CHRONICA_EVENT_USER, "marker", 1));
    CHECK(rec_count(nb, CHRONICA_EVENT_ROOT, "app.takeover") == 0);
    CHECK(rec_count(na, CHRONICA_EVENT_ROOT, "app.takeover") == 0);

    leave(evil);
    leave(a);
    leave(b);
    rec_delete(na);
    rec_delete(nb);
}

struct settled_ctx {
    chronica_director *d;
    const char *uid;
};

static int settled_pred(void *p) {
    struct settled_ctx *c = p;
    chronica_node_stats s = {0};
    return chronica_director_node_stats(c->d, c->uid, &s) == CHRONICA_OK && s.pending == 0;
}

/* chronica_distributed_try_emit / _try_emit_to: a full local lane under
   CHRONICA_OVERFLOW_BLOCK fails them at once, reaching no node and
   publishing nothing, where chronica_distributed_emit would wait; once the
   lane has room they go through. */
static void test_try_emit(void) {
    chronica_director *d = NULL;
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_trust_token(o, "tok"));
    CHECK_OK(chronica_options_set_queue_capacity(o, 1));
    CHECK_OK(chronica_options_set_overflow(o, CHRONICA_OVERFLOW_BLOCK));
    CHECK_OK(chronica_options_set_block_timeout(o, 600000));
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    chronica_distributed_options *xo = xoptions("try", CHRONICA_ACK_ENQUEUE);
    chronica_distributed *x = NULL;
    CHECK_OK(chronica_distributed_new(d, "memory://c-try", xo, &x));
    chronica_distributed_options_free(xo);
    recorder *r = rec_new("held");
    r->d = d;
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false)); /* holds what it gets */
    CHECK_OK(chronica_distributed_register_with(x, "held", no, rec_send, r, rec_free));
    chronica_node_options_free(no);

    const uint8_t *p = (const uint8_t *)"x";
    uint64_t id = 0;
    CHECK_OK(chronica_distributed_try_emit(x, NULL, "t", p, 1, &id)); /* fills the lane */
    CHECK(id > 0);
    bool flushed = false;
    CHECK_OK(chronica_distributed_flush(x, 5000, &flushed));
    CHECK(flushed);
    chronica_distributed_stats before = {.struct_size = sizeof before};
    chronica_node_stats nbefore = {0};
    CHECK_OK(chronica_distributed_get_stats(x, &before));
    CHECK_OK(chronica_director_node_stats(d, "held", &nbefore));
    CHECK(before.published == 1);

    uint64_t untouched = 42;
    CHECK_STATUS(chronica_distributed_try_emit(x, NULL, "t", p, 1, &untouched), CHRONICA_ERR_QUEUE_FULL);
    CHECK_STATUS(chronica_distributed_try_emit_to(x, NULL, "held", "t", p, 1, &untouched), CHRONICA_ERR_QUEUE_FULL);
    CHECK(untouched == 42);
    CHECK(chronica_last_event_id() == id); /* the failures left it */
    CHECK_OK(chronica_distributed_flush(x, 5000, NULL));
    chronica_distributed_stats after = {.struct_size = sizeof after};
    chronica_node_stats nafter = {0};
    CHECK_OK(chronica_distributed_get_stats(x, &after));
    CHECK_OK(chronica_director_node_stats(d, "held", &nafter));
    CHECK(after.published == before.published && after.buffered == 0 && after.buffer_dropped == 0);
    CHECK(nafter.accepted == nbefore.accepted && nafter.dropped == 0);

    /* Bad arguments are refused as by chronica_distributed_emit. */
    CHECK_STATUS(chronica_distributed_try_emit(NULL, NULL, "t", p, 1, NULL), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_try_emit(x, "ghost", "t", p, 1, NULL), CHRONICA_ERR_UNKNOWN_NODE);
    CHECK_STATUS(chronica_distributed_try_emit_to(x, NULL, "", "t", p, 1, NULL), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(chronica_distributed_try_emit_to(x, NULL, NULL, "t", p, 1, NULL), CHRONICA_ERR_NULL_ARGUMENT);

    CHECK_OK(chronica_director_node_connected(d, "held"));
    CHECK(wait_events(r, CHRONICA_EVENT_USER, "t", 1));
    struct settled_ctx settled = {d, "held"};
    CHECK(wait_until(settled_pred, &settled));
    CHECK_OK(chronica_distributed_try_emit_to(x, NULL, "held", "t", p, 1, NULL));
    CHECK(wait_events(r, CHRONICA_EVENT_USER, "t", 2));

    CHECK_OK(chronica_distributed_close(x, 5000, NULL));
    chronica_distributed_free(x);
    uint64_t undelivered = 99;
    CHECK_OK(chronica_director_close(d, 5000, &undelivered));
    CHECK(undelivered == 0);
    chronica_director_free(d);
    CHECK(atomic_load(&r->freed) == 1);
    rec_delete(r);
}

static void test_refused_arguments(void) {
    chronica_director *d = NULL;
    chronica_distributed *x = NULL;
    chronica_distributed_options *o = chronica_distributed_options_new();

    /* Root events are signed with the trust token: an empty one is refused. */
    CHECK_OK(chronica_director_new(NULL, &d));
    CHECK_STATUS(chronica_distributed_new(d, "memory://r", NULL, &x), CHRONICA_ERR_INVALID_ARGUMENT);
    char no_token[256];
    chronica_last_error(no_token, sizeof no_token);
    CHECK(strstr(no_token, "trust token") != NULL);
    CHECK(x == NULL);
    chronica_director_free(d);
    d = director_with("tok");

    CHECK_STATUS(chronica_distributed_options_set_instance_id(o, "has space"), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_instance_id(o, NULL), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_topic_prefix(o, "trailing."), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_ack_mode(o, 7), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_connect_timeout(o, 0), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_group_watch_interval(o, 0), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_group_watch_interval(NULL, 250), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_ack_mode(NULL, 0), CHRONICA_ERR_NULL_ARGUMENT);
    /* The object is checked before the argument, as everywhere else. */
    CHECK_STATUS(chronica_distributed_options_set_ack_mode(NULL, 7), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_connect_timeout(NULL, 0), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_group_watch_interval(NULL, 0), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_instance_id(NULL, NULL), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_instance_id(NULL, "has space"), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_topic_prefix(NULL, "trailing."), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_options_set_content_type(NULL, "\xff"), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_OK(chronica_distributed_options_set_content_type(o, "application/json"));
    CHECK_OK(chronica_distributed_options_set_content_type(o, NULL));
    CHECK_OK(chronica_distributed_options_set_connect_timeout(o, 2000));

    CHECK_STATUS(chronica_distributed_new(NULL, "memory://r", o, &x), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_new(d, NULL, o, &x), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_new(d, "memory://r", o, NULL), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_new(d, "pigeon://coop", o, &x), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(chronica_distributed_new(d, "no-scheme", o, &x), CHRONICA_ERR_INVALID_ARGUMENT);
    char why[256];
    chronica_last_error(why, sizeof why);
    CHECK(strstr(why, "no-scheme") != NULL);
    CHECK(x == NULL);

    CHECK_OK(chronica_distributed_new(d, "memory://r", NULL, &x));
    CHECK_STATUS(chronica_distributed_emit(x, "ghost", "t", NULL, 0, NULL), CHRONICA_ERR_UNKNOWN_NODE);
    CHECK_STATUS(chronica_distributed_emit(x, NULL, NULL, NULL, 0, NULL), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_emit(x, NULL, "t", NULL, 3, NULL), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_emit_to(x, NULL, "", "t", NULL, 0, NULL), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(chronica_distributed_emit_root(x, NULL, NULL, NULL, 0, NULL), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_register_with(x, "n", NULL, NULL, NULL, NULL), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_get_stats(x, NULL), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_get_stats(NULL, NULL), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_join_group(NULL, "g"), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_join_group(x, NULL), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_distributed_join_group(x, ""), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(chronica_distributed_join_group(x, "\xff"), CHRONICA_ERR_INVALID_UTF8);
    CHECK_OK(chronica_distributed_join_group(x, "g"));
    CHECK_OK(chronica_distributed_join_group(x, "g")); /* idempotent */

    /* A refused registration keeps user_data with the caller. */
    recorder *r = rec_new("dup");
    recorder *r2 = rec_new("dup");
    CHECK_OK(chronica_distributed_register_with(x, "dup", NULL, rec_send, r, rec_free));
    CHECK_STATUS(chronica_distributed_register_with(x, "dup", NULL, rec_send, r2, rec_free),
                 CHRONICA_ERR_DUPLICATE_NODE);

    CHECK_OK(chronica_distributed_close(x, 1000, NULL));
    CHECK_STATUS(chronica_distributed_emit(x, NULL, "t", NULL, 0, NULL), CHRONICA_ERR_CLOSED);
    CHECK_STATUS(chronica_distributed_join_group(x, "g"), CHRONICA_ERR_CLOSED);
    /* A closed fabric registers nothing (the director stays open): the
       status says so, and user_data stays with the caller. */
    recorder *late = rec_new("late");
    chronica_node_options *grouped = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_group(grouped, "g"));
    CHECK_STATUS(chronica_distributed_register_with(x, "late", grouped, rec_send, late, rec_free),
                 CHRONICA_ERR_CLOSED);
    chronica_node_options_free(grouped);
    chronica_node_stats ns = {0};
    CHECK_STATUS(chronica_director_node_stats(d, "late", &ns), CHRONICA_ERR_UNKNOWN_NODE);
    chronica_distributed_stats s = {.struct_size = sizeof s};
    CHECK_OK(chronica_distributed_get_stats(x, &s));
    chronica_distributed_free(x);
    chronica_distributed_free(NULL);
    chronica_distributed_options_free(o);
    chronica_distributed_options_free(NULL);
    chronica_director_free(d);
    CHECK(atomic_load(&r->freed) == 1);
    CHECK(atomic_load(&r2->freed) == 0);
    CHECK(atomic_load(&late->freed) == 0);
    rec_delete(r);
    rec_delete(r2);
    rec_delete(late);
}

static void test_free_without_close(void) {
    /* Freeing an open handle leaves the fabric; the director stays usable. */
    instance a = join("memory://c-free", "fa", "tok", CHRONICA_ACK_ENQUEUE);
    recorder *r = rec_new("n");
    CHECK_OK(xreg(a, r, NULL, NULL));
    CHECK_OK(xemit(a, NULL, "t", "x", NULL));
    chronica_distributed_free(a.x);
    CHECK_OK(emit_str(a.d, NULL, "still", "local"));
    CHECK(wait_events(r, CHRONICA_EVENT_USER, "still", 1));
    chronica_director_free(a.d);
    CHECK(atomic_load(&r->freed) == 1);
    rec_delete(r);
}

/* A director drop hook runs on the emitting thread, inside the
   chronica_distributed_emit that overflowed the lane. A free or close of
   that distributed handle from there is refused: until session 18 the
   free went through and the emit went on with the freed handle. */
static chronica_distributed *g_hooked;
static atomic_int g_hook_runs;
static chronica_status g_hook_close;
static char g_hook_free_error[256];

static void free_from_hook(void *ud, const char *uid, size_t uid_len, const chronica_event *e,
                           chronica_drop_reason why) {
    (void)ud;
    (void)uid;
    (void)uid_len;
    (void)e;
    (void)why;
    if (atomic_fetch_add(&g_hook_runs, 1) == 0) {
        g_hook_close = chronica_distributed_close(g_hooked, 100, NULL);
        chronica_distributed_free(g_hooked);
        chronica_last_error(g_hook_free_error, sizeof g_hook_free_error);
    }
}

static int32_t accept_all(void *ud, const chronica_event *events, size_t count) {
    (void)ud;
    (void)events;
    (void)count;
    return 0;
}

static void test_close_and_free_from_a_hook_inside_a_call_are_refused(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_trust_token(o, "tok"));
    CHECK_OK(chronica_options_set_queue_capacity(o, 1));
    CHECK_OK(chronica_options_set_drop_hook(o, free_from_hook, NULL));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    chronica_distributed_options *xo = xoptions("hooked", CHRONICA_ACK_ENQUEUE);
    CHECK_OK(chronica_distributed_new(d, "memory://c-hook", xo, &g_hooked));
    chronica_distributed_options_free(xo);
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    CHECK_OK(chronica_distributed_register_with(g_hooked, "n", no, accept_all, NULL, NULL));
    chronica_node_options_free(no);
    /* The first event fills the disconnected node's lane of one; the
       second drops the first, and the hook runs inside that emit. */
    CHECK_OK(chronica_distributed_emit(g_hooked, NULL, "t", (const uint8_t *)"1", 1, NULL));
    CHECK(atomic_load(&g_hook_runs) == 0);
    CHECK_OK(chronica_distributed_emit(g_hooked, NULL, "t", (const uint8_t *)"2", 1, NULL));
    CHECK(atomic_load(&g_hook_runs) == 1);
    CHECK_STATUS(g_hook_close, CHRONICA_ERR_REENTRANT);
    CHECK(strstr(g_hook_free_error, "CHRONICA_ERR_REENTRANT") != NULL);
    /* Still open: it publishes, and closes normally. */
    CHECK_OK(chronica_distributed_emit(g_hooked, NULL, "t", (const uint8_t *)"3", 1, NULL));
    uint64_t unpublished = 99;
    CHECK_OK(chronica_distributed_close(g_hooked, 5000, &unpublished));
    CHECK(unpublished == 0);
    chronica_distributed_free(g_hooked);
    chronica_director_free(d);
}

/* Options with no instance id set give each instance made from them an
 * id of its own: the default was drawn once, when the options were made,
 * so two instances from one options object shared it and each dropped
 * the other's events as its own echoes. */
static void test_one_options_object_makes_distinct_instances(void) {
    chronica_distributed_options *xo = chronica_distributed_options_new();
    CHECK(xo != NULL);
    instance a = {director_with("tok"), NULL}, b = {director_with("tok"), NULL};
    CHECK_OK(chronica_distributed_new(a.d, "memory://c-one-options", xo, &a.x));
    CHECK_OK(chronica_distributed_new(b.d, "memory://c-one-options", xo, &b.x));
    chronica_distributed_options_free(xo);
    recorder *sink = rec_new("sink");
    CHECK_OK(xreg(b, sink, NULL, NULL));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(xemit(a, NULL, "t", "x", NULL));
    }
    CHECK(wait_events(sink, CHRONICA_EVENT_USER, "t", 3));
    leave(a);
    leave(b);
    rec_delete(sink);
}

int main(void) {
    test_broadcast_and_unicast();
    test_group_spans_instances();
    test_root_events();
    test_try_emit();
    test_refused_arguments();
    test_free_without_close();
    test_close_and_free_from_a_hook_inside_a_call_are_refused();
    test_one_options_object_makes_distinct_instances();
    return finish();
}
