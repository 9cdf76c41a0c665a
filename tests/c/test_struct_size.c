/*
 * Out-structs that grow (chronica_node_stats, chronica_distributed_stats)
 * carry a leading struct_size: the library writes only the fields that fit
 * in it. A caller built against an older header (a prefix of today's
 * struct) keeps the bytes past its struct; a caller built against a newer
 * one (a larger struct) keeps the bytes past what this library knows; a
 * size of 0 (left unset) or below the first version is refused with
 * nothing written and, for chronica_bus_off, nothing done.
 *
 * Each struct lives in a byte buffer filled with a canary; the bytes the
 * library may not write are checked to still hold it.
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

static void test_node_stats(void) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    CHECK_OK(chronica_director_register(d, "n", ok_send, NULL, NULL));
    CHECK_OK(chronica_director_emit(d, NULL, "t", NULL, 0));
    CHECK(wait_idle(d, "n", 2));
    chronica_node_stats full = stats_of(d, "n");
    CHECK(full.delivered == 2 && full.connected);

    buffer b;
    /* The first version is today's whole struct, up to `connected`. */
    size_t v1 = offsetof(chronica_node_stats, connected) + sizeof(bool);
    CHECK_OK(chronica_director_node_stats(d, "n", &canary_with_size(&b, v1)->node));
    CHECK(b.node.delivered == 2 && b.node.accepted == full.accepted && b.node.connected);
    CHECK(untouched_from(&b, v1));

    /* A newer caller, whose struct is longer than this library's. */
    CHECK_OK(chronica_director_node_stats(d, "n", &canary_with_size(&b, sizeof(chronica_node_stats) + 16)->node));
    CHECK(b.node.failures == 0 && b.node.connected);
    CHECK(untouched_from(&b, v1));

    CHECK_STATUS(chronica_director_node_stats(d, "n", &canary_with_size(&b, 0)->node), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(last_error_names("struct_size"));
    CHECK(untouched_from(&b, sizeof(size_t)));
    CHECK_STATUS(chronica_director_node_stats(d, "n", &canary_with_size(&b, v1 - 1)->node),
                 CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(untouched_from(&b, sizeof(size_t)));

    /* The bus's two functions filling a chronica_node_stats. */
    chronica_bus *bus = NULL;
    CHECK_OK(chronica_bus_new(d, &bus));
    chronica_subscription *sub = NULL;
    CHECK_OK(chronica_bus_on(bus, "t", NULL, handled, NULL, NULL, &sub));
    CHECK_OK(chronica_bus_stats(bus, sub, &canary_with_size(&b, v1)->node));
    CHECK(untouched_from(&b, v1));
    CHECK_STATUS(chronica_bus_stats(bus, sub, &canary_with_size(&b, 0)->node), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(untouched_from(&b, sizeof(size_t)));
    /* A refused off ends nothing: the subscription still answers. */
    CHECK_STATUS(chronica_bus_off(bus, sub, 1000, &canary_with_size(&b, 0)->node), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(untouched_from(&b, sizeof(size_t)));
    CHECK_OK(chronica_bus_stats(bus, sub, &canary_with_size(&b, v1)->node));
    CHECK_OK(chronica_bus_off(bus, sub, 1000, &canary_with_size(&b, v1)->node));
    CHECK(b.node.struct_size == v1 && untouched_from(&b, v1));
    chronica_subscription_free(sub);
    chronica_bus_free(bus);
    chronica_director_free(d);
}

int main(void) {
    test_distributed_stats();
    test_node_stats();
    return finish();
}
