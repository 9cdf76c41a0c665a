// chronica.hpp: a small header-only C++17 wrapper over chronica.h.
//
// * chronica::Director owns a chronica_director (RAII; movable, not copyable).
// * Nodes are std::function callbacks; a callback that throws is a failed
//   delivery (the batch is retried by the node's retry policy; a
//   std::exception's what() is the failure text the hooks see), and one
//   that throws chronica::PartialDelivery(n) delivered the first n events
//   (only the rest is retried). No exception ever crosses into the C
//   library: every trampoline catches everything.
// * Every refused call throws chronica::Error carrying the chronica_status
//   and a message that starts with the status name, as the library's do, except a full lane in try_emit() /
//   try_emit_to() and a lane still full at the timeout of timed_emit() / timed_emit_to() /
//   timed_emit_many(), which return an empty std::optional.
// * The emit methods return the new event's id (the try_ and timed_ forms
//   inside a std::optional, empty when the lane was full; emit_many the
//   range of its ids, chronica::EventIds).
// * Durations are std::chrono::milliseconds. A negative one throws Error
//   with CHRONICA_ERR_INVALID_ARGUMENT, naming the argument, before anything
//   changes; close() and unregister_draining() cap a timeout above what the
//   C call's uint32_t of milliseconds holds (about 49.7 days) at that.
// * Event views (chronica::Event, chronica::Batch) are valid only during the
//   callback that receives them, as in C.
//
// Written by hand (not generated). See docs/C-API.md.
#ifndef CHRONICA_HPP
#define CHRONICA_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chronica.h"

namespace chronica {

/// A refused call: the status and the thread's last-error message.
class Error : public std::runtime_error {
public:
    Error(chronica_status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    /// The C status (never CHRONICA_OK).
    chronica_status status() const noexcept { return status_; }

private:
    chronica_status status_;
};

/// Thrown by a node callback that delivered the first `delivered()` events
/// of its batch and then failed: only the rest is retried (or, after
/// max_retries, dead-lettered), with a fresh retry budget when
/// `delivered()` > 0 (chronica_send_partial). A count not below the batch
/// size is refused as in C, and the whole batch is retried: with nothing
/// left to fail, return normally instead. The C API carries no message, so
/// the hooks' failure text is the library's ("callback returned 1 after
/// delivering 2 of 5 events").
class PartialDelivery : public std::runtime_error {
public:
    explicit PartialDelivery(std::size_t delivered)
        : std::runtime_error("chronica::PartialDelivery"), delivered_(delivered) {}
    /// How many leading events of the batch were delivered.
    std::size_t delivered() const noexcept { return delivered_; }

private:
    std::size_t delivered_;
};

namespace detail {

inline std::string last_error() {
    std::size_t n = chronica_last_error(nullptr, 0);
    std::vector<char> buf(n + 1, '\0');
    chronica_last_error(buf.data(), buf.size());
    return std::string(buf.data(), n);
}

inline void check(chronica_status s) {
    if (s != CHRONICA_OK) {
        std::string msg = last_error();
        throw Error(s, msg.empty() ? std::string(chronica_status_str(s)) : msg);
    }
}

/// `s` as a C string; a NUL inside would silently cut it short there (a
/// uid "alice\0bob" registered as "alice"), so it is refused instead.
inline const char* cstr(const std::string& s) {
    if (s.find('\0') != std::string::npos) {
        throw Error(CHRONICA_ERR_INVALID_ARGUMENT,
                    "CHRONICA_ERR_INVALID_ARGUMENT: a string argument contains a NUL byte");
    }
    return s.c_str();
}

inline std::string_view view(const char* p, std::size_t n) { return n ? std::string_view(p, n) : std::string_view(); }

inline std::string_view view(const std::uint8_t* p, std::size_t n) {
    return n ? std::string_view(reinterpret_cast<const char*>(p), n) : std::string_view();
}

inline const std::uint8_t* bytes(std::string_view s) { return reinterpret_cast<const std::uint8_t*>(s.data()); }

}  // namespace detail

/// Bytes copied once and emitted any number of times without another copy
/// (chronica_payload). Move-only; several threads may emit one at once.
/// Events already emitted keep their own reference, so a Payload may be
/// destroyed right after an emit.
class Payload {
public:
    explicit Payload(std::string_view bytes) {
        detail::check(chronica_payload_new(detail::bytes(bytes), bytes.size(), &p_));
    }
    ~Payload() { chronica_payload_free(p_); }
    Payload(Payload&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Payload& operator=(Payload&& o) noexcept {
        if (this != &o) {
            chronica_payload_free(p_);
            p_ = std::exchange(o.p_, nullptr);
        }
        return *this;
    }
    Payload(const Payload&) = delete;
    Payload& operator=(const Payload&) = delete;
    /// The C handle (NULL once moved from).
    const chronica_payload* raw() const noexcept { return p_; }

private:
    chronica_payload* p_ = nullptr;
};

/// One event, borrowed: valid only during the callback that receives it.
class Event {
public:
    explicit Event(const chronica_event& e) noexcept : e_(&e) {}
    std::uint64_t id() const noexcept { return e_->id; }
    /// `CHRONICA_EVENT_USER` or `CHRONICA_EVENT_ROOT`.
    chronica_event_kind kind() const noexcept { return e_->kind; }
    bool is_root() const noexcept { return e_->kind == CHRONICA_EVENT_ROOT; }
    /// The topic (a root event's action).
    std::string_view topic() const noexcept { return detail::view(e_->topic, e_->topic_len); }
    /// The source uid; empty when none.
    std::string_view source() const noexcept { return detail::view(e_->source, e_->source_len); }
    /// The key, if the event has one.
    std::optional<std::string_view> key() const noexcept {
        if (!e_->key) return std::nullopt;
        return detail::view(e_->key, e_->key_len);
    }
    std::string_view payload() const noexcept { return detail::view(e_->payload, e_->payload_len); }
    /// The trust token (root events only).
    std::string_view trust_token() const noexcept { return detail::view(e_->trust_token, e_->trust_token_len); }
    std::int64_t timestamp_ms() const noexcept { return e_->timestamp_ms; }
    /// The payload's content type as labelled by the emitter (for example
    /// "application/json"); empty when the event carries none.
    std::string_view content_type() const noexcept {
        return detail::view(e_->content_type, e_->content_type_len);
    }
    const chronica_event& raw() const noexcept { return *e_; }

private:
    const chronica_event* e_;
};

/// The events of one callback call, oldest first; valid only during the call.
class Batch {
public:
    /// An input iterator: it yields Event views by value, so std algorithms
    /// (std::count_if, a std::vector<Event> built from the range) take it.
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = Event;
        using difference_type = std::ptrdiff_t;
        using pointer = void;
        using reference = Event;

