/*
 * chronica_director_emit_many: a run of messages delivered as that many
 * emits would deliver them, in order, with consecutive ids; each node gets
 * the messages its topic patterns match; under CHRONICA_OVERFLOW_BLOCK all
 * or nothing (a lane without room for the run refuses the whole call, a
 * run larger than a lane can ever hold is an invalid argument); under
 * drop-oldest the lane keeps the newest and a chronica.lagged notice names
 * the ids it lost; callable from inside a callback; and every node's
 * counters balance after concurrent producers.
 */
#include "harness.h"

static chronica_message msg(const char *topic, const char *payload) {
    chronica_message m = {topic, (const uint8_t *)payload, strlen(payload), NULL, 0};
    return m;
}

static chronica_message keyed(const char *topic, const char *payload, const char *key) {
    chronica_message m = msg(topic, payload);
    m.key = (const uint8_t *)key;
    m.key_len = strlen(key);
    return m;
}

static chronica_node_options *disconnected(void) {
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    return no;
}

static int last_error_has(const char *what) {
    char buf[256];
    chronica_last_error(buf, sizeof buf);
    return strstr(buf, what) != NULL;
}

static int same(chronica_node_stats a, chronica_node_stats b) { return memcmp(&a, &b, sizeof a) == 0; }

/* The user events `r` recorded, in order, as indices into its log. */
static size_t user_events(recorder *r, rec_event *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < rec_len(r) && n < cap; i++) {
        rec_event e = rec_at(r, i);
        if (e.kind == CHRONICA_EVENT_USER) {
            out[n++] = e;
        }
    }
    return n;
}

/* Ids consecutive from the first written, in message order; payloads and
   keys as given (no key, a key, an empty key); the last event id is the
   last of the run; an empty run is no error and creates nothing. */
static void test_order_and_ids(void) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    recorder *r = rec_new("n");
    chronica_node_options *no = disconnected();
    CHECK_OK(reg_with(d, r, no));
    chronica_node_options_free(no);

    chronica_message m[5] = {msg("t", "p0"), keyed("t", "p1", "k"), msg("u", ""), keyed("t", "p3", ""),
                             msg("t", "p4")};
    m[2].payload = NULL; /* NULL with length 0 is an empty payload */
    uint64_t first = 0;
    CHECK_OK(chronica_director_emit_many(d, NULL, m, 5, &first));
    CHECK(first != 0);
    CHECK(chronica_last_event_id() == first + 4);

    /* n == 0: nothing, even with msgs NULL; first_id_out is the empty
       range's start, the id the next event takes (nothing else emits
       here meanwhile); the last event id stays. */
    uint64_t empty = 0;
    CHECK_OK(chronica_director_emit_many(d, NULL, NULL, 0, &empty));
    CHECK(empty == first + 5);
    CHECK(chronica_last_event_id() == first + 4);
    CHECK_OK(chronica_director_emit_many(d, NULL, m, 0, NULL));
    CHECK_OK(chronica_director_emit_many(d, NULL, m, 1, NULL)); /* first_id_out is nullable */
    CHECK(chronica_last_event_id() == first + 5);

    CHECK_OK(chronica_director_node_connected(d, "n"));
    CHECK(wait_idle(d, "n", 7)); /* the pull and six events */
    rec_event got[8];
    CHECK(user_events(r, got, 8) == 6);
    const char *payloads[] = {"p0", "p1", "", "p3", "p4", "p0"};
    for (int i = 0; i < 6; i++) {
        CHECK(got[i].id == first + (uint64_t)i);
        CHECK(strcmp(got[i].payload, payloads[i]) == 0);
    }
    CHECK(strcmp(got[2].topic, "u") == 0 && got[2].payload_len == 0);
    CHECK(!got[0].has_key && !got[2].has_key && !got[4].has_key);
    CHECK(got[1].has_key && strcmp(got[1].key, "k") == 0);
    CHECK(got[3].has_key && got[3].key[0] == '\0'); /* an empty key is a key */
    chronica_director_free(d);
    rec_delete(r);
}

/* Each node gets exactly the messages its patterns match, in order; the
   source gets none of its own; an unknown source refuses the call. */
