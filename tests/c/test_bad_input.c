/*
 * The bad-input table: every function called with a NULL object, a NULL
 * string, invalid UTF-8, an empty and a 256-byte uid, an unknown uid, zero
 * sizes, and after close, with the status it must return. Nothing crashes,
 * and nothing changes: the counters of the registered nodes and the number
 * of destructor calls are the same before and after the table.
 */
#include "harness.h"

static atomic_int g_freed;

static void count_free(void *ud) {
    (void)ud;
    atomic_fetch_add(&g_freed, 1);
}

static const char BAD_UTF8[] = "bad\xff\xfeutf8";
static char LONG_UID[257];   /* 256 bytes */
static char MAX_UID[256];    /* 255 bytes: the longest allowed */

#define NS CHRONICA_ERR_NULL_ARGUMENT
#define U8 CHRONICA_ERR_INVALID_UTF8
#define IA CHRONICA_ERR_INVALID_ARGUMENT
#define UN CHRONICA_ERR_UNKNOWN_NODE
#define CL CHRONICA_ERR_CLOSED

static void table_options(void) {
    chronica_options *o = chronica_options_new();
    CHECK(o != NULL);
    /* NULL object */
    CHECK_STATUS(chronica_options_set_queue_capacity(NULL, 1), NS);
    CHECK_STATUS(chronica_options_set_root_capacity(NULL, 1), NS);
    CHECK_STATUS(chronica_options_set_batch_size(NULL, 1), NS);
    CHECK_STATUS(chronica_options_set_overflow(NULL, CHRONICA_OVERFLOW_BLOCK), NS);
    CHECK_STATUS(chronica_options_set_block_timeout(NULL, 1), NS);
    CHECK_STATUS(chronica_options_set_retry(NULL, 1, 2, 2.0, 0), NS);
    CHECK_STATUS(chronica_options_set_retry_jitter(NULL, 0.5), NS);
    CHECK_STATUS(chronica_options_set_trust_token(NULL, "t"), NS);
    CHECK_STATUS(chronica_options_set_membership_events(NULL, true), NS);
    CHECK_STATUS(chronica_options_set_drop_hook(NULL, NULL, NULL), NS);
    CHECK_STATUS(chronica_options_set_dead_letter_hook(NULL, NULL, NULL), NS);
    CHECK_STATUS(chronica_options_set_error_hook(NULL, NULL, NULL), NS);
    chronica_options_free(NULL);
    /* NULL string, invalid UTF-8 */
    CHECK_STATUS(chronica_options_set_trust_token(o, NULL), NS);
    CHECK_STATUS(chronica_options_set_trust_token(o, BAD_UTF8), U8);
    /* zero sizes and out-of-range values */
    CHECK_STATUS(chronica_options_set_queue_capacity(o, 0), IA);
    CHECK_STATUS(chronica_options_set_root_capacity(o, 0), IA);
    CHECK_STATUS(chronica_options_set_batch_size(o, 0), IA);
    CHECK_STATUS(chronica_options_set_overflow(o, 3), IA);
    CHECK_STATUS(chronica_options_set_overflow(o, 0xffffffffu), IA);
    CHECK_STATUS(chronica_options_set_retry(o, 10, 5, 2.0, 0), IA);     /* max < initial */
    CHECK_STATUS(chronica_options_set_retry(o, 1, 5, 0.5, 0), IA);      /* multiplier < 1 */
    CHECK_STATUS(chronica_options_set_retry(o, 1, 5, 0.0 / 0.0, 0), IA); /* NaN */
    CHECK_STATUS(chronica_options_set_retry_jitter(o, 1.5), IA);
    CHECK_STATUS(chronica_options_set_retry_jitter(o, -0.1), IA);
    /* the refused values changed nothing: a director still starts */
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    CHECK(d != NULL);
    chronica_director_free(d);
    CHECK_STATUS(chronica_director_new(o, NULL), NS);
    chronica_options_free(o);
}

static void table_subscribe_options(void) {
    CHECK_STATUS(chronica_subscribe_options_set_group(NULL, "g"), NS);
    CHECK_STATUS(chronica_subscribe_options_set_concurrency(NULL, 1), NS);
    CHECK_STATUS(chronica_subscribe_options_set_buffer(NULL, 1), NS);
    CHECK_STATUS(chronica_subscribe_options_set_retry(NULL, CHRONICA_BACKOFF_CONSTANT, 1, 1, 1.0, 0.0, 0), NS);
    CHECK_STATUS(chronica_subscribe_options_set_max_retries(NULL, 0), NS);
    CHECK_STATUS(chronica_subscribe_options_set_dead_letter(NULL, NULL), NS);
    chronica_subscribe_options_free(NULL);
    /* an exact limit takes every value */
    chronica_subscribe_options *so = chronica_subscribe_options_new();
    CHECK_OK(chronica_subscribe_options_set_max_retries(so, 0));
    CHECK_OK(chronica_subscribe_options_set_max_retries(so, UINT32_MAX));
    chronica_subscribe_options_free(so);
}