        explicit iterator(const chronica_event* p) noexcept : p_(p) {}
        Event operator*() const noexcept { return Event(*p_); }
        iterator& operator++() noexcept {
            ++p_;
            return *this;
        }
        iterator operator++(int) noexcept {
            iterator before = *this;
            ++p_;
            return before;
        }
        bool operator!=(const iterator& o) const noexcept { return p_ != o.p_; }
        bool operator==(const iterator& o) const noexcept { return p_ == o.p_; }

    private:
        const chronica_event* p_;
    };

    Batch(const chronica_event* events, std::size_t count) noexcept : events_(events), count_(count) {}
    std::size_t size() const noexcept { return count_; }
    bool empty() const noexcept { return count_ == 0; }
    Event operator[](std::size_t i) const noexcept { return Event(events_[i]); }
    iterator begin() const noexcept { return iterator(events_); }
    iterator end() const noexcept { return iterator(events_ + count_); }

private:
    const chronica_event* events_;
    std::size_t count_;
};

/// A node's callback: return normally when delivered; throw to have the
/// batch retried, PartialDelivery to have only its rest retried.
using Callback = std::function<void(const Batch&)>;
/// Counters of one node.
using NodeStats = chronica_node_stats;

/// Retry policy. `initial` is at least 1 ms: zero (which would retry in a
/// busy loop) is refused like other bad values.
///
/// `max_retries` is C's (chronica_options_set_retry): 0 = unlimited, so it
/// cannot ask for no re-attempt at all. `limit`, when set, is the exact
/// number of re-attempts instead, 0 included (the first failure
/// dead-letters the batch), as Rust's `max_retries: Some(n)` and Python's
/// `Retry(max_retries=n)`. Setting `limit` with a non-zero `max_retries` is
/// refused (CHRONICA_ERR_INVALID_ARGUMENT) rather than guessed at.
///
/// `backoff` is a CHRONICA_BACKOFF_* value: exponential (the default),
/// linear or constant, as chronica_options_set_retry_backoff describes;
/// `multiplier` matters to exponential only, `max` to all but constant.
struct Retry {
    std::chrono::milliseconds initial{100};
    std::chrono::milliseconds max{5000};
    double multiplier = 2.0;
    std::uint32_t max_retries = 0;
    double jitter = 0.1;
    std::optional<std::uint32_t> limit = std::nullopt;
    std::uint32_t backoff = CHRONICA_BACKOFF_EXPONENTIAL;
};

/// Director settings and hooks (copied into the director).
struct Options {
    std::size_t queue_capacity = 65536;
    std::size_t root_capacity = 1024;
    std::size_t batch_size = 64;
    chronica_overflow overflow = CHRONICA_OVERFLOW_DROP_OLDEST;
    std::chrono::milliseconds block_timeout{1000};
    Retry retry{};
    std::string trust_token;
    bool membership_events = false;
    std::function<void(std::string_view uid, const Event&, chronica_drop_reason)> on_drop;
    std::function<void(std::string_view uid, const Batch&, std::string_view error)> on_dead_letter;
    std::function<void(std::string_view uid, std::string_view error)> on_error;
};

/// Registration settings of one node.
struct NodeOptions {
    std::vector<std::string> topics;
    std::optional<std::string> group;
    std::size_t concurrency = 1;
    bool connected = true;
    std::optional<Retry> retry;
    std::optional<std::size_t> queue_capacity;
    std::optional<std::size_t> root_capacity;
    std::optional<chronica_overflow> overflow;
};

namespace detail {

struct Hooks {
    decltype(Options::on_drop) on_drop;
    decltype(Options::on_dead_letter) on_dead_letter;
    decltype(Options::on_error) on_error;
};

// The C trampolines: C language linkage, and nothing escapes them.
extern "C" {
static inline std::int32_t chronica_hpp_send(void* ud, const chronica_event* events, std::size_t count) {
    try {
        (*static_cast<Callback*>(ud))(Batch(events, count));
        return 0;
    } catch (const PartialDelivery& p) {
        // A refused count leaves a plain failure: the whole batch is retried.
        (void)chronica_send_partial(p.delivered());
        return 1;
    } catch (const std::exception& e) {
        // The hooks' failure text; one that is not UTF-8 is refused, and
        // the library's own text stands.
        (void)chronica_send_error(e.what());
        return 1;
    } catch (...) {
        return 1;
    }
}

static inline void chronica_hpp_free(void* ud) { delete static_cast<Callback*>(ud); }

static inline void chronica_hpp_drop(void* ud, const char* uid, std::size_t uid_len, const chronica_event* e,
                                     chronica_drop_reason why) {
    try {
        static_cast<Hooks*>(ud)->on_drop(std::string_view(uid, uid_len), Event(*e), why);
    } catch (...) {
    }
}

static inline void chronica_hpp_dead_letter(void* ud, const char* uid, std::size_t uid_len,
                                            const chronica_event* events, std::size_t count, const char* err,
                                            std::size_t err_len) {
    try {
        static_cast<Hooks*>(ud)->on_dead_letter(std::string_view(uid, uid_len), Batch(events, count),
                                                std::string_view(err, err_len));
    } catch (...) {
    }
}

static inline void chronica_hpp_error(void* ud, const char* uid, std::size_t uid_len, const char* err,
                                      std::size_t err_len) {
    try {
        static_cast<Hooks*>(ud)->on_error(std::string_view(uid, uid_len), std::string_view(err, err_len));
    } catch (...) {
    }
}
}  // extern "C"

// Keeps the hooks of a director whose free was refused (it was destroyed
// inside one of its own callbacks): that director runs on and may call its
// hooks again, so they stay, reachable, until the process exits.
inline void keep_forever(std::unique_ptr<Hooks> hooks) noexcept {
    static std::mutex mu;
    static auto* kept = new std::vector<std::unique_ptr<Hooks>>();
    std::lock_guard<std::mutex> g(mu);
    try {
        kept->push_back(std::move(hooks));
    } catch (...) {
        (void)hooks.release();  // no room to keep them: leak rather than free
    }
}

struct OptionsDeleter {
    void operator()(chronica_options* o) const noexcept { chronica_options_free(o); }
};
struct NodeOptionsDeleter {
    void operator()(chronica_node_options* o) const noexcept { chronica_node_options_free(o); }
};

}  // namespace detail

/// One message of Director::emit_many. Views only: the call copies what it
/// keeps, so what they point to may change or go as soon as it returns.
/// `{topic, payload}` has no key, `{topic, payload, key}` has one.
struct Message {
    // Constructors rather than an aggregate: a braced `{topic, payload}`
    // would warn under -Wextra (missing-field-initializers) in callers.
    Message(std::string_view topic_, std::string_view payload_) noexcept : topic(topic_), payload(payload_) {}
    Message(std::string_view topic_, std::string_view payload_, std::string_view key_) noexcept
        : topic(topic_), payload(payload_), key(key_) {}

