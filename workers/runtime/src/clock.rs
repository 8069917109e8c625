//! Wall-clock time on Workers (`Date.now()`; `std::time` is unavailable on wasm32).

pub fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

pub fn now_secs() -> i64 {
    now_ms() / 1000
}