static void table_node_options(void) {
    chronica_node_options *no = chronica_node_options_new();
    CHECK(no != NULL);
    CHECK_STATUS(chronica_node_options_add_topic(NULL, "a"), NS);
    CHECK_STATUS(chronica_node_options_set_group(NULL, "g"), NS);
    CHECK_STATUS(chronica_node_options_set_concurrency(NULL, 1), NS);
    CHECK_STATUS(chronica_node_options_set_connected(NULL, true), NS);
    CHECK_STATUS(chronica_node_options_set_retry(NULL, 1, 2, 2.0, 0), NS);
    CHECK_STATUS(chronica_node_options_set_retry_jitter(NULL, 0.0), NS);
    CHECK_STATUS(chronica_node_options_set_queue_capacity(NULL, 1), NS);
    CHECK_STATUS(chronica_node_options_set_root_capacity(NULL, 1), NS);
    CHECK_STATUS(chronica_node_options_set_overflow(NULL, 0), NS);
    chronica_node_options_free(NULL);
    CHECK_STATUS(chronica_node_options_add_topic(no, NULL), NS);
    CHECK_STATUS(chronica_node_options_add_topic(no, BAD_UTF8), U8);
    CHECK_STATUS(chronica_node_options_add_topic(no, ""), IA);
    CHECK_STATUS(chronica_node_options_add_topic(no, "a.>.b"), IA);
    CHECK_STATUS(chronica_node_options_set_group(no, NULL), NS);
    CHECK_STATUS(chronica_node_options_set_group(no, BAD_UTF8), U8);
    CHECK_STATUS(chronica_node_options_set_group(no, ""), IA);
    CHECK_STATUS(chronica_node_options_set_concurrency(no, 0), IA);
    CHECK_STATUS(chronica_node_options_set_concurrency(no, 65), IA);
    CHECK_STATUS(chronica_node_options_set_queue_capacity(no, 0), IA);
    CHECK_STATUS(chronica_node_options_set_root_capacity(no, 0), IA);
    CHECK_STATUS(chronica_node_options_set_overflow(no, 7), IA);
    CHECK_STATUS(chronica_node_options_set_retry(no, 9, 1, 2.0, 3), IA);
    CHECK_STATUS(chronica_node_options_set_retry_jitter(no, 2.0), IA);
    chronica_node_options_free(no);
}

struct dead_ctx {
    chronica_director *d;
    const char *uid;
};

static int dead_lettered(void *p) {
    struct dead_ctx *c = p;
    return stats_of(c->d, c->uid).dead_lettered == 1;
}

/* A zero first retry delay would call a failing node in a busy loop (SPEC
   2.5): both retry setters refuse it, and the refused call leaves the
   policy set before it. That policy gives up after 2 re-attempts, so a node
   that always fails dead-letters its event; the refused one (0 ms,
   unlimited) would have retried it forever. */
static void test_a_zero_retry_delay_changes_nothing(void) {
    chronica_options *o = chronica_options_new();
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_options_set_retry(o, 1, 4, 2.0, 2));
    CHECK_OK(chronica_node_options_set_retry(no, 1, 4, 2.0, 2));
    CHECK_STATUS(chronica_options_set_retry(o, 0, 0, 1.0, 0), IA);
    CHECK_STATUS(chronica_options_set_retry(o, 0, 5, 2.0, 0), IA);
    CHECK_STATUS(chronica_node_options_set_retry(no, 0, 0, 1.0, 0), IA);
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    recorder *by_default = rec_new("default"), *by_node = rec_new("node");
    by_default->fail_user_always = by_node->fail_user_always = 1;
    CHECK_OK(reg(d, by_default));
    CHECK_OK(reg_with(d, by_node, no));
    struct dead_ctx c1 = {d, "default"}, c2 = {d, "node"};
    CHECK_OK(emit_str(d, NULL, "t", "x"));
    CHECK(wait_until(dead_lettered, &c1));
    CHECK(wait_until(dead_lettered, &c2));
    chronica_director_free(d);
    chronica_node_options_free(no);
    chronica_options_free(o);
    rec_delete(by_default);
    rec_delete(by_node);
}

/* True when the thread's last error mentions `what`. */
static int last_error_has(const char *what) {
    char buf[256];
    chronica_last_error(buf, sizeof buf);
    return strstr(buf, what) != NULL;
}

/* A lane holds at most 2^31 - 1 events (the engine's MAX_CAPACITY), the
   root lane included: every lane capacity setter refuses more at once, keeping the value it had (so
   the director and the registration still succeed). The setters used to
   take it and leave the refusal to chronica_director_new or the
   registration. */
static void test_capacities_above_the_maximum(void) {
    const size_t too_big = (size_t)1 << 31;
    chronica_options *o = chronica_options_new();
    CHECK(CHRONICA_MAX_CAPACITY == too_big - 1);
    CHECK_OK(chronica_options_set_queue_capacity(o, CHRONICA_MAX_CAPACITY));
    CHECK_OK(chronica_options_set_queue_capacity(o, 2));
    CHECK_STATUS(chronica_options_set_queue_capacity(o, too_big), IA);
    CHECK(last_error_has("queue_capacity") && last_error_has("2147483647"));
    CHECK_STATUS(chronica_options_set_queue_capacity(o, SIZE_MAX), IA);
    CHECK_OK(chronica_options_set_root_capacity(o, CHRONICA_MAX_CAPACITY));
    CHECK_OK(chronica_options_set_root_capacity(o, 4));
    CHECK_STATUS(chronica_options_set_root_capacity(o, too_big), IA);
    CHECK(last_error_has("root_capacity") && last_error_has("2147483647"));
    CHECK_STATUS(chronica_options_set_root_capacity(o, SIZE_MAX), IA);
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);

    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_queue_capacity(no, 1));
    CHECK_STATUS(chronica_node_options_set_queue_capacity(no, too_big), IA);
    CHECK(last_error_has("queue_capacity") && last_error_has("2147483647"));
    CHECK_OK(chronica_node_options_set_root_capacity(no, CHRONICA_MAX_CAPACITY));
    CHECK_OK(chronica_node_options_set_root_capacity(no, 2));
    CHECK_STATUS(chronica_node_options_set_root_capacity(no, too_big), IA);
    CHECK(last_error_has("root_capacity") && last_error_has("2147483647"));
    CHECK_STATUS(chronica_node_options_set_root_capacity(no, SIZE_MAX), IA);
    CHECK_OK(chronica_director_register_with(d, "n", no, ok_send, NULL, NULL));
    chronica_node_options_free(no);

    chronica_subscribe_options *so = chronica_subscribe_options_new();
    CHECK_STATUS(chronica_subscribe_options_set_buffer(so, too_big), IA);
    CHECK(last_error_has("buffer") && last_error_has("2147483647"));
    chronica_subscribe_options_free(so);

    chronica_director_free(d);
}