    /// The topic (may be empty; a NUL byte inside is refused).
    std::string_view topic;
    /// The payload bytes.
    std::string_view payload;
    /// The ordering / partition key, as for emit_keyed(); std::nullopt for
    /// none (an empty view is an empty key, which is a key).
    std::optional<std::string_view> key;
};

/// The ids of one Director::emit_many call, consecutive and in message
/// order: first, first + 1, ..., end - 1 (a half-open range, as Rust's
/// Range<u64>; empty for a call given no message).
struct EventIds {
    std::uint64_t first = 0;
    std::uint64_t end = 0;
    std::size_t size() const noexcept { return static_cast<std::size_t>(end - first); }
    bool empty() const noexcept { return first == end; }
};

/// The hub. All methods are thread-safe and may be called from inside
/// callbacks, except close() and destruction of the director that runs
/// the callback (close() throws Error with CHRONICA_ERR_REENTRANT there).
class Director {
public:
    explicit Director(const Options& o = Options()) : hooks_(std::make_unique<detail::Hooks>()) {
        std::unique_ptr<chronica_options, detail::OptionsDeleter> c(chronica_options_new());
        if (!c) throw Error(CHRONICA_ERR_PANIC, "CHRONICA_ERR_PANIC: chronica_options_new failed");
        detail::check(chronica_options_set_queue_capacity(c.get(), o.queue_capacity));
        detail::check(chronica_options_set_root_capacity(c.get(), o.root_capacity));
        detail::check(chronica_options_set_batch_size(c.get(), o.batch_size));
        detail::check(chronica_options_set_overflow(c.get(), o.overflow));
        detail::check(chronica_options_set_block_timeout(c.get(), ms("block_timeout", o.block_timeout)));
        // The shape first: set_retry checks the delays by it.
        detail::check(chronica_options_set_retry_backoff(c.get(), o.retry.backoff));
        detail::check(chronica_options_set_retry(c.get(), ms("retry.initial", o.retry.initial),
                                                 ms("retry.max", o.retry.max), o.retry.multiplier,
                                                 max_retries(o.retry)));
        if (o.retry.limit) detail::check(chronica_options_set_max_retries(c.get(), *o.retry.limit));
        detail::check(chronica_options_set_retry_jitter(c.get(), o.retry.jitter));
        detail::check(chronica_options_set_trust_token(c.get(), detail::cstr(o.trust_token)));
        detail::check(chronica_options_set_membership_events(c.get(), o.membership_events));
        hooks_->on_drop = o.on_drop;
        hooks_->on_dead_letter = o.on_dead_letter;
        hooks_->on_error = o.on_error;
        void* h = hooks_.get();
        if (o.on_drop) detail::check(chronica_options_set_drop_hook(c.get(), detail::chronica_hpp_drop, h));
        if (o.on_dead_letter)
            detail::check(chronica_options_set_dead_letter_hook(c.get(), detail::chronica_hpp_dead_letter, h));
        if (o.on_error) detail::check(chronica_options_set_error_hook(c.get(), detail::chronica_hpp_error, h));
        detail::check(chronica_director_new(c.get(), &d_));
    }

