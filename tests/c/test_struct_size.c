/*
 * The layouts of the structs the library fills.
 *
 * chronica_distributed_stats, outside the SPEC, grows and so carries a
 * leading struct_size: the library writes only the fields that fit in it.
 * A caller built against an older header (a prefix of today's struct)
 * keeps the bytes past its struct; a caller built against a newer one (a
 * larger struct) keeps the bytes past what this library knows; a size of 0
 * (left unset) or below the first version is refused with nothing written.
 *
 * chronica_node_stats has the fixed layout of SPEC section 5, seven
 * uint64_t counters and nothing else: code written exactly as the SPEC
 * shows (a struct left uninitialised, or = {0}, passed as it is) gets all
 * seven, from every function that fills one.
 *
 * Structs live in a byte buffer filled with a canary; the bytes the
 * library may not write are checked to still hold it, and the ones it
 * must write to no longer do.
 */
#include <stddef.h>

#include "harness.h"

#define CANARY 0xA5
#define ROOM 512

typedef union buffer {
    unsigned char bytes[ROOM];
    size_t align_size;
    uint64_t align_u64;
    chronica_node_stats node;
    chronica_distributed_stats dist;
} buffer;

/* A buffer of canary bytes whose struct_size reads `size`. */
static buffer *canary_with_size(buffer *b, size_t size) {
    memset(b->bytes, CANARY, sizeof b->bytes);
    memcpy(b->bytes, &size, sizeof size);
    return b;
}

/* The bytes from `from` to the end of the buffer still hold the canary. */
static int untouched_from(const buffer *b, size_t from) {
    for (size_t i = from; i < sizeof b->bytes; i++) {
        if (b->bytes[i] != CANARY) {
            fprintf(stderr, "byte %zu was written\n", i);
            return 0;
        }
    }
    return 1;
}

static int last_error_names(const char *what) {
    char why[512];
    chronica_last_error(why, sizeof why);
    return strstr(why, what) != NULL;
}