/* chronica_director_emit_many: each bad argument, in any message of the
   run (the good ones around it emitted nothing either: main compares the
   nodes' counters), with its status and the index in the last error. */
static void table_emit_many(chronica_director *d, uint64_t *id) {
    const uint8_t *p = (const uint8_t *)"payload";
    const chronica_message good = {"t", p, 7, NULL, 0};
    chronica_message m[3] = {good, good, good};
    CHECK_STATUS(chronica_director_emit_many(NULL, NULL, m, 3, id), NS);
    CHECK_STATUS(chronica_director_emit_many(d, NULL, NULL, 3, id), NS);
    CHECK(last_error_has("msgs must not be NULL"));
    CHECK_STATUS(chronica_director_timed_emit_many(NULL, NULL, m, 3, 0, id), NS);
    CHECK_STATUS(chronica_director_timed_emit_many(d, NULL, NULL, 3, 0, id), NS);
    CHECK_STATUS(chronica_director_timed_emit_many(d, "ghost", m, 3, 0, id), UN);
    CHECK_STATUS(chronica_director_emit_many(d, BAD_UTF8, m, 3, id), U8);
    CHECK_STATUS(chronica_director_emit_many(d, "", m, 3, id), IA);
    CHECK_STATUS(chronica_director_emit_many(d, LONG_UID, m, 3, id), IA);
    CHECK_STATUS(chronica_director_emit_many(d, "ghost", m, 3, id), UN);
    CHECK_STATUS(chronica_director_emit_many(d, MAX_UID, m, 3, id), UN);
    /* more messages than memory can hold: refused before any is read */
    CHECK_STATUS(chronica_director_emit_many(d, NULL, m, SIZE_MAX, id), IA);
    CHECK_STATUS(chronica_director_emit_many(d, NULL, m, SIZE_MAX / sizeof m[0], id), IA);
    struct {
        chronica_message bad;
        chronica_status want;
        const char *says;
    } cases[] = {
        {{NULL, p, 7, NULL, 0}, NS, "topic must not be NULL"},
        {{BAD_UTF8, p, 7, NULL, 0}, U8, "topic is not valid UTF-8"},
        {{"t", NULL, 7, NULL, 0}, NS, "payload must not be NULL"},
        {{"t", NULL, 7, p, 1}, NS, "payload must not be NULL"},
        {{"t", p, SIZE_MAX, NULL, 0}, IA, "payload"},
        {{"t", p, 7, NULL, 1}, NS, "key must not be NULL"},
        {{"t", p, 7, p, SIZE_MAX}, IA, "key"},
        {{"t", p, 7, p, (size_t)PTRDIFF_MAX + 1}, IA, "key"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int at = 0; at < 3; at++) {
            char where[32];
            snprintf(where, sizeof where, "msgs[%d]: ", at);
            m[at] = cases[c].bad;
            CHECK_STATUS(chronica_director_emit_many(d, NULL, m, 3, id), cases[c].want);
            CHECK(last_error_has(where) && last_error_has(cases[c].says));
            CHECK_STATUS(chronica_director_emit_many(d, "a", m, 3, NULL), cases[c].want);
            CHECK_STATUS(chronica_director_timed_emit_many(d, NULL, m, 3, 0, id), cases[c].want);
            CHECK(last_error_has(where) && last_error_has(cases[c].says));
            m[at] = good;
        }
    }
}