    /// Closes (draining up to 5 s) and frees. Do not destroy a director
    /// from inside its own callbacks: the library refuses, and the director
    /// runs on with its hooks (kept until the process exits) and leaks.
    ~Director() { dispose(); }

    Director(const Director&) = delete;
    Director& operator=(const Director&) = delete;
    Director(Director&& o) noexcept : d_(std::exchange(o.d_, nullptr)), hooks_(std::move(o.hooks_)) {}
    Director& operator=(Director&& o) noexcept {
        if (this != &o) {
            dispose();
            d_ = std::exchange(o.d_, nullptr);
            hooks_ = std::move(o.hooks_);
        }
        return *this;
    }

    /// Registers a node; the callback is destroyed after its last call.
    void register_node(const std::string& uid, Callback cb, const NodeOptions& o = NodeOptions()) {
        // An empty std::function would throw bad_function_call on every
        // delivery: retried forever, never delivered.
        if (!cb) {
            throw Error(CHRONICA_ERR_NULL_ARGUMENT, "CHRONICA_ERR_NULL_ARGUMENT: register_node: the callback is empty");
        }
        std::unique_ptr<chronica_node_options, detail::NodeOptionsDeleter> c(chronica_node_options_new());
        if (!c) throw Error(CHRONICA_ERR_PANIC, "CHRONICA_ERR_PANIC: chronica_node_options_new failed");
        for (const auto& t : o.topics) detail::check(chronica_node_options_add_topic(c.get(), detail::cstr(t)));
        if (o.group) detail::check(chronica_node_options_set_group(c.get(), detail::cstr(*o.group)));
        detail::check(chronica_node_options_set_concurrency(c.get(), o.concurrency));
        detail::check(chronica_node_options_set_connected(c.get(), o.connected));
        if (o.retry) {
            detail::check(chronica_node_options_set_retry_backoff(c.get(), o.retry->backoff));
            detail::check(chronica_node_options_set_retry(c.get(), ms("retry.initial", o.retry->initial),
                                                          ms("retry.max", o.retry->max),
                                                          o.retry->multiplier, max_retries(*o.retry)));
            if (o.retry->limit) detail::check(chronica_node_options_set_max_retries(c.get(), *o.retry->limit));
            detail::check(chronica_node_options_set_retry_jitter(c.get(), o.retry->jitter));
        }
        if (o.queue_capacity) detail::check(chronica_node_options_set_queue_capacity(c.get(), *o.queue_capacity));
        if (o.root_capacity) detail::check(chronica_node_options_set_root_capacity(c.get(), *o.root_capacity));
        if (o.overflow) detail::check(chronica_node_options_set_overflow(c.get(), *o.overflow));
        auto owned = std::make_unique<Callback>(std::move(cb));
        detail::check(chronica_director_register_with(d_, detail::cstr(uid), c.get(), detail::chronica_hpp_send,
                                                      owned.get(), detail::chronica_hpp_free));
        owned.release();  // the director owns it now; chronica_hpp_free deletes it
    }

