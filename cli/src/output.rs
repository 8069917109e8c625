//! Machine output (`--json`: one JSON document on stdout) or a readable table.

use std::io::IsTerminal;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

/// A cell for a JSON value: strings bare, null empty, the rest as JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// The value at a dotted path (`resource.id`).
pub fn at<'v>(v: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// The array at `key` of an answer (empty when absent).
pub fn items(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

pub fn is_tty() -> bool {
    std::io::stderr().is_terminal()
}

impl Out {
    /// `value` as JSON, or else rows of `items` with `columns` (header, dotted path).
    pub fn list(&self, value: &Value, items: &[Value], columns: &[(&str, &str)]) {
        if self.json {
            return self.raw(value);
        }
        let mut t = Table::new();
        if std::io::stdout().is_terminal() {
            t.load_preset(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic);
        } else {
            t.load_preset(comfy_table::presets::NOTHING);
        }
        t.set_header(columns.iter().map(|(h, _)| *h));
        for item in items {
            t.add_row(columns.iter().map(|(_, p)| cell(at(item, p))));
        }
        println!("{t}");
    }

    /// `value` as JSON, or else rows of its array at `key`.
    pub fn table(&self, value: &Value, key: &str, columns: &[(&str, &str)]) {
        self.list(value, &items(value, key), columns)
    }

    /// For people, on stderr: how to ask for the next page, when `value` has one (its `field`
    /// is the value to pass as `--flag`).
    pub fn next_page(&self, value: &Value, field: &str, flag: &str) {
        if let (false, Some(next)) = (self.json, value[field].as_str()) {
            eprintln!("more: --{flag} {next}");
        }
    }

    /// `value` as JSON, or else `fields` of `item` as `name: value` lines.
    pub fn object(&self, value: &Value, item: &Value, fields: &[(&str, &str)]) {
        if self.json {
            return self.raw(value);
        }
        let width = fields.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, path) in fields {
            println!("{name:width$}  {}", cell(at(item, path)));
        }
    }

    /// `value` as JSON, or else `text`.
    pub fn done(&self, value: &Value, text: &str) {
        if self.json {
            self.raw(value)
        } else {
            println!("{text}");
        }
    }

    pub fn raw(&self, value: &Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    }
}