static void test_distributed_stats(void) {
    chronica_director *d = NULL;
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_trust_token(o, "token")); /* distributed mode signs with it */
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    chronica_distributed *x = NULL;
    CHECK_OK(chronica_distributed_new(d, "memory://struct-size", NULL, &x));
    uint64_t id = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_OK(chronica_distributed_emit(x, NULL, "t", (const uint8_t *)"p", 1, &id));
    }
    bool flushed = false;
    CHECK_OK(chronica_distributed_flush(x, 10000, &flushed));
    CHECK(flushed);

    chronica_distributed_stats full = {.struct_size = sizeof full};
    CHECK_OK(chronica_distributed_get_stats(x, &full));
    CHECK(full.published == 3);
    CHECK(full.struct_size == sizeof full); /* never written */

    buffer b;
    /* An older caller: the first version, up to and including resubscribes. */
    size_t v1 = offsetof(chronica_distributed_stats, group_sender_only);
    CHECK_OK(chronica_distributed_get_stats(x, &canary_with_size(&b, v1)->dist));
    CHECK(b.dist.struct_size == v1);
    CHECK(b.dist.published == 3 && b.dist.received == full.received && b.dist.malformed == 0 &&
          b.dist.resubscribes == full.resubscribes);
    CHECK(untouched_from(&b, v1));

    /* A size ending inside a field: that field is not half-written. */
    size_t mid = offsetof(chronica_distributed_stats, publish_rejected) + 4;
    CHECK_OK(chronica_distributed_get_stats(x, &canary_with_size(&b, mid)->dist));
    CHECK(b.dist.group_sender_only == full.group_sender_only);
    CHECK(untouched_from(&b, offsetof(chronica_distributed_stats, publish_rejected)));

    /* A newer caller, whose struct is longer than this library's. */
    size_t newer = sizeof(chronica_distributed_stats) + 24;
    CHECK_OK(chronica_distributed_get_stats(x, &canary_with_size(&b, newer)->dist));
    CHECK(b.dist.rejected_stale == full.rejected_stale && b.dist.published == 3);
    /* Everything the library knows is written, nothing past it. */
    CHECK(untouched_from(&b, sizeof(chronica_distributed_stats)));

    /* Unset, or below the first version: refused, nothing written. */
    CHECK_STATUS(chronica_distributed_get_stats(x, &canary_with_size(&b, 0)->dist), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(last_error_names("struct_size"));
    CHECK(untouched_from(&b, sizeof(size_t)));
    CHECK_STATUS(chronica_distributed_get_stats(x, &canary_with_size(&b, v1 - 1)->dist),
                 CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(untouched_from(&b, sizeof(size_t)));
    CHECK_STATUS(chronica_distributed_get_stats(x, NULL), CHRONICA_ERR_NULL_ARGUMENT);

    CHECK_OK(chronica_distributed_close(x, 5000, NULL));
    chronica_distributed_free(x);
    chronica_director_free(d);
}

static int32_t handled(void *ud, const chronica_event *e) {
    (void)ud;
    (void)e;
    return 0;
}

/* Every counter of `got` equals the one of `want`. Compared one by one, so
   that valgrind names a counter the library left unwritten. */
static int same_counters(chronica_node_stats got, chronica_node_stats want) {
    return got.accepted == want.accepted && got.delivered == want.delivered && got.dropped == want.dropped &&
           got.dead_lettered == want.dead_lettered && got.pending == want.pending && got.retries == want.retries &&
           got.failures == want.failures;
}

static int all_above_zero(chronica_node_stats s) {
    return s.accepted > 0 && s.delivered > 0 && s.dropped > 0 && s.dead_lettered > 0 && s.pending > 0 &&
           s.retries > 0 && s.failures > 0;
}

static void test_node_stats_layout(void) {
    /* SPEC section 5: seven uint64_t, in this order, nothing else. */
    CHECK(sizeof(chronica_node_stats) == 7 * sizeof(uint64_t));
    CHECK(offsetof(chronica_node_stats, accepted) == 0 * sizeof(uint64_t));
    CHECK(offsetof(chronica_node_stats, delivered) == 1 * sizeof(uint64_t));
    CHECK(offsetof(chronica_node_stats, dropped) == 2 * sizeof(uint64_t));
    CHECK(offsetof(chronica_node_stats, dead_lettered) == 3 * sizeof(uint64_t));
    CHECK(offsetof(chronica_node_stats, pending) == 4 * sizeof(uint64_t));
    CHECK(offsetof(chronica_node_stats, retries) == 5 * sizeof(uint64_t));
    CHECK(offsetof(chronica_node_stats, failures) == 6 * sizeof(uint64_t));
}

/* Node "n" with each of the seven counters above zero: a batch
   dead-lettered after one retry (two failures), then, disconnected with a
   lane of 2, three events: one dropped, the rest pending. */
static chronica_director *director_with_every_counter_moved(recorder *r) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_retry(no, 1, 4, 2.0, 1));
    CHECK_OK(chronica_node_options_set_queue_capacity(no, 2));
    atomic_store(&r->fail_next, 2);
    CHECK_OK(reg_with(d, r, no));
    chronica_node_options_free(no);
    CHECK(wait_idle(d, "n", 1)); /* the state pull, alone in its batch */
    CHECK_OK(emit_str(d, NULL, "t", "fails twice"));
    CHECK(wait_idle(d, "n", 1)); /* dead-lettered */
    CHECK_OK(chronica_director_node_disconnected(d, "n"));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(emit_str(d, NULL, "t", "held"));
    }
    return d;
}