    void unregister(const std::string& uid) { detail::check(chronica_director_unregister(d_, detail::cstr(uid))); }

    /// Removes `uid` after letting it deliver what it holds, for up to
    /// `timeout` (see chronica_director_unregister_draining; capped and
    /// refused as close() does); returns the node's final counters.
    NodeStats unregister_draining(const std::string& uid, std::chrono::milliseconds timeout) {
        NodeStats s{};
        detail::check(chronica_director_unregister_draining(d_, detail::cstr(uid), ms32("timeout", timeout), &s));
        return s;
    }

    void subscribe(const std::string& uid, const std::string& pattern) {
        detail::check(chronica_director_subscribe(d_, detail::cstr(uid), detail::cstr(pattern)));
    }

    /// Broadcast; `source` (a registered uid) does not receive it. Returns
    /// the event's id (the `id` its nodes see), as every emit here does.
    std::uint64_t emit(const std::string& topic, std::string_view payload,
                       const std::optional<std::string>& source = {}) {
        detail::check(
            chronica_director_emit(d_, src(source), detail::cstr(topic), detail::bytes(payload), payload.size()));
        return chronica_last_event_id();
    }

    /// Broadcast that never waits: empty, having changed nothing, when a
    /// target lane under CHRONICA_OVERFLOW_BLOCK is full (where emit()
    /// would wait); the event's id when accepted. A full lane is an
    /// expected outcome of a try, so it is a value, like
    /// std::mutex::try_lock's false; every other refusal throws Error as
    /// emit() does. `if (d.try_emit(...))` reads as before; the id is the
    /// value inside.
    std::optional<std::uint64_t> try_emit(const std::string& topic, std::string_view payload,
                                          const std::optional<std::string>& source = {}) {
        return tried(chronica_director_try_emit(d_, src(source), detail::cstr(topic), detail::bytes(payload),
                                                payload.size()));
    }