static void test_one_node_per_topic_pattern(void) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    recorder *ax = rec_new("ax"), *b = rec_new("b"), *all = rec_new("all"), *src = rec_new("src");
    chronica_node_options *o1 = chronica_node_options_new(), *o2 = chronica_node_options_new();
    CHECK_OK(chronica_node_options_add_topic(o1, "a.*"));
    CHECK_OK(chronica_node_options_add_topic(o2, "b"));
    CHECK_OK(reg_with(d, ax, o1));
    CHECK_OK(reg_with(d, b, o2));
    CHECK_OK(reg(d, all));
    CHECK_OK(reg(d, src));
    chronica_node_options_free(o1);
    chronica_node_options_free(o2);

    chronica_message m[6] = {msg("a.x", "0"), msg("b", "1"),   msg("a.y", "2"),
                             msg("c", "3"),   msg("a.x", "4"), msg("b", "5")};
    /* Once its pull is delivered, "all"'s counters stand still unless an
       event reaches it (read earlier, the pull's delivery moved them). */
    CHECK(wait_idle(d, "all", 1));
    const chronica_node_stats before = stats_of(d, "all");
    CHECK_STATUS(chronica_director_emit_many(d, "ghost", m, 6, NULL), CHRONICA_ERR_UNKNOWN_NODE);
    CHECK(same(before, stats_of(d, "all")));
    uint64_t first = 0;
    CHECK_OK(chronica_director_emit_many(d, "src", m, 6, &first));
    CHECK(wait_idle(d, "ax", 4) && wait_idle(d, "b", 3) && wait_idle(d, "all", 7));
    struct {
        recorder *r;
        const char *want;
    } cases[] = {{ax, "024"}, {b, "15"}, {all, "012345"}};
    for (size_t c = 0; c < 3; c++) {
        rec_event got[8];
        size_t n = user_events(cases[c].r, got, 8);
        CHECK(n == strlen(cases[c].want));
        for (size_t i = 0; i < n && i < strlen(cases[c].want); i++) {
            int k = cases[c].want[i] - '0';
            CHECK(got[i].payload[0] == cases[c].want[i] && got[i].id == first + (uint64_t)k);
            CHECK(strcmp(got[i].source, "src") == 0);
        }
    }
    CHECK(rec_count(src, CHRONICA_EVENT_USER, NULL) == 0);
    chronica_director_free(d);
    rec_delete(ax);
    rec_delete(b);
    rec_delete(all);
    rec_delete(src);
}

/* Under block, lanes of 4: "small" is disconnected (nothing leaves its
   lane), "roomy" has 100. Five messages for small can never fit: invalid
   argument. Three fit. Two more do not fit now: after the 30 ms block
   timeout the call fails with QUEUE_FULL and neither node accepted
   anything, though roomy had room. */
static void test_block_is_all_or_nothing(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_overflow(o, CHRONICA_OVERFLOW_BLOCK));
    CHECK_OK(chronica_options_set_queue_capacity(o, 4));
    CHECK_OK(chronica_options_set_block_timeout(o, 30));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    recorder *small = rec_new("small"), *roomy = rec_new("roomy");
    chronica_node_options *no = disconnected();
    CHECK_OK(reg_with(d, small, no));
    chronica_node_options_free(no);
    no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_queue_capacity(no, 100));
    CHECK_OK(reg_with(d, roomy, no));
    chronica_node_options_free(no);
    CHECK(wait_idle(d, "roomy", 1));

    chronica_message m[5] = {msg("t", "0"), msg("t", "1"), msg("t", "2"), msg("t", "3"), msg("t", "4")};
    uint64_t first = 4242;
    const uint64_t last_id = chronica_last_event_id();
    chronica_node_stats s0 = stats_of(d, "small"), r0 = stats_of(d, "roomy");
    CHECK_STATUS(chronica_director_emit_many(d, NULL, m, 5, &first), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(last_error_has("small") && last_error_has("holds 4"));
    CHECK(same(stats_of(d, "small"), s0) && same(stats_of(d, "roomy"), r0));
    CHECK(first == 4242 && chronica_last_event_id() == last_id);

    CHECK_OK(chronica_director_emit_many(d, NULL, m, 3, &first));
    CHECK(wait_idle(d, "roomy", 4));
    s0 = stats_of(d, "small");
    r0 = stats_of(d, "roomy");
    CHECK(s0.accepted == 4 && s0.pending == 4); /* the pull and three */
    const uint64_t kept = first, kept_last = chronica_last_event_id();
    CHECK_STATUS(chronica_director_emit_many(d, NULL, m + 3, 2, &first), CHRONICA_ERR_QUEUE_FULL);
    CHECK(same(stats_of(d, "small"), s0) && same(stats_of(d, "roomy"), r0));
    CHECK(first == kept && chronica_last_event_id() == kept_last);
    /* the queue-full call reached nobody, the first three everybody */
    CHECK_OK(chronica_director_node_connected(d, "small"));
    CHECK(wait_idle(d, "small", 4));
    CHECK(rec_count(small, CHRONICA_EVENT_USER, NULL) == 3 && rec_count(roomy, CHRONICA_EVENT_USER, NULL) == 3);
    /* with room again the same call succeeds */
    CHECK_OK(chronica_director_emit_many(d, NULL, m + 3, 2, &first));
    CHECK(wait_idle(d, "small", 6));
    CHECK(balanced(stats_of(d, "small")) && stats_of(d, "small").dropped == 0);
    chronica_director_free(d);
    rec_delete(small);
    rec_delete(roomy);
}