static void test_node_stats_as_the_spec_shows(void) {
    recorder *r = rec_new("n");
    chronica_director *d = director_with_every_counter_moved(r);
    chronica_node_stats want = stats_of(d, "n");
    CHECK(all_above_zero(want) && balanced(want));
    CHECK(want.dead_lettered == 1 && want.failures == 2 && want.retries == 1);

    /* Exactly the SPEC's code: a struct left uninitialised. */
    chronica_node_stats s;
    CHECK_OK(chronica_director_node_stats(d, "n", &s));
    CHECK(same_counters(s, want));

    /* ... and one zero-initialised. */
    chronica_node_stats z = {0};
    CHECK_OK(chronica_director_node_stats(d, "n", &z));
    CHECK(same_counters(z, want));

    /* Garbage in every byte: all seven are written, nothing past them. */
    buffer b;
    memset(b.bytes, CANARY, sizeof b.bytes);
    CHECK_OK(chronica_director_node_stats(d, "n", &b.node));
    CHECK(same_counters(b.node, want));
    CHECK(untouched_from(&b, sizeof(chronica_node_stats)));

    /* Refused calls write nothing. */
    memset(b.bytes, CANARY, sizeof b.bytes);
    CHECK_STATUS(chronica_director_node_stats(d, "ghost", &b.node), CHRONICA_ERR_UNKNOWN_NODE);
    CHECK(untouched_from(&b, 0));
    CHECK_STATUS(chronica_director_node_stats(d, "n", NULL), CHRONICA_ERR_NULL_ARGUMENT);

    /* unregister_draining's final counters: the node is disconnected, so
       it ends at once, what it held counted as dropped. */
    chronica_node_stats last;
    CHECK_OK(chronica_director_unregister_draining(d, "n", 60000, &last));
    CHECK(last.accepted == want.accepted && last.pending == 0 && balanced(last));
    CHECK(last.dropped >= want.dropped + 2 && last.dead_lettered == 1);
    CHECK(last.delivered == want.delivered && last.retries == want.retries && last.failures == want.failures);
    chronica_director_free(d);
    rec_delete(r);
}

/* The bus's two functions filling a chronica_node_stats. */
static void test_bus_node_stats_as_the_spec_shows(void) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    chronica_bus *bus = NULL;
    CHECK_OK(chronica_bus_new(d, &bus));
    chronica_subscription *sub = NULL;
    CHECK_OK(chronica_bus_on(bus, "t", NULL, handled, NULL, NULL, &sub));

    chronica_node_stats s;
    CHECK_OK(chronica_bus_stats(bus, sub, &s));
    CHECK(s.accepted >= 1 && balanced(s)); /* the state pull */
    CHECK(s.dropped == 0 && s.dead_lettered == 0 && s.retries == 0 && s.failures == 0);

    buffer b;
    memset(b.bytes, CANARY, sizeof b.bytes);
    CHECK_OK(chronica_bus_stats(bus, sub, &b.node));
    CHECK(b.node.accepted >= 1 && balanced(b.node) && b.node.failures == 0);
    CHECK(untouched_from(&b, sizeof(chronica_node_stats)));

    memset(b.bytes, CANARY, sizeof b.bytes);
    CHECK_OK(chronica_bus_off(bus, sub, 1000, &b.node));
    CHECK(b.node.accepted >= 1 && b.node.pending == 0 && balanced(b.node));
    CHECK(b.node.dropped == 0 && b.node.dead_lettered == 0 && b.node.retries == 0 && b.node.failures == 0);
    CHECK(untouched_from(&b, sizeof(chronica_node_stats)));
    /* Ended: refused, nothing written. */
    memset(b.bytes, CANARY, sizeof b.bytes);
    CHECK_STATUS(chronica_bus_stats(bus, sub, &b.node), CHRONICA_ERR_UNKNOWN_NODE);
    CHECK(untouched_from(&b, 0));
    chronica_subscription_free(sub);
    chronica_bus_free(bus);
    chronica_director_free(d);
}

int main(void) {
    test_distributed_stats();
    test_node_stats_layout();
    test_node_stats_as_the_spec_shows();
    test_bus_node_stats_as_the_spec_shows();
    return finish();
}