    /// Broadcast that waits for room in a full CHRONICA_OVERFLOW_BLOCK
    /// lane for at most `timeout` (not the director's block_timeout):
    /// empty, having changed nothing, when a lane is still full then; the
    /// event's id when accepted (chronica_director_timed_emit; a timeout
    /// of 0 is try_emit(), a negative one is refused). A timed-out wait is
    /// an expected outcome, as for std::timed_mutex::try_lock_for; every
    /// other refusal throws Error as emit() does.
    std::optional<std::uint64_t> timed_emit(const std::string& topic, std::string_view payload,
                                            std::chrono::milliseconds timeout,
                                            const std::optional<std::string>& source = {}) {
        std::uint64_t id = 0;
        chronica_status s = chronica_director_timed_emit(d_, src(source), detail::cstr(topic),
                                                         detail::bytes(payload), payload.size(),
                                                         ms("timeout", timeout), &id);
        return timed(s, id);
    }

    /// Broadcast of a shared payload, without copying it.
    std::uint64_t emit_payload(const std::string& topic, const Payload& payload,
                               const std::optional<std::string>& source = {}) {
        detail::check(chronica_director_emit_payload(d_, src(source), detail::cstr(topic), payload.raw()));
        return chronica_last_event_id();
    }

    /// Broadcast with an ordering / partition key.
    std::uint64_t emit_keyed(const std::string& topic, std::string_view key, std::string_view payload,
                             const std::optional<std::string>& source = {}) {
        static const char empty = '\0';
        const char* k = key.data() ? key.data() : &empty;
        detail::check(chronica_director_emit_keyed(d_, src(source), detail::cstr(topic),
                                                   reinterpret_cast<const std::uint8_t*>(k), key.size(),
                                                   detail::bytes(payload), payload.size()));
        return chronica_last_event_id();
    }

    /// Unicast to `target`.
    std::uint64_t emit_to(const std::string& target, const std::string& topic, std::string_view payload,
                          const std::optional<std::string>& source = {}) {
        detail::check(chronica_director_emit_to(d_, src(source), detail::cstr(target), detail::cstr(topic),
                                                detail::bytes(payload), payload.size()));
        return chronica_last_event_id();
    }

    /// Unicast to `target` that never waits: empty when its lane under
    /// CHRONICA_OVERFLOW_BLOCK is full, the event's id otherwise, as
    /// try_emit().
    std::optional<std::uint64_t> try_emit_to(const std::string& target, const std::string& topic,
                                             std::string_view payload,
                                             const std::optional<std::string>& source = {}) {
        return tried(chronica_director_try_emit_to(d_, src(source), detail::cstr(target), detail::cstr(topic),
                                                   detail::bytes(payload), payload.size()));
    }

    /// Unicast to `target` that waits for room at most `timeout`, as
    /// timed_emit().
    std::optional<std::uint64_t> timed_emit_to(const std::string& target, const std::string& topic,
                                               std::string_view payload, std::chrono::milliseconds timeout,
                                               const std::optional<std::string>& source = {}) {
        std::uint64_t id = 0;
        chronica_status s = chronica_director_timed_emit_to(d_, src(source), detail::cstr(target),
                                                            detail::cstr(topic), detail::bytes(payload),
                                                            payload.size(), ms("timeout", timeout), &id);
        return timed(s, id);
    }

    /// Emits `msgs` in order, as that many emit() / emit_keyed() calls
    /// would, all on behalf of `source`, with one call of
    /// chronica_director_emit_many: every message is checked first, so a
    /// bad one (a topic with a NUL byte) throws Error with nothing emitted;
    /// under CHRONICA_OVERFLOW_BLOCK it is all or nothing (no room for the
    /// whole run in some target within the block timeout throws Error with
    /// CHRONICA_ERR_QUEUE_FULL, nothing accepted anywhere; more messages
    /// for one node than its queue holds throws it with
    /// CHRONICA_ERR_INVALID_ARGUMENT). Returns the ids the messages got;
    /// last_event_id() is the last of them. Copies the topics into one
    /// buffer to NUL-terminate them: one allocation per call, beside the
    /// array of C messages.
    EventIds emit_many(const Message* msgs, std::size_t n, const std::optional<std::string>& source = {}) {
        std::string topics;
        std::vector<chronica_message> c = c_messages(msgs, n, topics);
        std::uint64_t first = 0;
        detail::check(chronica_director_emit_many(d_, src(source), c.data(), n, &first));
        return EventIds{first, first + n};
    }