/* Every director function against one open director holding nodes "a", "b". */
static void table_director(chronica_director *d) {
    chronica_node_stats s = {0};
    chronica_node_options *no = chronica_node_options_new();
    uint64_t n = 0;
    bool connected = false;
    char text[16] = "#";
    size_t text_len = 12345;
    bool failed = true;
    uint64_t id = 4242;
    const uint8_t *p = (const uint8_t *)"payload";
    chronica_payload *pl = NULL;
    CHECK_OK(chronica_payload_new(p, 7, &pl));

    /* NULL object */
    CHECK_STATUS(chronica_director_register(NULL, "x", ok_send, NULL, count_free), NS);
    CHECK_STATUS(chronica_director_register_with(NULL, "x", no, ok_send, NULL, count_free), NS);
    CHECK_STATUS(chronica_director_unregister(NULL, "a"), NS);
    CHECK_STATUS(chronica_director_unregister_draining(NULL, "a", 10, &s), NS);
    CHECK_STATUS(chronica_director_subscribe(NULL, "a", "t"), NS);
    CHECK_STATUS(chronica_director_emit(NULL, NULL, "t", p, 7), NS);
    CHECK_STATUS(chronica_director_try_emit(NULL, NULL, "t", p, 7), NS);
    CHECK_STATUS(chronica_director_emit_payload(NULL, NULL, "t", pl), NS);
    CHECK_STATUS(chronica_director_emit_keyed(NULL, NULL, "t", p, 1, p, 7), NS);
    CHECK_STATUS(chronica_director_emit_to(NULL, NULL, "a", "t", p, 7), NS);
    CHECK_STATUS(chronica_director_try_emit_to(NULL, NULL, "a", "t", p, 7), NS);
    CHECK_STATUS(chronica_director_timed_emit(NULL, NULL, "t", p, 7, 10, &id), NS);
    CHECK_STATUS(chronica_director_timed_emit_to(NULL, NULL, "a", "t", p, 7, 10, &id), NS);
    CHECK_STATUS(chronica_director_emit_root(NULL, "act", p, 7), NS);
    CHECK_STATUS(chronica_director_emit_root_to(NULL, "a", "act", p, 7), NS);
    CHECK_STATUS(chronica_director_node_connected(NULL, "a"), NS);
    CHECK_STATUS(chronica_director_node_disconnected(NULL, "a"), NS);
    CHECK_STATUS(chronica_director_node_stats(NULL, "a", &s), NS);
    CHECK_STATUS(chronica_director_node_is_connected(NULL, "a", &connected), NS);
    CHECK_STATUS(chronica_director_node_last_error(NULL, "a", text, sizeof text, &text_len, &failed), NS);
    CHECK_STATUS(chronica_director_close(NULL, 10, &n), NS);

    /* NULL string / NULL callback / NULL buffer with a length / NULL out */
    CHECK_STATUS(chronica_director_register(d, NULL, ok_send, NULL, count_free), NS);
    CHECK_STATUS(chronica_director_register(d, "x", NULL, NULL, count_free), NS);
    CHECK_STATUS(chronica_director_register_with(d, NULL, no, ok_send, NULL, count_free), NS);
    CHECK_STATUS(chronica_director_register_with(d, "x", no, NULL, NULL, count_free), NS);
    CHECK_STATUS(chronica_director_unregister(d, NULL), NS);
    CHECK_STATUS(chronica_director_unregister_draining(d, NULL, 10, &s), NS);
    CHECK_STATUS(chronica_director_subscribe(d, NULL, "t"), NS);
    CHECK_STATUS(chronica_director_subscribe(d, "a", NULL), NS);
    CHECK_STATUS(chronica_director_emit(d, NULL, NULL, p, 7), NS);
    CHECK_STATUS(chronica_director_try_emit(d, NULL, NULL, p, 7), NS);
    CHECK_STATUS(chronica_director_emit(d, NULL, "t", NULL, 7), NS);
    CHECK_STATUS(chronica_director_try_emit(d, NULL, "t", NULL, 7), NS);
    CHECK_STATUS(chronica_director_emit_payload(d, NULL, NULL, pl), NS);
    CHECK_STATUS(chronica_director_emit_payload(d, NULL, "t", NULL), NS);
    chronica_payload *untouched = pl;
    CHECK_STATUS(chronica_payload_new(NULL, 7, &untouched), NS);
    CHECK(untouched == pl); /* out-pointers are written only on success */
    CHECK_STATUS(chronica_payload_new(p, 7, NULL), NS);
    chronica_payload_free(NULL);
    CHECK_STATUS(chronica_director_emit_keyed(d, NULL, "t", NULL, 1, p, 7), NS);
    CHECK_STATUS(chronica_director_emit_keyed(d, NULL, "t", NULL, 0, p, 7), NS);
    CHECK_STATUS(chronica_director_emit_keyed(d, NULL, NULL, p, 1, p, 7), NS);
    CHECK_STATUS(chronica_director_emit_to(d, NULL, NULL, "t", p, 7), NS);
    CHECK_STATUS(chronica_director_try_emit_to(d, NULL, NULL, "t", p, 7), NS);
    CHECK_STATUS(chronica_director_emit_to(d, NULL, "a", NULL, p, 7), NS);
    CHECK_STATUS(chronica_director_try_emit_to(d, NULL, "a", NULL, p, 7), NS);
    CHECK_STATUS(chronica_director_emit_to(d, NULL, "a", "t", NULL, 1), NS);
    CHECK_STATUS(chronica_director_try_emit_to(d, NULL, "a", "t", NULL, 1), NS);
    CHECK_STATUS(chronica_director_timed_emit(d, NULL, NULL, p, 7, 10, &id), NS);
    CHECK_STATUS(chronica_director_timed_emit(d, NULL, "t", NULL, 7, 10, &id), NS);
    CHECK_STATUS(chronica_director_timed_emit_to(d, NULL, NULL, "t", p, 7, 10, &id), NS);
    CHECK_STATUS(chronica_director_timed_emit_to(d, NULL, "a", NULL, p, 7, 10, &id), NS);
    CHECK_STATUS(chronica_director_timed_emit_to(d, NULL, "a", "t", NULL, 1, 10, &id), NS);
    CHECK_STATUS(chronica_director_emit_root(d, NULL, p, 7), NS);
    CHECK_STATUS(chronica_director_emit_root(d, "act", NULL, 7), NS);
    CHECK_STATUS(chronica_director_emit_root_to(d, NULL, "act", p, 7), NS);
    CHECK_STATUS(chronica_director_emit_root_to(d, "a", NULL, p, 7), NS);
    CHECK_STATUS(chronica_director_node_connected(d, NULL), NS);
    CHECK_STATUS(chronica_director_node_disconnected(d, NULL), NS);
    CHECK_STATUS(chronica_director_node_stats(d, NULL, &s), NS);
    CHECK_STATUS(chronica_director_node_stats(d, "a", NULL), NS);
    CHECK_STATUS(chronica_director_node_is_connected(d, NULL, &connected), NS);
    CHECK_STATUS(chronica_director_node_is_connected(d, "a", NULL), NS);
    CHECK_STATUS(chronica_director_node_last_error(d, NULL, text, sizeof text, &text_len, &failed), NS);

    /* invalid UTF-8 in every string argument */
    CHECK_STATUS(chronica_director_register(d, BAD_UTF8, ok_send, NULL, count_free), U8);
    CHECK_STATUS(chronica_director_unregister(d, BAD_UTF8), U8);
    CHECK_STATUS(chronica_director_unregister_draining(d, BAD_UTF8, 10, &s), U8);
    CHECK_STATUS(chronica_director_subscribe(d, BAD_UTF8, "t"), U8);
    CHECK_STATUS(chronica_director_subscribe(d, "a", BAD_UTF8), U8);
    CHECK_STATUS(chronica_director_emit(d, BAD_UTF8, "t", p, 7), U8);
    CHECK_STATUS(chronica_director_try_emit(d, BAD_UTF8, "t", p, 7), U8);
    CHECK_STATUS(chronica_director_emit(d, NULL, BAD_UTF8, p, 7), U8);
    CHECK_STATUS(chronica_director_try_emit(d, NULL, BAD_UTF8, p, 7), U8);
    CHECK_STATUS(chronica_director_emit_payload(d, BAD_UTF8, "t", pl), U8);
    CHECK_STATUS(chronica_director_emit_payload(d, NULL, BAD_UTF8, pl), U8);
    CHECK_STATUS(chronica_director_emit_keyed(d, NULL, BAD_UTF8, p, 1, p, 7), U8);
    CHECK_STATUS(chronica_director_emit_to(d, NULL, BAD_UTF8, "t", p, 7), U8);
    CHECK_STATUS(chronica_director_try_emit_to(d, NULL, BAD_UTF8, "t", p, 7), U8);
    CHECK_STATUS(chronica_director_emit_to(d, "a", "b", BAD_UTF8, p, 7), U8);
    CHECK_STATUS(chronica_director_try_emit_to(d, "a", "b", BAD_UTF8, p, 7), U8);
    CHECK_STATUS(chronica_director_timed_emit(d, BAD_UTF8, "t", p, 7, 10, &id), U8);
    CHECK_STATUS(chronica_director_timed_emit(d, NULL, BAD_UTF8, p, 7, 10, &id), U8);
    CHECK_STATUS(chronica_director_timed_emit_to(d, BAD_UTF8, "a", "t", p, 7, 10, &id), U8);
    CHECK_STATUS(chronica_director_timed_emit_to(d, NULL, BAD_UTF8, "t", p, 7, 10, &id), U8);
    CHECK_STATUS(chronica_director_timed_emit_to(d, "a", "b", BAD_UTF8, p, 7, 10, &id), U8);
    CHECK_STATUS(chronica_director_emit_root(d, BAD_UTF8, p, 7), U8);
    CHECK_STATUS(chronica_director_emit_root_to(d, BAD_UTF8, "act", p, 7), U8);
    CHECK_STATUS(chronica_director_emit_root_to(d, "a", BAD_UTF8, p, 7), U8);
    CHECK_STATUS(chronica_director_node_connected(d, BAD_UTF8), U8);
    CHECK_STATUS(chronica_director_node_disconnected(d, BAD_UTF8), U8);
    CHECK_STATUS(chronica_director_node_stats(d, BAD_UTF8, &s), U8);
    CHECK_STATUS(chronica_director_node_is_connected(d, BAD_UTF8, &connected), U8);
    CHECK_STATUS(chronica_director_node_last_error(d, BAD_UTF8, text, sizeof text, &text_len, &failed), U8);

    /* empty and 256-byte uids */
    const char *bad_uids[] = {"", LONG_UID};
    for (int i = 0; i < 2; i++) {
        const char *u = bad_uids[i];
        CHECK_STATUS(chronica_director_register(d, u, ok_send, NULL, count_free), IA);
        CHECK_STATUS(chronica_director_register_with(d, u, no, ok_send, NULL, count_free), IA);
        CHECK_STATUS(chronica_director_unregister(d, u), IA);
        CHECK_STATUS(chronica_director_unregister_draining(d, u, 10, &s), IA);
        CHECK_STATUS(chronica_director_subscribe(d, u, "t"), IA);
        CHECK_STATUS(chronica_director_emit(d, u, "t", p, 7), IA);
        CHECK_STATUS(chronica_director_try_emit(d, u, "t", p, 7), IA);
        CHECK_STATUS(chronica_director_emit_payload(d, u, "t", pl), IA);
        CHECK_STATUS(chronica_director_emit_keyed(d, u, "t", p, 1, p, 7), IA);
        CHECK_STATUS(chronica_director_emit_to(d, u, "a", "t", p, 7), IA);
        CHECK_STATUS(chronica_director_try_emit_to(d, u, "a", "t", p, 7), IA);
        CHECK_STATUS(chronica_director_emit_to(d, NULL, u, "t", p, 7), IA);
        CHECK_STATUS(chronica_director_try_emit_to(d, NULL, u, "t", p, 7), IA);
        CHECK_STATUS(chronica_director_timed_emit(d, u, "t", p, 7, 10, &id), IA);
        CHECK_STATUS(chronica_director_timed_emit_to(d, u, "a", "t", p, 7, 10, &id), IA);
        CHECK_STATUS(chronica_director_timed_emit_to(d, NULL, u, "t", p, 7, 10, &id), IA);
        CHECK_STATUS(chronica_director_emit_root_to(d, u, "act", p, 7), IA);
        CHECK_STATUS(chronica_director_node_connected(d, u), IA);
        CHECK_STATUS(chronica_director_node_disconnected(d, u), IA);
        CHECK_STATUS(chronica_director_node_stats(d, u, &s), IA);
        CHECK_STATUS(chronica_director_node_is_connected(d, u, &connected), IA);
        CHECK_STATUS(chronica_director_node_last_error(d, u, text, sizeof text, &text_len, &failed), IA);
    }

    /* unknown uids */
    CHECK_STATUS(chronica_director_unregister(d, "ghost"), UN);
    CHECK_STATUS(chronica_director_unregister_draining(d, "ghost", 10, &s), UN);
    CHECK_STATUS(chronica_director_unregister(d, MAX_UID), UN);
    CHECK_STATUS(chronica_director_unregister_draining(d, MAX_UID, 10, &s), UN);
    CHECK_STATUS(chronica_director_subscribe(d, "ghost", "t"), UN);
    CHECK_STATUS(chronica_director_emit(d, "ghost", "t", p, 7), UN);
    CHECK_STATUS(chronica_director_try_emit(d, "ghost", "t", p, 7), UN);
    CHECK_STATUS(chronica_director_emit_payload(d, "ghost", "t", pl), UN);
    CHECK_STATUS(chronica_director_emit_keyed(d, "ghost", "t", p, 1, p, 7), UN);
    CHECK_STATUS(chronica_director_emit_to(d, "ghost", "a", "t", p, 7), UN);
    CHECK_STATUS(chronica_director_try_emit_to(d, "ghost", "a", "t", p, 7), UN);
    CHECK_STATUS(chronica_director_emit_to(d, NULL, "ghost", "t", p, 7), UN);
    CHECK_STATUS(chronica_director_try_emit_to(d, NULL, "ghost", "t", p, 7), UN);
    CHECK_STATUS(chronica_director_timed_emit(d, "ghost", "t", p, 7, 10, &id), UN);
    CHECK_STATUS(chronica_director_timed_emit_to(d, "ghost", "a", "t", p, 7, 10, &id), UN);
    CHECK_STATUS(chronica_director_timed_emit_to(d, NULL, "ghost", "t", p, 7, 10, &id), UN);
    CHECK_STATUS(chronica_director_emit_root_to(d, "ghost", "act", p, 7), UN);
    CHECK_STATUS(chronica_director_node_connected(d, "ghost"), UN);
    CHECK_STATUS(chronica_director_node_disconnected(d, "ghost"), UN);
    CHECK_STATUS(chronica_director_node_stats(d, "ghost", &s), UN);
    CHECK_STATUS(chronica_director_node_is_connected(d, "ghost", &connected), UN);
    CHECK_STATUS(chronica_director_node_last_error(d, "ghost", text, sizeof text, &text_len, &failed), UN);
    CHECK_STATUS(chronica_director_node_last_error(d, MAX_UID, text, sizeof text, &text_len, &failed), UN);

    /* bad values, duplicates */
    CHECK_STATUS(chronica_director_subscribe(d, "a", ""), IA);
    CHECK_STATUS(chronica_director_subscribe(d, "a", ">.a"), IA);
    CHECK_STATUS(chronica_director_register(d, "a", ok_send, NULL, count_free), CHRONICA_ERR_DUPLICATE_NODE);
    chronica_node_options *big = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_queue_capacity(big, 2));
    CHECK_OK(chronica_node_options_set_concurrency(big, 3)); /* more workers than lane slots */
    CHECK_STATUS(chronica_director_register_with(d, "x", big, ok_send, NULL, count_free), IA);
    chronica_node_options_free(big);

    /* lengths no buffer can have (a negative length cast to size_t):
       refused, where the library once aborted the process copying them */
    CHECK_STATUS(chronica_director_emit(d, NULL, "t", p, SIZE_MAX), IA);
    CHECK_STATUS(chronica_director_timed_emit(d, NULL, "t", p, SIZE_MAX, 10, &id), IA);
    CHECK_STATUS(chronica_director_timed_emit_to(d, NULL, "a", "t", p, SIZE_MAX, 10, &id), IA);
    CHECK_STATUS(chronica_director_emit_keyed(d, NULL, "t", p, SIZE_MAX, p, 7), IA);
    CHECK_STATUS(chronica_director_emit_root(d, "act", p, (size_t)PTRDIFF_MAX + 1), IA);
    chronica_payload *huge = NULL;
    CHECK_STATUS(chronica_payload_new(p, SIZE_MAX, &huge), IA);
    CHECK(huge == NULL);

    table_emit_many(d, &id);

    /* the refusals wrote nothing */
    CHECK(text[0] == '#' && text_len == 12345 && failed);
    CHECK(id == 4242);

    chronica_node_options_free(no);
    chronica_payload_free(pl);
}