/* chronica_director_timed_emit_many bounds the wait by its own timeout,
   not the director's (a minute here: were it used, the test would hang
   rather than pass): 0 never waits, a short one gives up; both accept
   nothing anywhere. With room again it succeeds and reports its ids. */
static void test_timed_emit_many_bounds_the_wait(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_overflow(o, CHRONICA_OVERFLOW_BLOCK));
    CHECK_OK(chronica_options_set_queue_capacity(o, 4));
    CHECK_OK(chronica_options_set_block_timeout(o, 60000));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    recorder *small = rec_new("small");
    chronica_node_options *no = disconnected();
    CHECK_OK(reg_with(d, small, no));
    chronica_node_options_free(no);

    chronica_message m[3] = {msg("t", "0"), msg("t", "1"), msg("t", "2")};
    uint64_t first = 0;
    CHECK_OK(chronica_director_timed_emit_many(d, NULL, m, 3, 0, &first));
    CHECK(chronica_last_event_id() == first + 2);
    const chronica_node_stats s0 = stats_of(d, "small");
    const uint64_t kept = first;
    CHECK_STATUS(chronica_director_timed_emit_many(d, NULL, m, 2, 0, &first), CHRONICA_ERR_QUEUE_FULL);
    CHECK_STATUS(chronica_director_timed_emit_many(d, NULL, m, 2, 20, &first), CHRONICA_ERR_QUEUE_FULL);
    CHECK(same(stats_of(d, "small"), s0) && first == kept);
    CHECK_OK(chronica_director_node_connected(d, "small"));
    CHECK(wait_idle(d, "small", 4));
    CHECK_OK(chronica_director_timed_emit_many(d, NULL, m, 2, UINT64_MAX, &first));
    CHECK(first > kept + 2 && chronica_last_event_id() == first + 1);
    CHECK(wait_idle(d, "small", 6));
    CHECK(rec_count(small, CHRONICA_EVENT_USER, NULL) == 5 && balanced(stats_of(d, "small")));
    chronica_director_free(d);
    rec_delete(small);
}

/* The first and last ids of the one chronica.lagged notice `r` received. */
static int lag_range(recorder *r, unsigned long long *first, unsigned long long *last, unsigned long long *n) {
    for (size_t i = 0; i < rec_len(r); i++) {
        rec_event e = rec_at(r, i);
        if (strcmp(e.topic, "chronica.lagged") == 0) {
            const char *d = strstr(e.payload, "\"dropped\":"), *f = strstr(e.payload, "\"first_id\":"),
                       *l = strstr(e.payload, "\"last_id\":");
            return d && f && l && sscanf(d, "\"dropped\":%llu", n) == 1 &&
                   sscanf(f, "\"first_id\":%llu", first) == 1 && sscanf(l, "\"last_id\":%llu", last) == 1;
        }
    }
    return 0;
}

/* Drop-oldest, a disconnected node with a lane of 4 and a run of 6: it
   keeps the newest four, as six emits would leave it, and the notice
   names the two it lost. */
static void test_drop_oldest_lag(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_queue_capacity(o, 4));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    recorder *r = rec_new("n");
    chronica_node_options *no = disconnected();
    CHECK_OK(reg_with(d, r, no));
    chronica_node_options_free(no);
    chronica_message m[6] = {msg("t", "0"), msg("t", "1"), msg("t", "2"),
                             msg("t", "3"), msg("t", "4"), msg("t", "5")};
    uint64_t first = 0;
    CHECK_OK(chronica_director_emit_many(d, NULL, m, 6, &first));
    CHECK_OK(chronica_director_node_connected(d, "n"));
    CHECK(wait_idle(d, "n", 6)); /* the pull, the notice, four events */
    chronica_node_stats s = stats_of(d, "n");
    CHECK(s.dropped == 2 && balanced(s));
    rec_event got[8];
    CHECK(user_events(r, got, 8) == 4);
    for (int i = 0; i < 4; i++) {
        CHECK(got[i].id == first + 2 + (uint64_t)i);
    }
    unsigned long long lf = 0, ll = 0, ln = 0;
    CHECK(lag_range(r, &lf, &ll, &ln));
    CHECK(ln == 2 && lf == first && ll == first + 1);
    chronica_director_free(d);
    rec_delete(r);
}

/* From inside a callback: "relay" re-emits each event it gets as a run of
   three to "sink", which receives them with the ids the call wrote. */
static _Atomic chronica_status g_relay_status = CHRONICA_ERR_INTERNAL;
static _Atomic uint64_t g_relay_first;
static _Atomic uint64_t g_relay_last;

