/*
 * Nothing is silently lost, through the C API (SPEC 2.4): seeded rounds of
 * random registrations (topic patterns, consumer groups, drop policies,
 * lanes of three, registered disconnected), unregistrations with events
 * pending (handed to another group member, else dropped), disconnections,
 * callbacks failing until their batches are dead-lettered (pauses let
 * the retries run out), broadcasts with
 * and without source and key, and unicasts. Each round then heals and
 * connects every node, waits until nothing is pending, and closes. For
 * every accepted event, the deliveries a plain model owes it (each
 * ungrouped subscriber but the source, one per group with a member that is
 * not the source, the unicast's target) must equal what the callbacks
 * received plus what the drop and dead-letter hooks reported; no node gets
 * an event twice; every node's free_user_data runs exactly once.
 *
 * Events are told apart by a sequence number in their payload: the emit
 * functions return a status, not an id.
 */
#include "harness.h"

#define ROUNDS 12
#define OPS 60
#define SLOTS 5
#define MAX_EVENTS (ROUNDS * OPS)
#define MAX_REGS (ROUNDS * OPS)

static const char *TOPICS[] = {"a.x", "a.y.z", "b", "c.x", "a"};
#define NTOPICS 5
/* Pattern sets, as in core/tests/common/model.rs; NULL ends a set. */
static const char *PATTERNS[][3] = {{NULL}, {"a.*", NULL}, {"a.>", NULL}, {"b", NULL}, {"*.x", NULL}, {"a.*", "b", NULL}};
#define NPATTERNS 6
static const char *GROUPS[] = {NULL, "g1", "g2"};
#define NGROUPS 3

/* One registration: what it subscribed to and what it received. */
typedef struct {
    char uid[8];
    int patterns, group;
    atomic_int fail;
    atomic_int freed;
    pthread_mutex_t lock;
    uint64_t *got; /* payload sequence numbers received */
    size_t n_got;
} reg_t;

static reg_t g_regs[MAX_REGS];
static size_t g_n_regs;
/* The live registration of each slot, or -1. */
static int g_live[SLOTS];

/* Per event sequence number: deliveries owed, and what the hooks saw. */
static int g_owed[MAX_EVENTS];
static atomic_int g_dropped[MAX_EVENTS];
static atomic_int g_dead[MAX_EVENTS];
static uint64_t g_next_seq;

static uint64_t g_rng;
static uint64_t next_rand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static int pick(int n) { return (int)(next_rand() % (uint64_t)n); }

/* A topic pattern match: `*` one segment, `>` one or more at the end. */
static int segment_len(const char *s) {
    const char *dot = strchr(s, '.');
    return dot ? (int)(dot - s) : (int)strlen(s);
}
static int pattern_matches(const char *p, const char *t) {
    for (;;) {
        int pl = segment_len(p), tl = segment_len(t);
        if (pl == 1 && p[0] == '>') {
            return 1;
        }
        if (!(pl == 1 && p[0] == '*') && (pl != tl || strncmp(p, t, (size_t)pl) != 0)) {
            return 0;
        }
        int p_end = p[pl] == '\0', t_end = t[tl] == '\0';
        if (p_end || t_end) {
            return p_end && t_end;
        }
        p += pl + 1;
        t += tl + 1;
    }
}
static int subscribed(const reg_t *r, const char *topic) {
    const char *const *set = PATTERNS[r->patterns];
    if (set[0] == NULL) {
        return 1;
    }
    for (; *set; set++) {
        if (pattern_matches(*set, topic)) {
            return 1;
        }
    }
    return 0;
}

static uint64_t seq_of(const chronica_event *e) {
    uint64_t s = 0;
    if (e->payload_len == sizeof s) {
        memcpy(&s, e->payload, sizeof s);
    }
    return s;
}

static int32_t record(void *user_data, const chronica_event *events, size_t count) {
    reg_t *r = user_data;
    if (atomic_load(&r->fail)) {
        return 1;
    }
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < count; i++) {
        if (events[i].kind == CHRONICA_EVENT_USER) {
            uint64_t *grown = realloc(r->got, (r->n_got + 1) * sizeof *grown);
            if (grown) {
                r->got = grown;
                r->got[r->n_got++] = seq_of(&events[i]);
            }
        }
    }
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static void free_reg(void *user_data) { atomic_fetch_add(&((reg_t *)user_data)->freed, 1); }

static void on_drop(void *user_data, const char *uid, size_t uid_len, const chronica_event *event,
                    chronica_drop_reason reason) {
    (void)user_data, (void)uid, (void)uid_len, (void)reason;
    if (event->kind == CHRONICA_EVENT_USER) {
        atomic_fetch_add(&g_dropped[seq_of(event)], 1);
    }
}

