//! Outgoing email: messages as data and the Resend-compatible wire format the provider client
//! sends (`POST {base}/emails`, bearer key, JSON `{from, to, subject, text, html}`).

use serde::Serialize;

/// One message to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The request body of Resend's `POST /emails`.
pub fn resend_request(from: &str, m: &Message) -> serde_json::Value {
    serde_json::json!({
        "from": from,
        "to": [m.to],
        "subject": m.subject,
        "text": m.text,
        "html": m.html,
    })
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_shape() {
        let m = Message {
            to: "ada@example.com".into(),
            subject: "s".into(),
            text: "t".into(),
            html: "<p>t</p>".into(),
        };
        assert_eq!(
            resend_request("edgeplane <no-reply@ep.test>", &m),
            serde_json::json!({"from": "edgeplane <no-reply@ep.test>", "to": ["ada@example.com"],
                "subject": "s", "text": "t", "html": "<p>t</p>"})
        );
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
