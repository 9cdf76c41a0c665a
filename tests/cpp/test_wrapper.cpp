// Tests of include/chronica.hpp: RAII, std::function nodes, statuses as
// exceptions, exceptions never crossing into C, hooks, close and move,
// partial delivery, unregister_draining, emit ids, a node's last error,
// emit_many.
// Ends with "N passed, N failed".
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "chronica.hpp"

static int g_passed = 0;
static int g_failed = 0;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            ++g_passed;                                                               \
        } else {                                                                      \
            ++g_failed;                                                               \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                             \
    } while (0)

template <typename F>
static chronica_status status_of(F&& f) {
    try {
        f();
    } catch (const chronica::Error& e) {
        return e.status();
    }
    return CHRONICA_OK;
}

template <typename P>
static bool eventually(P pred) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

static bool idle(const chronica::Director& d, const std::string& uid, std::uint64_t n) {
    return eventually([&] {
        auto s = d.stats(uid);
        return s.pending == 0 && s.delivered >= n;
    });
}

struct Log {
    std::mutex mu;
    std::vector<std::string> topics;
    void add(const chronica::Batch& b) {
        std::lock_guard<std::mutex> g(mu);
        for (auto e : b) topics.emplace_back(e.topic());
    }
    std::size_t count(const std::string& t) {
        std::lock_guard<std::mutex> g(mu);
        std::size_t n = 0;
        for (auto& x : topics) n += x == t;
        return n;
    }
};

static void test_routing_and_raii() {
    auto alive = std::make_shared<int>(0);
    std::weak_ptr<int> watch = alive;
    Log a, b;
    std::string token_seen;
    {
        chronica::Options o;
        o.trust_token = "tok";
        chronica::Director d(o);
        d.register_node("a", [&a, alive](const chronica::Batch& batch) { a.add(batch); });
        d.register_node("b", [&b, &token_seen](const chronica::Batch& batch) {
            for (auto e : batch)
                if (e.is_root() && e.topic() == "chronica.pull_current_state") token_seen = std::string(e.trust_token());
            b.add(batch);
        });
        alive.reset();
        CHECK(!watch.expired());  // the director holds the callback
        d.emit("t", "x", std::string("a"));
        d.emit_to("a", "direct", "y");
        d.emit_root("r");
        d.emit_keyed("k", "key", "z");
        {
            chronica::Payload shared("shared bytes");
            d.emit_payload("p", shared, std::string("a"));
        }  // freed before delivery: the event keeps its own reference
        CHECK(idle(d, "a", 4));
        CHECK(idle(d, "b", 5));
        CHECK(b.count("p") == 1);
        CHECK(a.count("t") == 0 && b.count("t") == 1);
        CHECK(a.count("direct") == 1 && b.count("direct") == 0);
        CHECK(a.count("r") == 1 && b.count("r") == 1);
        CHECK(token_seen == "tok");
        auto s = d.stats("a");
        CHECK(s.accepted == s.delivered + s.dropped + s.dead_lettered + s.pending);
        d.unregister("a");
        CHECK(watch.expired());  // destroyed at unregister
    }
    CHECK(std::string(chronica::version()) == CHRONICA_VERSION);
}