static void on_dead(void *user_data, const char *uid, size_t uid_len, const chronica_event *events, size_t count,
                    const char *error, size_t error_len) {
    (void)user_data, (void)uid, (void)uid_len, (void)error, (void)error_len;
    for (size_t i = 0; i < count; i++) {
        if (events[i].kind == CHRONICA_EVENT_USER) {
            atomic_fetch_add(&g_dead[seq_of(&events[i])], 1);
        }
    }
}

static void do_register(chronica_director *d, int slot) {
    reg_t *r = &g_regs[g_n_regs];
    snprintf(r->uid, sizeof r->uid, "n%d", slot);
    r->patterns = pick(NPATTERNS);
    r->group = pick(NGROUPS);
    chronica_node_options *o = chronica_node_options_new();
    for (const char *const *p = PATTERNS[r->patterns]; *p; p++) {
        CHECK_OK(chronica_node_options_add_topic(o, *p));
    }
    if (GROUPS[r->group]) {
        CHECK_OK(chronica_node_options_set_group(o, GROUPS[r->group]));
    }
    CHECK_OK(chronica_node_options_set_queue_capacity(o, 3));
    CHECK_OK(chronica_node_options_set_overflow(o, pick(2) ? CHRONICA_OVERFLOW_DROP_OLDEST
                                                           : CHRONICA_OVERFLOW_DROP_NEWEST));
    CHECK_OK(chronica_node_options_set_connected(o, pick(2)));
    pthread_mutex_init(&r->lock, NULL);
    chronica_status st = chronica_director_register_with(d, r->uid, o, record, r, free_reg);
    chronica_node_options_free(o);
    if (g_live[slot] >= 0) {
        CHECK(st == CHRONICA_ERR_DUPLICATE_NODE);
        CHECK(atomic_load(&r->freed) == 0); /* refused: the caller keeps user_data */
        pthread_mutex_destroy(&r->lock);
        return;
    }
    CHECK_OK(st);
    g_live[slot] = (int)g_n_regs++;
}

static void do_emit(chronica_director *d) {
    const char *topic = TOPICS[pick(NTOPICS)];
    int source = pick(SLOTS + 1) - 1; /* -1: no source */
    int keyed = pick(2);
    char source_uid[8], key[2] = {(char)('0' + pick(3)), 0};
    snprintf(source_uid, sizeof source_uid, "n%d", source);
    uint64_t seq = g_next_seq;
    const char *src = source < 0 ? NULL : source_uid;
    chronica_status st = keyed ? chronica_director_emit_keyed(d, src, topic, (const uint8_t *)key, 1,
                                                              (const uint8_t *)&seq, sizeof seq)
                               : chronica_director_emit(d, src, topic, (const uint8_t *)&seq, sizeof seq);
    if (source >= 0 && g_live[source] < 0) {
        CHECK(st == CHRONICA_ERR_UNKNOWN_NODE);
        return;
    }
    CHECK_OK(st);
    g_next_seq++;
    int owed = 0, group_taken[NGROUPS] = {0};
    for (int s = 0; s < SLOTS; s++) {
        if (g_live[s] < 0 || s == source || !subscribed(&g_regs[g_live[s]], topic)) {
            continue;
        }
        int g = g_regs[g_live[s]].group;
        if (g == 0) {
            owed++;
        } else if (!group_taken[g]) {
            group_taken[g] = 1;
            owed++;
        }
    }
    g_owed[seq] = owed;
}

static void do_emit_to(chronica_director *d, int slot) {
    uint64_t seq = g_next_seq;
    char uid[8];
    snprintf(uid, sizeof uid, "n%d", slot);
    chronica_status st = chronica_director_emit_to(d, NULL, uid, TOPICS[pick(NTOPICS)], (const uint8_t *)&seq, sizeof seq);
    if (g_live[slot] < 0) {
        CHECK(st == CHRONICA_ERR_UNKNOWN_NODE);
        return;
    }
    CHECK_OK(st);
    g_next_seq++;
    g_owed[seq] = 1;
}

static int g_settle_slot;
static chronica_director *g_settle_d;
static int nothing_pending(void *ctx) {
    (void)ctx;
    chronica_node_stats s = {0};
    return chronica_director_node_stats(g_settle_d, g_regs[g_live[g_settle_slot]].uid, &s) == CHRONICA_OK &&
           s.pending == 0;
}