static void table_after_close(chronica_director *d) {
    chronica_node_stats s = {0};
    const uint8_t *p = (const uint8_t *)"payload";
    CHECK_STATUS(chronica_director_register(d, "x", ok_send, NULL, count_free), CL);
    CHECK_STATUS(chronica_director_register_with(d, "x", NULL, ok_send, NULL, count_free), CL);
    CHECK_STATUS(chronica_director_unregister(d, "a"), CL);
    CHECK_STATUS(chronica_director_unregister_draining(d, "a", 10, &s), CL);
    CHECK_STATUS(chronica_director_subscribe(d, "a", "t"), CL);
    CHECK_STATUS(chronica_director_emit(d, NULL, "t", p, 7), CL);
    CHECK_STATUS(chronica_director_try_emit(d, NULL, "t", p, 7), CL);
    chronica_payload *pl = NULL;
    CHECK_OK(chronica_payload_new(p, 7, &pl)); /* a payload needs no director */
    CHECK_STATUS(chronica_director_emit_payload(d, NULL, "t", pl), CL);
    chronica_payload_free(pl);
    CHECK_STATUS(chronica_director_emit_keyed(d, NULL, "t", p, 1, p, 7), CL);
    CHECK_STATUS(chronica_director_emit_to(d, NULL, "a", "t", p, 7), CL);
    CHECK_STATUS(chronica_director_try_emit_to(d, NULL, "a", "t", p, 7), CL);
    uint64_t id = 4242;
    CHECK_STATUS(chronica_director_timed_emit(d, NULL, "t", p, 7, 10, &id), CL);
    CHECK_STATUS(chronica_director_timed_emit_to(d, NULL, "a", "t", p, 7, 10, &id), CL);
    CHECK_STATUS(chronica_director_timed_emit(d, NULL, NULL, p, 7, 10, &id), NS);
    CHECK_STATUS(chronica_director_timed_emit_to(d, NULL, "", "t", p, 7, 10, &id), IA);
    const chronica_message one = {"t", p, 7, NULL, 0}, no_topic = {NULL, p, 7, NULL, 0};
    CHECK_STATUS(chronica_director_emit_many(d, NULL, &one, 1, &id), CL);
    CHECK_STATUS(chronica_director_timed_emit_many(d, NULL, &one, 1, 0, &id), CL);
    CHECK_STATUS(chronica_director_emit_many(d, NULL, NULL, 0, &id), CL);
    CHECK_STATUS(chronica_director_emit_many(d, NULL, NULL, 1, &id), NS);
    CHECK_STATUS(chronica_director_emit_many(d, NULL, &no_topic, 1, &id), NS);
    CHECK_STATUS(chronica_director_emit_many(d, "", &one, 1, &id), IA);
    CHECK(id == 4242);
    CHECK_STATUS(chronica_director_emit_root(d, "act", p, 7), CL);
    CHECK_STATUS(chronica_director_emit_root_to(d, "a", "act", p, 7), CL);
    CHECK_STATUS(chronica_director_node_connected(d, "a"), CL);
    CHECK_STATUS(chronica_director_node_disconnected(d, "a"), CL);
    CHECK_STATUS(chronica_director_close(d, 10, NULL), CL);
    /* The boundary's own checks (NULL, UTF-8, range) still come first, as
       C-API.md says: only a call passing them reaches the engine's Closed. */
    CHECK_STATUS(chronica_director_register(d, "", ok_send, NULL, count_free), IA);
    CHECK_STATUS(chronica_director_register(d, NULL, ok_send, NULL, count_free), NS);
    CHECK_STATUS(chronica_director_register(d, "x", NULL, NULL, count_free), NS);
    CHECK_STATUS(chronica_director_unregister(d, LONG_UID), IA);
    /* a topic pattern is the engine's to check, after Closed */
    CHECK_STATUS(chronica_director_subscribe(d, "a", "a.>.b"), CL);
    CHECK_STATUS(chronica_director_emit(d, NULL, BAD_UTF8, p, 7), U8);
    CHECK_STATUS(chronica_director_emit(d, NULL, "t", NULL, 7), NS);
    CHECK_STATUS(chronica_director_emit_to(d, NULL, "", "t", p, 7), IA);
    CHECK_STATUS(chronica_director_node_connected(d, NULL), NS);
    CHECK_STATUS(chronica_director_close(NULL, 10, NULL), NS);
    /* stats and the connection state stay readable */
    CHECK_OK(chronica_director_node_stats(d, "a", &s));
    CHECK(balanced(s));
    bool connected = false;
    CHECK_OK(chronica_director_node_is_connected(d, "a", &connected));
    CHECK(connected);
    char text[16] = "#";
    size_t text_len = 12345;
    bool failed = true;
    CHECK_OK(chronica_director_node_last_error(d, "a", text, sizeof text, &text_len, &failed));
    CHECK(text[0] == '\0' && text_len == 0 && !failed); /* "a" never failed */
    CHECK_STATUS(chronica_director_node_last_error(d, "ghost", text, sizeof text, &text_len, &failed), UN);
    CHECK_STATUS(chronica_director_node_last_error(d, NULL, text, sizeof text, &text_len, &failed), NS);
    CHECK_STATUS(chronica_director_node_last_error(d, LONG_UID, text, sizeof text, &text_len, &failed), IA);
    CHECK_STATUS(chronica_director_node_last_error(d, BAD_UTF8, text, sizeof text, &text_len, &failed), U8);
}

