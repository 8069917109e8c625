//! Operational log lines as JSON. `detail` must already be free of secrets: runtime error text
//! from D1, R2 and Queues is; request data, headers and tokens are not, so never pass those.

pub fn error(context: &str, detail: &str) {
    let line = serde_json::json!({"level": "error", "msg": context, "detail": detail});
    worker::console_error!("{line}");
}

pub fn warn(context: &str, detail: &str) {
    let line = serde_json::json!({"level": "warn", "msg": context, "detail": detail});
    worker::console_warn!("{line}");
}

pub fn info(msg: &str, fields: serde_json::Value) {
    let line = serde_json::json!({"level": "info", "msg": msg, "fields": fields});
    worker::console_log!("{line}");
}