static void round_of(uint64_t seed) {
    g_rng = seed * 0x9e3779b97f4a7c15ull + 1;
    chronica_options *opts = chronica_options_new();
    CHECK_OK(chronica_options_set_retry(opts, 1, 4, 2.0, 2));
    CHECK_OK(chronica_options_set_drop_hook(opts, on_drop, NULL));
    CHECK_OK(chronica_options_set_dead_letter_hook(opts, on_dead, NULL));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(opts, &d));
    chronica_options_free(opts);
    size_t first_reg = g_n_regs;
    uint64_t first_seq = g_next_seq;
    for (int s = 0; s < SLOTS; s++) {
        g_live[s] = -1;
    }
    for (int op = 0; op < OPS; op++) {
        int slot = pick(SLOTS), roll = pick(22);
        char uid[8];
        snprintf(uid, sizeof uid, "n%d", slot);
        if (roll < 3) {
            do_register(d, slot);
        } else if (roll < 5) {
            chronica_status st = chronica_director_unregister(d, uid);
            CHECK(st == (g_live[slot] >= 0 ? CHRONICA_OK : CHRONICA_ERR_UNKNOWN_NODE));
            g_live[slot] = -1;
        } else if (roll < 7) {
            chronica_status st = pick(2) ? chronica_director_node_connected(d, uid)
                                         : chronica_director_node_disconnected(d, uid);
            CHECK(st == (g_live[slot] >= 0 ? CHRONICA_OK : CHRONICA_ERR_UNKNOWN_NODE));
        } else if (roll < 9) {
            if (g_live[slot] >= 0) {
                atomic_store(&g_regs[g_live[slot]].fail, pick(3) > 0);
            }
        } else if (roll < 10) {
            sleep_ms(10); /* time for failing batches to run out of retries */
        } else if (roll < 20) {
            do_emit(d);
        } else {
            do_emit_to(d, slot);
        }
    }
    /* Heal, connect and settle every live node, then close: nothing left. */
    g_settle_d = d;
    for (int s = 0; s < SLOTS; s++) {
        if (g_live[s] >= 0) {
            atomic_store(&g_regs[g_live[s]].fail, 0);
            CHECK_OK(chronica_director_node_connected(d, g_regs[g_live[s]].uid));
        }
    }
    for (int s = 0; s < SLOTS; s++) {
        if (g_live[s] >= 0) {
            g_settle_slot = s;
            CHECK(wait_until(nothing_pending, NULL));
        }
    }
    uint64_t undelivered = 1;
    CHECK_OK(chronica_director_close(d, 5000, &undelivered));
    CHECK(undelivered == 0);
    chronica_director_free(d);

    /* Per event: owed = delivered + dropped + dead-lettered. */
    static int delivered[MAX_EVENTS];
    memset(delivered, 0, sizeof delivered);
    for (size_t i = first_reg; i < g_n_regs; i++) {
        reg_t *r = &g_regs[i];
        CHECK(atomic_load(&r->freed) == 1);
        for (size_t k = 0; k < r->n_got; k++) {
            for (size_t j = 0; j < k; j++) {
                if (r->got[j] == r->got[k]) {
                    fprintf(stderr, "seed %llu: %s got event %llu twice\n", (unsigned long long)seed, r->uid,
                            (unsigned long long)r->got[k]);
                    CHECK(0);
                }
            }
            delivered[r->got[k]]++;
        }
        free(r->got);
        pthread_mutex_destroy(&r->lock);
    }
    int wrong = 0;
    for (uint64_t s = first_seq; s < g_next_seq; s++) {
        int sum = delivered[s] + atomic_load(&g_dropped[s]) + atomic_load(&g_dead[s]);
        if (sum != g_owed[s] && wrong++ < 5) {
            fprintf(stderr, "seed %llu: event %llu owed %d, delivered %d, dropped %d, dead-lettered %d\n",
                    (unsigned long long)seed, (unsigned long long)s, g_owed[s], delivered[s],
                    atomic_load(&g_dropped[s]), atomic_load(&g_dead[s]));
        }
    }
    CHECK(wrong == 0);
}

int main(void) {
    for (uint64_t seed = 1; seed <= ROUNDS; seed++) {
        round_of(seed);
    }
    /* The rounds did reach the paths under test. */
    int drops = 0, deads = 0;
    for (uint64_t s = 0; s < g_next_seq; s++) {
        drops += atomic_load(&g_dropped[s]);
        deads += atomic_load(&g_dead[s]);
    }
    CHECK(drops > 0);
    CHECK(deads > 0);
    printf("%llu events, %d dropped, %d dead-lettered\n", (unsigned long long)g_next_seq, drops, deads);
    return finish();
}