static void test_errors_are_exceptions() {
    chronica::Director d;
    d.register_node("a", [](const chronica::Batch&) {});
    CHECK(status_of([&] { d.register_node("a", [](const chronica::Batch&) {}); }) == CHRONICA_ERR_DUPLICATE_NODE);
    CHECK(status_of([&] { d.emit("t", "x", std::string("ghost")); }) == CHRONICA_ERR_UNKNOWN_NODE);
    CHECK(status_of([&] { d.unregister(""); }) == CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(status_of([&] { d.stats(std::string(256, 'u')); }) == CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(status_of([&] { d.subscribe("a", "a.>.b"); }) == CHRONICA_ERR_INVALID_ARGUMENT);
    chronica::NodeOptions bad;
    bad.concurrency = 0;
    CHECK(status_of([&] { d.register_node("n", [](const chronica::Batch&) {}, bad); }) ==
          CHRONICA_ERR_INVALID_ARGUMENT);
    chronica::Options zero;
    zero.queue_capacity = 0;
    CHECK(status_of([&] { chronica::Director z(zero); }) == CHRONICA_ERR_INVALID_ARGUMENT);
    chronica::Options busy;  // a zero first retry delay would retry in a busy loop
    busy.retry.initial = std::chrono::milliseconds(0);
    CHECK(status_of([&] { chronica::Director z(busy); }) == CHRONICA_ERR_INVALID_ARGUMENT);
    try {
        d.emit("t", "x", std::string("ghost"));
    } catch (const chronica::Error& e) {
        CHECK(std::string(e.what()).find("ghost") != std::string::npos);
    }
    chronica::Payload kept("x");
    chronica::Payload moved(std::move(kept));
    CHECK(status_of([&] { d.emit_payload("t", kept); }) == CHRONICA_ERR_NULL_ARGUMENT);
    CHECK(d.close(std::chrono::milliseconds(1000)) == 0);
    CHECK(status_of([&] { d.emit("t", "x"); }) == CHRONICA_ERR_CLOSED);
    CHECK(status_of([&] { d.emit_payload("t", moved); }) == CHRONICA_ERR_CLOSED);
    CHECK(status_of([&] { d.close(); }) == CHRONICA_ERR_CLOSED);
    CHECK(d.stats("a").delivered == 1);
}

static void test_throwing_callback_is_retried() {
    std::atomic<int> errors{0}, dead{0}, calls{0};
    chronica::Options o;
    o.retry.initial = std::chrono::milliseconds(2);
    o.retry.max = std::chrono::milliseconds(8);
    std::mutex mu;
    std::vector<std::string> texts, dead_texts;
    o.on_error = [&](std::string_view uid, std::string_view why) {
        if (uid == "flaky") {
            errors++;
            std::lock_guard<std::mutex> g(mu);
            texts.emplace_back(why);
        }
        throw std::runtime_error("hooks may throw too; it never reaches C");
    };
    o.on_dead_letter = [&](std::string_view, const chronica::Batch& b, std::string_view why) {
        std::lock_guard<std::mutex> g(mu);
        dead_texts.emplace_back(why);
        dead += int(b.size());
    };
    chronica::Director d(o);
    d.register_node("flaky", [&](const chronica::Batch& b) {
        for (auto e : b)
            if (!e.is_root() && ++calls <= 3) throw std::runtime_error("not yet");
    });
    chronica::NodeOptions no;
    no.retry = chronica::Retry{std::chrono::milliseconds(1), std::chrono::milliseconds(2), 2.0, 1, 0.0};
    no.topics = {"doomed"};
    d.register_node("never", [](const chronica::Batch& b) {
        for (auto e : b)
            if (!e.is_root()) throw 42;  // not even a std::exception
    }, no);
    d.emit("t", "x");
    d.emit("doomed", "y");
    CHECK(idle(d, "flaky", 3));
    CHECK(idle(d, "never", 1));
    auto s = d.stats("flaky");
    CHECK(s.failures == 3 && s.retries == 3);
    CHECK(errors == 3);
    CHECK(eventually([&] { return dead == 1; }));
    CHECK(d.stats("never").dead_lettered == 1);
    std::lock_guard<std::mutex> g(mu);
    // A std::exception's what() is the failure text; anything else thrown
    // leaves the library's.
    CHECK(texts == std::vector<std::string>(3, "not yet"));
    CHECK(dead_texts == std::vector<std::string>{"callback returned 1"});
}

static void test_reentrant_and_move() {
    std::atomic<int> outcome{-1};
    chronica::Director d;
    chronica::Director* dp = &d;
    d.register_node("self", [&](const chronica::Batch& b) {
        for (auto e : b) {
            if (e.topic() == "go") {
                dp->emit_to("peer", "from-callback", "p");
                outcome = int(status_of([&] { dp->close(); }));
            }
        }
    });
    Log peer;
    d.register_node("peer", [&peer](const chronica::Batch& b) { peer.add(b); });
    d.emit_to("self", "go", "");
    CHECK(eventually([&] { return outcome != -1; }));
    CHECK(outcome == CHRONICA_ERR_REENTRANT);
    CHECK(idle(d, "peer", 2));
    CHECK(peer.count("from-callback") == 1);

    chronica::Director moved(std::move(d));
    dp = &moved;
    CHECK(d.get() == nullptr);
    moved.emit_to("peer", "after-move", "");
    CHECK(idle(moved, "peer", 3));
    CHECK(peer.count("after-move") == 1);
    chronica::Director other;
    other = std::move(moved);
    CHECK(other.close() == 0);
}

static void test_drop_hook_and_disconnect() {
    std::atomic<int> drops{0};
    chronica::Options o;
    o.queue_capacity = 2;
    o.on_drop = [&](std::string_view uid, const chronica::Event& e, chronica_drop_reason why) {
        if (uid == "off" && why == CHRONICA_DROP_OVERFLOW && !e.is_root()) drops++;
    };
    chronica::Director d(o);
    chronica::NodeOptions no;
    no.connected = false;
    Log off;
    d.register_node("off", [&off](const chronica::Batch& b) { off.add(b); }, no);
    for (int i = 0; i < 5; i++) d.emit("t", std::to_string(i));
    CHECK(drops == 3);
    CHECK(!d.is_connected("off"));
    d.node_connected("off");
    CHECK(idle(d, "off", 4));
    CHECK(off.count("t") == 2 && off.count("chronica.lagged") == 1);
    CHECK(d.is_connected("off"));
}

// Destroying a Director inside its own callback: the library refuses to
// free it, so it runs on and calls its error hook after the callback
// throws; the hooks must still be alive then (they were freed with the
// C++ object until session 10: a use after free under ASan).
static void test_destroyed_inside_its_own_callback() {
    std::atomic<int> errors{0};
    chronica::Options o;
    o.on_error = [&errors](std::string_view, std::string_view) { errors++; };
    auto* dp = new chronica::Director(o);
    chronica_director* raw = dp->get();
    std::atomic<bool> deleted{false};
    dp->register_node("self", [&](const chronica::Batch& b) {
        for (auto e : b) {
            if (e.topic() == "go" && !deleted.exchange(true)) {
                delete dp;
                throw std::runtime_error("after delete");
            }
        }
    });
    dp->emit_to("self", "go", "");
    CHECK(eventually([&] { return errors.load() >= 1; }));
    CHECK(deleted.load());
    // The refused director is still alive; its owner frees it from here.
    chronica_node_stats s{};
    CHECK(chronica_director_node_stats(raw, "self", &s) == CHRONICA_OK);
    chronica_director_free(raw);
}

struct Labels {
    std::mutex mu;
    std::vector<std::pair<chronica_event_kind, std::string>> seen;  // kind, content type
};

static int32_t record_labels(void* user_data, const chronica_event* raw) {
    auto* l = static_cast<Labels*>(user_data);
    chronica::Event e(*raw);
    std::lock_guard<std::mutex> g(l->mu);
    l->seen.emplace_back(e.kind(), std::string(e.content_type()));
    return 0;
}

// kind() and content_type() read what the emitter labelled: the bus's
// emit_with is the C API that sets a content type.
static void test_event_kind_and_content_type() {
    chronica::Director d;
    chronica_bus* bus = nullptr;
    CHECK(chronica_bus_new(d.get(), &bus) == CHRONICA_OK);
    Labels labels;
    chronica_subscription* sub = nullptr;
    CHECK(chronica_bus_on(bus, "ct.>", nullptr, record_labels, &labels, nullptr, &sub) == CHRONICA_OK);
    const std::string body = "{}";
    CHECK(chronica_bus_emit_with(bus, "ct.json", nullptr, 0, "application/json", chronica::detail::bytes(body),
                                 body.size()) == CHRONICA_OK);
    CHECK(chronica_bus_emit(bus, "ct.plain", chronica::detail::bytes(body), body.size()) == CHRONICA_OK);
    CHECK(chronica_bus_off(bus, sub, 5000, nullptr) == CHRONICA_OK);
    chronica_subscription_free(sub);
    CHECK(chronica_bus_close(bus, 5000, nullptr) == CHRONICA_OK);
    chronica_bus_free(bus);
    std::lock_guard<std::mutex> g(labels.mu);
    std::size_t json = 0, plain = 0, root = 0;
    for (const auto& [kind, ct] : labels.seen) {
        if (kind == CHRONICA_EVENT_USER && ct == "application/json") json++;
        if (kind == CHRONICA_EVENT_USER && ct.empty()) plain++;
        if (kind == CHRONICA_EVENT_ROOT) root++;
    }
    CHECK(json == 1 && plain == 1 && root == 0);  // a bus handler sees application events only

    // Through a plain node: roots are labelled ROOT, emits USER and unlabelled.
    Labels kinds;
    d.register_node("k", [&kinds](const chronica::Batch& b) {
        std::lock_guard<std::mutex> g(kinds.mu);
        for (auto e : b) kinds.seen.emplace_back(e.kind(), std::string(e.content_type()));
    });
    d.emit_root("ct.root");
    d.emit_to("k", "ct.user", body);
    CHECK(idle(d, "k", 3));  // the pull, the root, the user event
    std::lock_guard<std::mutex> gk(kinds.mu);
    CHECK(kinds.seen.size() == 3);
    std::size_t roots = 0, users = 0;
    for (const auto& [kind, ct] : kinds.seen) {
        roots += kind == CHRONICA_EVENT_ROOT && ct.empty();
        users += kind == CHRONICA_EVENT_USER && ct.empty();
    }
    CHECK(roots == 2 && users == 1);
}

// A NUL inside a std::string would cut it short at the C boundary ("a\0b"
// registered as "a"): refused instead. An empty callback is refused too
// (it would fail every delivery, forever).
static void test_nul_bytes_and_empty_callbacks_are_refused() {
    using namespace std::string_literals;
    chronica::Director d;
    auto noop = [](const chronica::Batch&) {};
    CHECK(status_of([&] { d.register_node("alice\0bob"s, noop); }) == CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(status_of([&] { d.stats("alice"); }) == CHRONICA_ERR_UNKNOWN_NODE);  // nothing registered
    d.register_node("alice", noop);
    CHECK(status_of([&] { d.emit("orders\0junk"s, "x"); }) == CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(status_of([&] { d.emit_to("alice"s, "t", "x", "src\0"s); }) == CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(d.stats("alice").accepted == 1);  // the pull only: no emit went through
    CHECK(status_of([&] { d.register_node("empty", chronica::Callback()); }) == CHRONICA_ERR_NULL_ARGUMENT);
    CHECK(status_of([&] { d.stats("empty"); }) == CHRONICA_ERR_UNKNOWN_NODE);
    // Its own refusals read like the library's: the status name first.
    auto message_of = [](auto f) -> std::string {
        try {
            f();
        } catch (const chronica::Error& e) {
            return e.what();
        }
        return "nothing thrown";
    };
    CHECK(message_of([&] { d.register_node("empty", chronica::Callback()); })
              .rfind("CHRONICA_ERR_NULL_ARGUMENT: ", 0) == 0);
    CHECK(message_of([&] { d.emit("orders\0junk"s, "x"); }).rfind("CHRONICA_ERR_INVALID_ARGUMENT: ", 0) == 0);
}

// Batch::iterator is a standard input iterator: std algorithms take it.
static void test_batch_works_with_std_algorithms() {
    std::atomic<long> matched{0}, copied{0};
    std::atomic<bool> post_increment_ok{true};
    chronica::Director d;
    d.register_node("n", [&](const chronica::Batch& b) {
        matched += std::count_if(b.begin(), b.end(), [](const chronica::Event& e) { return e.topic() == "hit"; });
        std::vector<chronica::Event> all(b.begin(), b.end());
        copied += long(all.size());
        auto it = b.begin();
        auto was = it++;
        if (!(was == b.begin() && (b.size() < 2 || it != b.begin()))) post_increment_ok = false;
    });
    d.emit("hit", "1");
    d.emit("miss", "2");
    d.emit("hit", "3");
    CHECK(eventually([&] { return matched == 2 && copied == 4; }));  // the pull, then three
    CHECK(post_increment_ok);
}

// try_emit / try_emit_to: a full block lane is an empty optional at once,
// changing nothing; other refusals still throw; with room a try is an
// emit, its id inside the optional.
static void test_try_emit() {
    chronica::Options o;
    o.queue_capacity = 1;
    o.overflow = CHRONICA_OVERFLOW_BLOCK;
    o.block_timeout = std::chrono::milliseconds(600000);
    chronica::Director d(o);
    chronica::NodeOptions off;
    off.connected = false;
    d.register_node("n", [](const chronica::Batch&) {}, off);
    std::optional<std::uint64_t> first = d.try_emit("t", "1");
    CHECK(first && *first == chronica::last_event_id());
    auto before = d.stats("n");
    CHECK(!d.try_emit("t", "2"));
    CHECK(d.try_emit_to("n", "t", "2") == std::nullopt);
    CHECK(chronica::last_event_id() == *first);
    auto after = d.stats("n");
    CHECK(after.accepted == before.accepted && after.pending == before.pending && after.dropped == 0);
    CHECK(status_of([&] { d.try_emit_to("ghost", "t", "x"); }) == CHRONICA_ERR_UNKNOWN_NODE);
    CHECK(status_of([&] { d.try_emit("t", "x", std::string("ghost")); }) == CHRONICA_ERR_UNKNOWN_NODE);
    d.node_connected("n");
    CHECK(idle(d, "n", 2));  // the state pull and "1"
    auto third = d.try_emit_to("n", "t", "3");
    CHECK(third && *third > *first);
    CHECK(idle(d, "n", 3));
    d.close();
    CHECK(status_of([&] { d.try_emit("t", "x"); }) == CHRONICA_ERR_CLOSED);
}

// timed_emit / timed_emit_to: the wait for room is the caller's timeout,
// not block_timeout; a lane still full then is an empty optional; a
// negative timeout is refused; with room the id is inside.
static void test_timed_emit() {
    chronica::Options o;
    o.queue_capacity = 1;
    o.overflow = CHRONICA_OVERFLOW_BLOCK;
    o.block_timeout = std::chrono::milliseconds(600000);
    chronica::Director d(o);
    chronica::NodeOptions off;
    off.connected = false;
    d.register_node("n", [](const chronica::Batch&) {}, off);
    auto first = d.timed_emit("t", "1", std::chrono::milliseconds(0));
    CHECK(first && *first == chronica::last_event_id());
    auto before = d.stats("n");
    auto t0 = std::chrono::steady_clock::now();
    CHECK(d.timed_emit("t", "2", std::chrono::milliseconds(30)) == std::nullopt);
    CHECK(!d.timed_emit_to("n", "t", "2", std::chrono::milliseconds(30)));
    // Far less than the 10 minutes of block_timeout.
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60));
    auto after = d.stats("n");
    CHECK(after.accepted == before.accepted && after.pending == before.pending && after.dropped == 0);
    CHECK(status_of([&] { d.timed_emit("t", "x", std::chrono::milliseconds(-1)); }) ==
          CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(status_of([&] { d.timed_emit_to("ghost", "t", "x", std::chrono::milliseconds(5)); }) ==
          CHRONICA_ERR_UNKNOWN_NODE);
    CHECK(chronica::last_event_id() == *first);
    // Room appears once "n", connected, takes "1": a long timeout waits
    // for it.
    d.node_connected("n");
    auto third = d.timed_emit_to("n", "t", "3", std::chrono::milliseconds(60000));
    CHECK(third && *third > *first && *third == chronica::last_event_id());
    CHECK(idle(d, "n", 3));
    d.close();
    CHECK(status_of([&] { d.timed_emit("t", "x", std::chrono::milliseconds(5)); }) == CHRONICA_ERR_CLOSED);
}

// PartialDelivery(2) from a batch "12345": only "345" is retried. The
// retry throws PartialDelivery(3) for its 3 events, a count the library
// refuses: the whole "345" comes again, and nothing escapes into C.
static void test_partial_delivery() {
    std::mutex mu;
    std::vector<std::string> seen, errors;
    chronica::Options o;
    o.on_error = [&](std::string_view, std::string_view e) {
        std::lock_guard<std::mutex> g(mu);
        errors.emplace_back(e);
    };
    chronica::Director d(o);
    chronica::NodeOptions no;
    no.connected = false;
    no.retry = chronica::Retry{std::chrono::milliseconds(1), std::chrono::milliseconds(2), 2.0, 0, 0.0};
    d.register_node("p", [&](const chronica::Batch& b) {
        if (b[0].is_root()) return;
        std::string got;
        for (auto e : b) got += e.payload();
        std::size_t call;
        {
            std::lock_guard<std::mutex> g(mu);
            call = seen.size();
            seen.push_back(got);
        }
        if (call == 0) throw chronica::PartialDelivery(2);
        if (call == 1) throw chronica::PartialDelivery(b.size());
    }, no);
    for (char c = '1'; c <= '5'; c++) d.emit_to("p", "t", std::string(1, c));
    d.node_connected("p");
    CHECK(idle(d, "p", 6));
    CHECK(eventually([&] {
        std::lock_guard<std::mutex> g(mu);
        return errors.size() == 2;
    }));
    auto s = d.stats("p");
    CHECK(s.delivered == 6 && s.failures == 2 && s.retries == 2 && s.dead_lettered == 0);
    CHECK(s.accepted == s.delivered + s.dropped + s.dead_lettered + s.pending);
    std::lock_guard<std::mutex> g(mu);
    CHECK((seen == std::vector<std::string>{"12345", "345", "345"}));
    CHECK(errors.size() == 2 && errors[0] == "callback returned 1 after delivering 2 of 5 events");
    CHECK(errors.size() == 2 && errors[1] == "callback returned 1");
}

// unregister_draining: what the node held is delivered before it leaves,
// and its final counters come back; an unknown uid is an exception.
static void test_unregister_draining() {
    chronica::Director d;
    std::atomic<bool> hold{true};
    Log n;
    d.register_node("n", [&](const chronica::Batch& b) {
        while (hold) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        n.add(b);
    });
    for (int i = 0; i < 10; i++) d.emit("t", std::to_string(i));
    std::thread release([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        hold = false;
    });
    auto last = d.unregister_draining("n", std::chrono::seconds(60));
    release.join();
    CHECK(last.accepted == 11 && last.delivered == 11 && last.dropped == 0 && last.pending == 0);
    CHECK(n.count("t") == 10);
    CHECK(status_of([&] { d.unregister_draining("n", std::chrono::milliseconds(10)); }) ==
          CHRONICA_ERR_UNKNOWN_NODE);
}

// The error a call threw, with its message; OK and "" when it threw none.
template <typename F>
static std::pair<chronica_status, std::string> error_of(F&& f) {
    try {
        f();
    } catch (const chronica::Error& e) {
        return {e.status(), e.what()};
    }
    return {CHRONICA_OK, ""};
}

static bool refused_naming(const std::pair<chronica_status, std::string>& e, const char* what) {
    return e.first == CHRONICA_ERR_INVALID_ARGUMENT && e.second.find(what) != std::string::npos;
}

// A negative duration is refused with an error naming it, and the call
// changes nothing; the wrapper used to turn it into 0 silently (close(-1 s) was
// close(0), an emitter's block timeout of -1 s failed at once).
static void test_negative_durations_are_refused() {
    using std::chrono::milliseconds;
    chronica::Options o;
    o.block_timeout = milliseconds(-1000);
    CHECK(refused_naming(error_of([&] { chronica::Director z(o); }), "block_timeout"));
    o = chronica::Options();
    o.retry.initial = milliseconds(-1);
    CHECK(refused_naming(error_of([&] { chronica::Director z(o); }), "retry.initial"));
    o = chronica::Options();
    o.retry.max = milliseconds(-5000);
    CHECK(refused_naming(error_of([&] { chronica::Director z(o); }), "retry.max"));

    chronica::Director d;
    chronica::NodeOptions no;
    no.retry = chronica::Retry{};
    no.retry->max = milliseconds(-1);
    CHECK(refused_naming(error_of([&] { d.register_node("n", [](const chronica::Batch&) {}, no); }), "retry.max"));
    CHECK(status_of([&] { d.stats("n"); }) == CHRONICA_ERR_UNKNOWN_NODE);

    Log a;
    d.register_node("a", [&a](const chronica::Batch& b) { a.add(b); });
    CHECK(refused_naming(error_of([&] { d.unregister_draining("a", milliseconds(-1)); }), "timeout"));
    CHECK(refused_naming(error_of([&] { d.close(milliseconds(-1000)); }), "timeout"));
    // Still open, "a" still registered.
    d.emit("t", "x");
    CHECK(idle(d, "a", 1));
    CHECK(a.count("t") == 1);
    // Above the C call's u32 of milliseconds (about 49.7 days) a timeout is
    // capped, not wrapped: an idle director closes at once.
    CHECK(d.close(std::chrono::hours(24 * 365)) == 0);
}

static bool dead_lettered(const chronica::Director& d, const std::string& uid) {
    return eventually([&] { return d.stats(uid).dead_lettered == 1; });
}

// Retry::limit is an exact limit where 0 means no re-attempt, which
// max_retries (0 = unlimited, as in C's chronica_options_set_retry) cannot
// say; giving both is refused rather than guessed at.
static void test_retry_limit_zero_dead_letters_at_once() {
    auto failing = [](const chronica::Batch& b) {
        for (auto e : b)
            if (!e.is_root()) throw std::runtime_error("down");
    };
    chronica::Options o;
    o.retry.initial = o.retry.max = std::chrono::milliseconds(1);
    o.retry.limit = 0;
    chronica::Director d(o);
    d.register_node("director", failing);
    chronica::NodeOptions no;
    no.retry = chronica::Retry{};
    no.retry->limit = 0;
    d.register_node("node", failing, no);
    d.emit("t", "x");
    CHECK(dead_lettered(d, "director"));
    CHECK(dead_lettered(d, "node"));
    for (const char* uid : {"director", "node"}) {
        auto s = d.stats(uid);
        CHECK(s.failures == 1 && s.dead_lettered == 1 && s.retries == 0 && s.pending == 0);
    }
    chronica::NodeOptions both;
    both.retry = chronica::Retry{};
    both.retry->max_retries = 3;
    both.retry->limit = 5;
    auto e = error_of([&] { d.register_node("both", failing, both); });
    CHECK(e.first == CHRONICA_ERR_INVALID_ARGUMENT && e.second.find("limit") != std::string::npos);
    CHECK(status_of([&] { d.stats("both"); }) == CHRONICA_ERR_UNKNOWN_NODE);
}

// Retry::backoff reaches the C options: the checks that depend on the
// shape follow it (constant has no cap to check against `initial`, linear
// no multiplier), and a node with constant backoff gives up before one
// with exponential, whose five delays add up to 31 times the first.
static void test_retry_backoff() {
    using std::chrono::milliseconds;
    chronica::Options o;
    o.retry.backoff = CHRONICA_BACKOFF_LINEAR;
    o.retry.multiplier = 0.5;
    CHECK(status_of([&] { chronica::Director z(o); }) == CHRONICA_OK);
    o.retry.backoff = 9;
    CHECK(status_of([&] { chronica::Director z(o); }) == CHRONICA_ERR_INVALID_ARGUMENT);

    std::mutex mu;
    std::vector<std::string> gave_up;
    chronica::Options with_hook;
    with_hook.on_dead_letter = [&](std::string_view uid, const chronica::Batch&, std::string_view) {
        std::lock_guard<std::mutex> g(mu);
        gave_up.emplace_back(uid);
    };
    chronica::Director d(with_hook);
    auto failing = [](const chronica::Batch& b) {
        for (auto e : b)
            if (!e.is_root()) throw std::runtime_error("down");
    };
    chronica::NodeOptions constant;
    constant.retry = chronica::Retry{milliseconds(40), milliseconds(10), 2.0, 5, 0.0};
    constant.retry->backoff = CHRONICA_BACKOFF_CONSTANT;
    d.register_node("constant", failing, constant);
    chronica::NodeOptions exponential;
    exponential.retry = chronica::Retry{milliseconds(40), milliseconds(60000), 2.0, 5, 0.0};
    d.register_node("exponential", failing, exponential);
    d.emit("t", "x");
    CHECK(eventually([&] {
        std::lock_guard<std::mutex> g(mu);
        return gave_up.size() == 2;
    }));
    CHECK((gave_up == std::vector<std::string>{"constant", "exponential"}));
}

// Every emit returns the id of the event it made, the id its node
// receives (the try_ and timed_ forms inside an optional), which is also
// chronica::last_event_id(). A refused emit leaves that as it was.
static void test_emits_return_the_id() {
    std::mutex mu;
    std::vector<std::pair<std::string, std::uint64_t>> got;
    chronica::Director d;
    d.register_node("n", [&](const chronica::Batch& b) {
        std::lock_guard<std::mutex> g(mu);
        for (auto e : b) got.emplace_back(std::string(e.topic()), e.id());
    });
    auto received = [&](const std::string& topic) {
        std::uint64_t id = 0;
        eventually([&] {
            std::lock_guard<std::mutex> g(mu);
            for (auto& x : got)
                if (x.first == topic) id = x.second;
            return id != 0;
        });
        return id;
    };
    chronica::Payload shared("p");
    std::vector<std::pair<std::string, std::uint64_t>> sent;
    sent.emplace_back("emit", d.emit("emit", "x"));
    sent.emplace_back("emit_payload", d.emit_payload("emit_payload", shared));
    sent.emplace_back("emit_keyed", d.emit_keyed("emit_keyed", "k", "x"));
    sent.emplace_back("emit_to", d.emit_to("n", "emit_to", "x"));
    sent.emplace_back("emit_root", d.emit_root("emit_root"));
    sent.emplace_back("emit_root_to", d.emit_root_to("n", "emit_root_to"));
    sent.emplace_back("try_emit", d.try_emit("try_emit", "x").value_or(0));
    sent.emplace_back("try_emit_to", d.try_emit_to("n", "try_emit_to", "x").value_or(0));
    sent.emplace_back("timed_emit", d.timed_emit("timed_emit", "x", std::chrono::milliseconds(5)).value_or(0));
    sent.emplace_back("timed_emit_to",
                      d.timed_emit_to("n", "timed_emit_to", "x", std::chrono::milliseconds(5)).value_or(0));
    for (auto& s : sent) CHECK(s.second != 0);
    CHECK(chronica::last_event_id() == sent.back().second);
    std::uint64_t prev = 0;
    for (auto& s : sent) {
        CHECK(s.second > prev);
        CHECK(received(s.first) == s.second);
        prev = s.second;
    }
    CHECK(status_of([&] { d.emit("t", "x", std::string("ghost")); }) == CHRONICA_ERR_UNKNOWN_NODE);
    CHECK(chronica::last_event_id() == prev);
    d.emit("ignored", "x");  // code that ignores the id still compiles
    CHECK(chronica::last_event_id() > prev);
}

// Director::last_error(uid): nullopt before a failure, the callback's
// exception text after one (kept once the retry delivered), readable after
// close; an unknown uid throws as stats() does. An exception with an empty
// what() is "", not nullopt: the node did fail.
static void test_last_error() {
    chronica::Options o;
    o.retry.initial = o.retry.max = std::chrono::milliseconds(1);
    std::atomic<int> failures_left{1};
    const std::string text(300, 'e');  // longer than any first guess
    chronica::Director d(o);
    d.register_node("n", [&](const chronica::Batch& b) {
        for (auto e : b)
            if (!e.is_root() && failures_left.fetch_sub(1) > 0) throw std::runtime_error(text);
    });
    CHECK(d.last_error("n") == std::nullopt);
    d.emit("t", "x");
    CHECK(idle(d, "n", 2));
    CHECK(d.stats("n").failures == 1);
    CHECK(d.last_error("n") == text);
    CHECK(status_of([&] { d.last_error("ghost"); }) == CHRONICA_ERR_UNKNOWN_NODE);
    d.register_node("quiet", [&](const chronica::Batch& b) {
        for (auto e : b)
            if (!e.is_root() && e.topic() == "q" && failures_left.fetch_sub(1) > 0) throw std::runtime_error("");
    });
    failures_left = 1;
    CHECK(d.last_error("quiet") == std::nullopt);
    d.emit_to("quiet", "q", "x");
    CHECK(idle(d, "quiet", 2));
    CHECK(d.stats("quiet").failures == 1);
    CHECK(d.last_error("quiet") == std::string());
    d.close();
    CHECK(d.last_error("n") == text);
    CHECK(d.last_error("quiet") == std::string());
}

// emit_many: the ids are a range in message order, each node gets the
// messages its topics match with their keys; a NUL in a topic, an unknown
// source and a run a block lane can never hold throw with nothing emitted;
// a block lane without room now throws QUEUE_FULL, nothing accepted, and
// timed_emit_many returns an empty optional for it (a negative timeout
// throws).
static void test_emit_many() {
    chronica::Options o;
    o.queue_capacity = 4;
    o.overflow = CHRONICA_OVERFLOW_BLOCK;
    o.block_timeout = std::chrono::milliseconds(30);
    chronica::Director d(o);
    std::mutex mu;
    std::vector<std::tuple<std::string, std::uint64_t, std::string, std::optional<std::string>>> got;
    chronica::NodeOptions ab;
    ab.topics = {"a", "b"};
    ab.connected = false;
    d.register_node("n", [&](const chronica::Batch& b) {
        std::lock_guard<std::mutex> g(mu);
        for (auto e : b) {
            if (e.is_root()) continue;
            auto k = e.key();
            got.emplace_back(std::string(e.topic()), e.id(), std::string(e.payload()),
                             k ? std::optional<std::string>(std::string(*k)) : std::nullopt);
        }
    }, ab);
    d.register_node("src", [](const chronica::Batch&) {});
    const std::string keep("kept");
    chronica::EventIds ids = d.emit_many({{"a", "1"}, {"c", "x", "k"}, {"b", keep, std::string_view()}},
                                         std::string("src"));
    CHECK(ids.size() == 3 && !ids.empty() && chronica::last_event_id() == ids.end - 1);
    auto before = d.stats("n");
    std::string nul("a\0b", 3);
    std::vector<chronica::Message> bad = {{"a", "1"}, {nul, "2"}};
    CHECK(status_of([&] { d.emit_many(bad); }) == CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(status_of([&] { d.emit_many({{"a", "1"}}, std::string("ghost")); }) == CHRONICA_ERR_UNKNOWN_NODE);
    std::vector<chronica::Message> five(5, chronica::Message{"a", "f"});
    CHECK(status_of([&] { d.emit_many(five); }) == CHRONICA_ERR_INVALID_ARGUMENT);
    // "n" holds 2 of 4 and takes no more than 2 more; 3 do not fit now.
    CHECK(status_of([&] { d.emit_many(five.data(), 3); }) == CHRONICA_ERR_QUEUE_FULL);
    // timed_emit_many: a full lane at its own timeout is an empty optional,
    // not an exception, and nothing was accepted.
    CHECK(!d.timed_emit_many(five.data(), 3, std::chrono::milliseconds(0)));
    CHECK(!d.timed_emit_many(std::vector<chronica::Message>(five.begin(), five.begin() + 3),
                             std::chrono::milliseconds(5)));
    CHECK(status_of([&] { d.timed_emit_many(five.data(), 1, std::chrono::milliseconds(-1)); }) ==
          CHRONICA_ERR_INVALID_ARGUMENT);
    auto after = d.stats("n");
    CHECK(after.accepted == before.accepted && after.pending == before.pending);
    CHECK(chronica::last_event_id() == ids.end - 1);
    CHECK(d.emit_many(std::vector<chronica::Message>{}).empty());
    d.node_connected("n");
    CHECK(idle(d, "n", 3));  // the state pull, "a" and "b"
    {
        std::lock_guard<std::mutex> g(mu);
        CHECK(got.size() == 2);
        CHECK(got.size() == 2 && std::get<1>(got[0]) == ids.first && std::get<2>(got[0]) == "1" &&
              !std::get<3>(got[0]));
        CHECK(got.size() == 2 && std::get<0>(got[1]) == "b" && std::get<1>(got[1]) == ids.first + 2 &&
              std::get<2>(got[1]) == "kept" && std::get<3>(got[1]) == std::string());
    }
    d.close();
    CHECK(status_of([&] { d.emit_many({{"a", "1"}}); }) == CHRONICA_ERR_CLOSED);
}

int main() {
    test_routing_and_raii();
    test_errors_are_exceptions();
    test_throwing_callback_is_retried();
    test_reentrant_and_move();
    test_drop_hook_and_disconnect();
    test_destroyed_inside_its_own_callback();
    test_event_kind_and_content_type();
    test_nul_bytes_and_empty_callbacks_are_refused();
    test_try_emit();
    test_timed_emit();
    test_partial_delivery();
    test_unregister_draining();
    test_negative_durations_are_refused();
    test_retry_limit_zero_dead_letters_at_once();
    test_retry_backoff();
    test_batch_works_with_std_algorithms();
    test_emits_return_the_id();
    test_last_error();
    test_emit_many();
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