    /// emit_many() that waits for room for the run in a full
    /// CHRONICA_OVERFLOW_BLOCK lane for at most `timeout` (not the
    /// director's block_timeout), as timed_emit() does for one event:
    /// empty, having accepted nothing anywhere, when some lane still lacks
    /// room then; the ids when accepted (chronica_director_timed_emit_many;
    /// a timeout of 0 never waits, a negative one is refused). Every other
    /// refusal throws Error as emit_many() does.
    std::optional<EventIds> timed_emit_many(const Message* msgs, std::size_t n, std::chrono::milliseconds timeout,
                                            const std::optional<std::string>& source = {}) {
        std::string topics;
        std::vector<chronica_message> c = c_messages(msgs, n, topics);
        std::uint64_t first = 0;
        chronica_status s =
            chronica_director_timed_emit_many(d_, src(source), c.data(), n, ms("timeout", timeout), &first);
        if (s == CHRONICA_ERR_QUEUE_FULL) return std::nullopt;
        detail::check(s);
        return EventIds{first, first + n};
    }

    /// timed_emit_many() of a vector.
    std::optional<EventIds> timed_emit_many(const std::vector<Message>& msgs, std::chrono::milliseconds timeout,
                                            const std::optional<std::string>& source = {}) {
        return timed_emit_many(msgs.data(), msgs.size(), timeout, source);
    }

    /// emit_many() of a vector.
    EventIds emit_many(const std::vector<Message>& msgs, const std::optional<std::string>& source = {}) {
        return emit_many(msgs.data(), msgs.size(), source);
    }

    /// emit_many() of a braced list: `d.emit_many({{"t", "a"}, {"t", "b"}})`.
    EventIds emit_many(std::initializer_list<Message> msgs, const std::optional<std::string>& source = {}) {
        return emit_many(msgs.begin(), msgs.size(), source);
    }

    /// Root (control) event to every node.
    std::uint64_t emit_root(const std::string& action, std::string_view payload = {}) {
        detail::check(chronica_director_emit_root(d_, detail::cstr(action), detail::bytes(payload), payload.size()));
        return chronica_last_event_id();
    }

    /// Root (control) event to one node.
    std::uint64_t emit_root_to(const std::string& target, const std::string& action, std::string_view payload = {}) {
        detail::check(chronica_director_emit_root_to(d_, detail::cstr(target), detail::cstr(action),
                                                     detail::bytes(payload), payload.size()));
        return chronica_last_event_id();
    }

    void node_connected(const std::string& uid) {
        detail::check(chronica_director_node_connected(d_, detail::cstr(uid)));
    }

    void node_disconnected(const std::string& uid) {
        detail::check(chronica_director_node_disconnected(d_, detail::cstr(uid)));
    }

    /// The node's counters (is_connected() gives its connection state).
    NodeStats stats(const std::string& uid) const {
        NodeStats s{};
        detail::check(chronica_director_node_stats(d_, detail::cstr(uid), &s));
        return s;
    }

    /// Whether the node is marked connected (see node_connected() and
    /// node_disconnected()).
    bool is_connected(const std::string& uid) const {
        bool on = false;
        detail::check(chronica_director_node_is_connected(d_, detail::cstr(uid), &on));
        return on;
    }

    /// The text of the node's most recent failed delivery (a callback's
    /// exception text, or the library's), kept after later successes;
    /// nullopt while the node has not failed, "" after a failure whose
    /// text was empty (an exception with an empty what()). Readable after
    /// close, as stats().
    std::optional<std::string> last_error(const std::string& uid) const {
        // The text may change between the two calls (a newer failure):
        // ask again until the whole of one text fit.
        std::size_t n = 0;
        bool failed = false;
        detail::check(chronica_director_node_last_error(d_, detail::cstr(uid), nullptr, 0, &n, &failed));
        std::string text;
        while (failed) {
            text.assign(n + 1, '\0');
            std::size_t full = 0;
            detail::check(chronica_director_node_last_error(d_, detail::cstr(uid), text.data(), text.size(), &full,
                                                            &failed));
            if (full <= n) {
                text.resize(full);
                return text;
            }
            n = full;
        }
        return std::nullopt;
    }

    /// Drains up to `timeout` (at most about 49.7 days: a longer one is
    /// capped; a negative one is refused), joins, and returns the events
    /// left undelivered.
    std::uint64_t close(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
        std::uint64_t left = 0;
        detail::check(chronica_director_close(d_, ms32("timeout", timeout), &left));
        return left;
    }