static void test_last_error(void) {
    CHECK_STATUS(chronica_director_unregister(NULL, "a"), NS);
    size_t n = chronica_last_error(NULL, 0);
    CHECK(n > 0);
    char small[8];
    memset(small, 'x', sizeof small);
    CHECK(chronica_last_error(small, sizeof small) == n);
    CHECK(small[7] == '\0' && strlen(small) == 7);
    char full[256];
    chronica_last_error(full, sizeof full);
    CHECK(strstr(full, "director") != NULL && strstr(full, "NULL") != NULL);
    CHECK(strstr(full, "NULL_ARGUMENT") != NULL);
    /* a success does not clear it */
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_batch_size(o, 3));
    CHECK(chronica_last_error(NULL, 0) == n);
    CHECK_STATUS(chronica_options_set_trust_token(o, BAD_UTF8), U8);
    chronica_last_error(full, sizeof full);
    CHECK(strstr(full, "UTF-8") != NULL);
    chronica_options_free(o);
}

static void *other_thread(void *arg) {
    size_t *out = arg;
    *out = chronica_last_error(NULL, 0);
    return NULL;
}

static void test_last_error_is_thread_local(void) {
    CHECK_STATUS(chronica_director_unregister(NULL, "a"), NS);
    size_t there = 1;
    pthread_t t;
    pthread_create(&t, NULL, other_thread, &there);
    pthread_join(t, NULL);
    CHECK(there == 0);
}

