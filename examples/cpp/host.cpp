// A small C++ host using the header-only wrapper chronica.hpp: a price feed
// fanned out to two subscribers, one of which throws once (and is retried).
#include <atomic>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include "chronica.hpp"

int main() {
    std::cout << "chronica " << chronica::version() << "\n";
    chronica::Options opts;
    opts.retry.initial = std::chrono::milliseconds(20);
    opts.on_error = [](std::string_view uid, std::string_view err) {
        std::cout << "error hook: " << uid << ": " << err << " (will retry)\n";
    };
    chronica::Director d(opts);

    std::atomic<int> ticks{0};
    chronica::NodeOptions prices;
    prices.topics = {"prices.>"};
    d.register_node("chart", [&](const chronica::Batch& batch) {
        for (auto e : batch)
            if (!e.is_root()) ticks++;
    }, prices);
    std::atomic<bool> failed_once{false};
    d.register_node("alerts", [&](const chronica::Batch& batch) {
        for (auto e : batch) {
            if (e.is_root()) continue;
            if (!failed_once.exchange(true)) throw std::runtime_error("pager busy");
            std::cout << "alert: " << e.topic() << " = " << e.payload() << "\n";
        }
    }, prices);

    for (int i = 0; i < 5; i++) d.emit("prices.eur.usd", "1.0" + std::to_string(i));
    try {
        d.emit("prices.x", "1", std::string("nobody"));
    } catch (const chronica::Error& e) {
        std::cout << "refused as expected: " << e.what() << "\n";
    }
    for (int i = 0; i < 500 && d.stats("alerts").pending != 0; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto s = d.stats("alerts");
    std::cout << "alerts: delivered=" << s.delivered << " retries=" << s.retries << "\n";
    std::cout << "closed, " << d.close(std::chrono::seconds(2)) << " undelivered; chart saw " << ticks << " ticks\n";
    return 0;
}