    /// The underlying C handle (still owned by this object).
    chronica_director* get() const noexcept { return d_; }

private:
    // A negative duration is a mistake the C types cannot even express:
    // refused, naming the argument, before anything changes.
    static std::uint64_t ms(const char* what, std::chrono::milliseconds d) {
        if (d.count() < 0) {
            throw Error(CHRONICA_ERR_INVALID_ARGUMENT, std::string("CHRONICA_ERR_INVALID_ARGUMENT: ") + what +
                                                           " must not be negative, got " +
                                                           std::to_string(d.count()) + " ms");
        }
        return static_cast<std::uint64_t>(d.count());
    }
    // The C calls that take a u32 of milliseconds: a longer timeout (above
    // about 49.7 days) is capped there, not wrapped to a short one.
    static std::uint32_t ms32(const char* what, std::chrono::milliseconds d) {
        std::uint64_t t = ms(what, d);
        return static_cast<std::uint32_t>(t > 0xffffffffULL ? 0xffffffffULL : t);
    }
    // Retry::max_retries, once checked against Retry::limit.
    static std::uint32_t max_retries(const Retry& r) {
        if (r.limit && r.max_retries != 0) {
            throw Error(CHRONICA_ERR_INVALID_ARGUMENT,
                        "CHRONICA_ERR_INVALID_ARGUMENT: retry: set max_retries (0 = unlimited) or limit (exact, "
                        "0 = no re-attempt), not both");
        }
        return r.max_retries;
    }
    static const char* src(const std::optional<std::string>& s) { return s ? detail::cstr(*s) : nullptr; }
    // The outcome of a try_ emit: QUEUE_FULL is empty, other refusals
    // throw, a success is the id the call recorded on this thread.
    static std::optional<std::uint64_t> tried(chronica_status s) {
        if (s == CHRONICA_ERR_QUEUE_FULL) return std::nullopt;
        detail::check(s);
        return chronica_last_event_id();
    }
    // The C messages of `msgs`, their topics NUL-terminated in `topics`
    // (one buffer for the call); a NUL inside a topic throws before
    // anything is emitted.
    static std::vector<chronica_message> c_messages(const Message* msgs, std::size_t n, std::string& topics) {
        std::vector<std::size_t> at(n);
        for (std::size_t i = 0; i < n; ++i) {
            if (msgs[i].topic.find('\0') != std::string_view::npos) {
                throw Error(CHRONICA_ERR_INVALID_ARGUMENT, "CHRONICA_ERR_INVALID_ARGUMENT: emit_many: msgs[" +
                                                               std::to_string(i) + "].topic contains a NUL byte");
            }
            at[i] = topics.size();
            topics.append(msgs[i].topic).push_back('\0');
        }
        static const char empty = '\0';
        std::vector<chronica_message> c(n);
        for (std::size_t i = 0; i < n; ++i) {
            const Message& m = msgs[i];
            // An empty key's view may hold no pointer; C reads NULL as "no key".
            const char* k = m.key ? (m.key->data() ? m.key->data() : &empty) : nullptr;
            c[i] = chronica_message{topics.data() + at[i], detail::bytes(m.payload), m.payload.size(),
                                    reinterpret_cast<const std::uint8_t*>(k), m.key ? m.key->size() : 0};
        }
        return c;
    }

    // The outcome of a timed_ emit, `id` being what it wrote on success
    // (read after the call returned: not an argument beside the call).
    static std::optional<std::uint64_t> timed(chronica_status s, std::uint64_t id) {
        if (s == CHRONICA_ERR_QUEUE_FULL) return std::nullopt;
        detail::check(s);
        return id;
    }

    chronica_director* d_ = nullptr;
    std::unique_ptr<detail::Hooks> hooks_;

    // Frees the C director, or, when the library refuses because this runs
    // inside one of its callbacks, leaves it running and keeps its hooks
    // alive: they are its `user_data` for as long as it exists.
    void dispose() noexcept {
        if (!d_) return;
        if (chronica_director_close(d_, 5000, nullptr) == CHRONICA_ERR_REENTRANT) {
            detail::keep_forever(std::move(hooks_));
            d_ = nullptr;
            return;
        }
        chronica_director_free(d_);
        d_ = nullptr;
    }
};

/// The library version string.
inline std::string_view version() noexcept { return chronica_version(); }

/// The id of the event created by the last successful emit on this thread
/// (0 before any; a failed emit leaves it): what the emit methods return.
inline std::uint64_t last_event_id() noexcept { return chronica_last_event_id(); }

}  // namespace chronica

#endif  // CHRONICA_HPP