/* Calls from a pthread key destructor, which runs after the thread's Rust
   locals are gone: they must return statuses, not abort the process. */
static chronica_director *g_teardown_director;
static _Atomic chronica_status g_teardown_status = CHRONICA_OK;
static _Atomic size_t g_teardown_len = 1;

static void at_thread_exit(void *value) {
    (void)value;
    atomic_store(&g_teardown_status, chronica_director_unregister(g_teardown_director, "nobody"));
    atomic_store(&g_teardown_len, chronica_last_error(NULL, 0));
}

static void *thread_that_used_the_library(void *key) {
    pthread_setspecific(*(pthread_key_t *)key, (void *)1);
    /* a failing call gives the thread its last-error slot */
    CHECK_STATUS(chronica_director_unregister(g_teardown_director, "nobody"), UN);
    return NULL;
}

static void test_calls_from_thread_teardown(void) {
    CHECK_OK(chronica_director_new(NULL, &g_teardown_director));
    pthread_key_t key;
    CHECK(pthread_key_create(&key, at_thread_exit) == 0);
    pthread_t t;
    pthread_create(&t, NULL, thread_that_used_the_library, &key);
    pthread_join(t, NULL);
    CHECK_STATUS(atomic_load(&g_teardown_status), UN);
    /* no slot left to keep a message in: nothing to read */
    CHECK(atomic_load(&g_teardown_len) == 0);
    pthread_key_delete(key);
    chronica_director_free(g_teardown_director);
}

