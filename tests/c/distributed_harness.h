/*
 * Helpers shared by the distributed-mode C tests (test_distributed.c over
 * the in-memory broker, test_mq_adapter.c over a broker written in C):
 * the options every instance joins with, a director with a trust token,
 * registering a recorder through a distributed handle, emitting a string,
 * and waiting for a recorder's events.
 */
#ifndef CHRONICA_TEST_DISTRIBUTED_HARNESS_H
#define CHRONICA_TEST_DISTRIBUTED_HARNESS_H

#include "harness.h"

/* The options of every test instance: topic prefix "ctest", a 60 s dedup
   window, a 5 s connect timeout. Free with chronica_distributed_options_free. */
static inline chronica_distributed_options *xoptions(const char *id, uint32_t ack_mode) {
    chronica_distributed_options *xo = chronica_distributed_options_new();
    CHECK(xo != NULL);
    CHECK_OK(chronica_distributed_options_set_instance_id(xo, id));
    CHECK_OK(chronica_distributed_options_set_topic_prefix(xo, "ctest"));
    CHECK_OK(chronica_distributed_options_set_ack_mode(xo, ack_mode));
    CHECK_OK(chronica_distributed_options_set_dedup_window(xo, 60000));
    CHECK_OK(chronica_distributed_options_set_connect_timeout(xo, 5000));
    return xo;
}

static inline chronica_director *director_with(const char *token) {
    chronica_director *d = NULL;
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_trust_token(o, token));
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    return d;
}

/* Registers recorder `r` on director `d` through distributed handle `x`,
   with an optional topic pattern and consumer group. */
static inline chronica_status xreg_on(chronica_director *d, chronica_distributed *x, recorder *r, const char *topic,
                                      const char *group) {
    chronica_node_options *no = chronica_node_options_new();
    if (topic) {
        CHECK_OK(chronica_node_options_add_topic(no, topic));
    }
    if (group) {
        CHECK_OK(chronica_node_options_set_group(no, group));
    }
    r->d = d;
    chronica_status s = chronica_distributed_register_with(x, r->uid, no, rec_send, r, rec_free);
    chronica_node_options_free(no);
    return s;
}

static inline chronica_status xemit_on(chronica_distributed *x, const char *source, const char *topic,
                                       const char *payload, uint64_t *id) {
    return chronica_distributed_emit(x, source, topic, (const uint8_t *)payload, strlen(payload), id);
}

struct len_ctx {
    recorder *r;
    chronica_event_kind kind;
    const char *topic;
    size_t want;
};

static inline int len_pred(void *p) {
    struct len_ctx *c = p;
    return rec_count(c->r, c->kind, c->topic) >= c->want;
}

/* Waits until `r` holds at least `want` events of `kind` on `topic`. */
static inline int wait_events(recorder *r, chronica_event_kind kind, const char *topic, size_t want) {
    struct len_ctx c = {r, kind, topic, want};
    return wait_until(len_pred, &c);
}

#endif