static int32_t relay(recorder *r, const chronica_event *events, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (events[i].kind != CHRONICA_EVENT_USER) {
            continue;
        }
        chronica_message m[3] = {msg("fan", "a"), msg("fan", "b"), msg("fan", "c")};
        uint64_t first = 0;
        chronica_status s = chronica_director_emit_many(r->d, "relay", m, 3, &first);
        atomic_store(&g_relay_first, first);
        atomic_store(&g_relay_last, chronica_last_event_id());
        atomic_store(&g_relay_status, s);
    }
    return 0;
}

static void test_from_inside_a_callback(void) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    recorder *rl = rec_new("relay"), *sink = rec_new("sink");
    rl->behaviour = relay;
    chronica_node_options *o1 = chronica_node_options_new(), *o2 = chronica_node_options_new();
    CHECK_OK(chronica_node_options_add_topic(o1, "go"));
    CHECK_OK(chronica_node_options_add_topic(o2, "fan"));
    CHECK_OK(reg_with(d, rl, o1));
    CHECK_OK(reg_with(d, sink, o2));
    chronica_node_options_free(o1);
    chronica_node_options_free(o2);
    CHECK_OK(emit_str(d, NULL, "go", "now"));
    CHECK(wait_idle(d, "sink", 4));
    CHECK_STATUS(atomic_load(&g_relay_status), CHRONICA_OK);
    uint64_t first = atomic_load(&g_relay_first);
    CHECK(atomic_load(&g_relay_last) == first + 2);
    rec_event got[4];
    CHECK(user_events(sink, got, 4) == 3);
    for (int i = 0; i < 3; i++) {
        CHECK(got[i].id == first + (uint64_t)i && got[i].payload[0] == "abc"[i]);
        CHECK(strcmp(got[i].source, "relay") == 0);
    }
    chronica_director_free(d);
    rec_delete(rl);
    rec_delete(sink);
}

/* Four producers, 50 runs of 16 each, into nodes that keep up, that drop
   (a lane of 4 under drop-oldest takes runs of 16 one by one, so each run
   drops at least 12) and that fail every batch (one retry, then the dead
   letter): once nothing is pending, every node's accepted is delivered +
   dropped + dead-lettered, and the one that keeps up got every event. */
#define PRODUCERS 4
#define RUNS 50
#define RUN 16

static void *producer(void *arg) {
    chronica_director *d = arg;
    chronica_message m[RUN];
    for (int i = 0; i < RUN; i++) {
        m[i] = msg("load", "payload");
    }
    for (int r = 0; r < RUNS; r++) {
        CHECK_OK(chronica_director_emit_many(d, NULL, m, RUN, NULL));
    }
    return NULL;
}

static int all_idle(void *p) {
    chronica_director *d = p;
    const char *uids[] = {"fast", "lossy", "failing"};
    for (int i = 0; i < 3; i++) {
        if (stats_of(d, uids[i]).pending != 0) {
            return 0;
        }
    }
    return 1;
}

static void test_accounting_equation(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_retry(o, 1, 1, 1.0, 1));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    recorder *fast = rec_new("fast"), *lossy = rec_new("lossy"), *failing = rec_new("failing");
    failing->fail_user_always = 1;
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_queue_capacity(no, PRODUCERS * RUNS * RUN));
    CHECK_OK(reg_with(d, fast, no));
    chronica_node_options_free(no);
    no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_queue_capacity(no, 4));
    CHECK_OK(reg_with(d, lossy, no));
    chronica_node_options_free(no);
    CHECK_OK(reg(d, failing));

    pthread_t t[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        CHECK(pthread_create(&t[i], NULL, producer, d) == 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
    }
    const uint64_t total = PRODUCERS * RUNS * RUN;
    CHECK(wait_until(all_idle, d));
    chronica_node_stats f = stats_of(d, "fast"), l = stats_of(d, "lossy"), x = stats_of(d, "failing");
    CHECK(balanced(f) && balanced(l) && balanced(x));
    CHECK(f.accepted == total + 1 && f.dropped == 0 && rec_count(fast, CHRONICA_EVENT_USER, NULL) == total);
    CHECK(l.dropped >= (uint64_t)PRODUCERS * RUNS * (RUN - 4));
    CHECK(rec_count(lossy, CHRONICA_EVENT_USER, NULL) + l.dropped == total);
    CHECK(x.dead_lettered > 0 && x.dead_lettered + x.dropped == total && x.delivered == 1);
    chronica_director_free(d);
    rec_delete(fast);
    rec_delete(lossy);
    rec_delete(failing);
}

int main(void) {
    test_order_and_ids();
    test_one_node_per_topic_pattern();
    test_block_is_all_or_nothing();
    test_timed_emit_many_bounds_the_wait();
    test_drop_oldest_lag();
    test_from_inside_a_callback();
    test_accounting_equation();
    return finish();
}