int main(void) {
    memset(LONG_UID, 'u', 256);
    LONG_UID[256] = '\0';
    memset(MAX_UID, 'm', 255);
    MAX_UID[255] = '\0';

    table_options();
    table_node_options();
    table_subscribe_options();
    test_a_zero_retry_delay_changes_nothing();
    test_capacities_above_the_maximum();
    test_calls_from_thread_teardown();

    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    CHECK_OK(chronica_director_register(d, "a", ok_send, NULL, count_free));
    CHECK_OK(chronica_director_register(d, "b", ok_send, NULL, count_free));
    CHECK_OK(chronica_director_emit(d, "a", "t", NULL, 0));
    CHECK(wait_idle(d, "b", 2));
    CHECK(wait_idle(d, "a", 1));
    chronica_node_stats a0 = stats_of(d, "a"), b0 = stats_of(d, "b");
    const uint64_t last_id = chronica_last_event_id();
    CHECK(last_id != 0);

    table_director(d);
    /* every emit of the table failed: none moved the last event id */
    CHECK(chronica_last_event_id() == last_id);

    /* nothing changed: same counters, no destructor, no node added */
    chronica_node_stats a1 = stats_of(d, "a"), b1 = stats_of(d, "b");
    CHECK(memcmp(&a0, &a1, sizeof a0) == 0);
    CHECK(memcmp(&b0, &b1, sizeof b0) == 0);
    CHECK(atomic_load(&g_freed) == 0);
    chronica_node_stats s = {0};
    CHECK_STATUS(chronica_director_node_stats(d, "x", &s), UN);
    /* the longest uid is fine */
    CHECK_OK(chronica_director_register(d, MAX_UID, ok_send, NULL, count_free));
    CHECK_OK(chronica_director_unregister(d, MAX_UID));
    CHECK(atomic_load(&g_freed) == 1);

    uint64_t undelivered = 7;
    CHECK_OK(chronica_director_close(d, 1000, &undelivered));
    CHECK(undelivered == 0);
    CHECK(atomic_load(&g_freed) == 1); /* a and b: at the free */
    table_after_close(d);
    CHECK(chronica_last_event_id() == last_id);
    CHECK(atomic_load(&g_freed) == 1);
    chronica_director_free(d);
    CHECK(atomic_load(&g_freed) == 3);
    chronica_director_free(NULL);

    test_last_error();
    test_last_error_is_thread_local();
    return finish();
}
