//! Statements as plain data ([`Stmt`]) until executed, so a batch can be retried and its guards
//! evaluated again to explain a failure; and [`OrgBatch`], which builds an org's writes with
//! the org id bound in each statement, so a write can never reach another org's rows because
//! of something read earlier.

use edgeplane_core::audit::sql::Statement;
use edgeplane_core::ApiError;
use wasm_bindgen::JsValue;

/// A bound value: the one value type of `edgeplane-core`'s stores.
pub use edgeplane_core::store::Value as Val;

pub(super) fn to_js(v: &Val) -> JsValue {
    match v {
        Val::Null => JsValue::NULL,
        // D1 numbers are JS numbers; every integer we store (ms timestamps, counters) is far
        // below 2^53.
        Val::Int(i) => JsValue::from_f64(*i as f64),
        Val::Real(f) => JsValue::from_f64(*f),
        Val::Text(s) => JsValue::from_str(s),
        Val::Blob(b) => js_sys::Uint8Array::from(b.as_slice()).into(),
    }
}

/// `args![a, b, c]` builds a `Vec<Val>`.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => { vec![$($crate::db::Val::from($v)),*] };
}

/// One SQL statement with its arguments.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub sql: String,
    pub args: Vec<Val>,
    /// Set for guard statements: the error the batch answers with when this guard fails.
    pub(super) guard: Option<(String, ApiError)>,
}

impl Stmt {
    pub fn new(sql: impl Into<String>, args: Vec<Val>) -> Self {
        Self {
            sql: sql.into(),
            args,
            guard: None,
        }
    }

    /// A condition the whole batch depends on, checked atomically inside it. `condition` is a SQL
    /// expression (it may use sub-selects and `?` placeholders bound by `args`); if it is not
    /// true when the batch runs, nothing in the batch is applied and the batch fails with
    /// `error`. This is how "the last owner cannot be removed" holds under concurrency.
    pub fn guard(condition: &str, args: Vec<Val>, error: ApiError) -> Self {
        Self {
            sql: format!("INSERT INTO batch_guards (ok) SELECT coalesce(({condition}), 0)"),
            args,
            guard: Some((condition.to_owned(), error)),
        }
    }
}

impl From<Statement> for Stmt {
    fn from((sql, args): Statement) -> Self {
        Stmt::new(sql, args)
    }
}

/// The writes of one org's change. Each statement it builds names the org itself (`org_id` is
/// the first column of an insert, and the first condition of an update or delete), so tenancy
/// never rests on an earlier read: a stale or wrong id matches nothing in another org.
#[derive(Debug, Clone)]
pub struct OrgBatch {
    org_id: String,
    stmts: Vec<Stmt>,
}

impl OrgBatch {
    pub fn new(org_id: &str) -> Self {
        Self {
            org_id: org_id.to_owned(),
            stmts: Vec::new(),
        }
    }

    pub fn org_id(&self) -> &str {
        &self.org_id
    }

    /// `INSERT INTO table (org_id, columns…) VALUES (?, …)`.
    pub fn insert(mut self, table: &str, columns: &[&str], values: Vec<Val>) -> Self {
        let marks = vec!["?"; columns.len() + 1].join(", ");
        let mut args = vec![Val::from(self.org_id.as_str())];
        args.extend(values);
        self.stmts.push(Stmt::new(
            format!(
                "INSERT INTO {table} (org_id, {}) VALUES ({marks})",
                columns.join(", ")
            ),
            args,
        ));
        self
    }

    /// `INSERT INTO table (org_id, columns…) VALUES (?, …) ON CONFLICT (key) DO UPDATE SET set`,
    /// for a counter or a latest value kept per key (bookkeeping such as a device's heartbeats
    /// per hour). The update applies only to a row of this org: a key that some other org's row
    /// holds is left alone.
    pub fn upsert(
        mut self,
        table: &str,
        columns: &[&str],
        values: Vec<Val>,
        key: &str,
        set: &str,
    ) -> Self {
        let marks = vec!["?"; columns.len() + 1].join(", ");
        let mut args = vec![Val::from(self.org_id.as_str())];
        args.extend(values);
        self.stmts.push(Stmt::new(
            format!(
                "INSERT INTO {table} (org_id, {}) VALUES ({marks}) ON CONFLICT ({key}) \
                 DO UPDATE SET {set} WHERE {table}.org_id = excluded.org_id",
                columns.join(", ")
            ),
            args,
        ));
        self
    }

    /// `INSERT INTO table (org_id, columns…) SELECT ?, select`: for values computed in SQL (the
    /// next version number, a default that depends on other rows). `select` is the rest of the
    /// `SELECT` after the org id (values, and any `FROM`/`WHERE`); `args` bind it.
    pub fn insert_select(
        mut self,
        table: &str,
        columns: &[&str],
        select: &str,
        args: Vec<Val>,
    ) -> Self {
        let mut all = vec![Val::from(self.org_id.as_str())];
        all.extend(args);
        self.stmts.push(Stmt::new(
            format!(
                "INSERT INTO {table} (org_id, {}) SELECT ?, {select}",
                columns.join(", ")
            ),
            all,
        ));
        self
    }

    /// `INSERT INTO table (columns…) SELECT ?, … WHERE` every `(owner_table, id)` of `owners`
    /// is a row of this org: for a table with no `org_id` of its own, which belongs to the org
    /// through the rows it references (a group's members, a token family's tokens). If an
    /// owner is missing or another org's, nothing is inserted.
    pub fn insert_linked(
        mut self,
        table: &str,
        columns: &[&str],
        values: Vec<Val>,
        owners: &[(&str, &str)],
        on_duplicate: OnDuplicate,
    ) -> Self {
        let verb = match on_duplicate {
            OnDuplicate::Fail => "INSERT",
            OnDuplicate::Ignore => "INSERT OR IGNORE",
        };
        let marks = vec!["?"; columns.len()].join(", ");
        let mut args = values;
        let mut conditions = Vec::with_capacity(owners.len());
        for (owner, id) in owners {
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM {owner} WHERE id = ? AND org_id = ?)"
            ));
            args.push(Val::from(*id));
            args.push(Val::from(self.org_id.as_str()));
        }
        self.stmts.push(Stmt::new(
            format!(
                "{verb} INTO {table} ({}) SELECT {marks} WHERE {}",
                columns.join(", "),
                conditions.join(" AND ")
            ),
            args,
        ));
        self
    }

    /// `UPDATE table SET set WHERE column IN (SELECT id FROM owner WHERE org_id = ?) AND
    /// (filter)`: an update of a table with no `org_id` of its own (see
    /// [`OrgBatch::insert_linked`]), limited to rows whose `column` names a row of this org in
    /// `owner`.
    pub fn update_linked(
        self,
        table: &str,
        set: &str,
        set_args: Vec<Val>,
        (column, owner): (&str, &str),
        filter: &str,
        filter_args: Vec<Val>,
    ) -> Self {
        let scope = format!("{column} IN (SELECT id FROM {owner} WHERE org_id = ?)");
        self.scoped_update(table, set, set_args, &scope, filter, filter_args)
    }

    /// `UPDATE table SET set WHERE org_id = ? AND (filter)`; `args` bind `set`, then `filter`.
    pub fn update(
        self,
        table: &str,
        set: &str,
        set_args: Vec<Val>,
        filter: &str,
        filter_args: Vec<Val>,
    ) -> Self {
        self.scoped_update(table, set, set_args, "org_id = ?", filter, filter_args)
    }

    /// An update limited by `scope`, a condition with one placeholder: the org id.
    fn scoped_update(
        mut self,
        table: &str,
        set: &str,
        set_args: Vec<Val>,
        scope: &str,
        filter: &str,
        filter_args: Vec<Val>,
    ) -> Self {
        let mut args = set_args;
        args.push(Val::from(self.org_id.as_str()));
        args.extend(filter_args);
        self.stmts.push(Stmt::new(
            format!("UPDATE {table} SET {set} WHERE {scope} AND ({filter})"),
            args,
        ));
        self
    }

    /// `UPDATE orgs SET set WHERE id = ?`: the org's own row, which is keyed by `id` rather than
    /// `org_id`; bound to this batch's org like every other statement.
    pub fn update_org(mut self, set: &str, set_args: Vec<Val>) -> Self {
        let mut args = set_args;
        args.push(Val::from(self.org_id.as_str()));
        self.stmts.push(Stmt::new(
            format!("UPDATE orgs SET {set} WHERE id = ? AND deleted_at_ms IS NULL"),
            args,
        ));
        self
    }

    /// `DELETE FROM table WHERE org_id = ? AND (filter)`.
    pub fn delete(mut self, table: &str, filter: &str, filter_args: Vec<Val>) -> Self {
        let mut args = vec![Val::from(self.org_id.as_str())];
        args.extend(filter_args);
        self.stmts.push(Stmt::new(
            format!("DELETE FROM {table} WHERE org_id = ? AND ({filter})"),
            args,
        ));
        self
    }

    /// A guard ([`Stmt::guard`]). Guards only read; their conditions name the org themselves.
    pub fn guard(mut self, condition: &str, args: Vec<Val>, error: ApiError) -> Self {
        self.stmts.push(Stmt::guard(condition, args, error));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.stmts.is_empty()
    }

    pub fn into_stmts(self) -> Vec<Stmt> {
        self.stmts
    }
}

/// What [`OrgBatch::insert_linked`] does when a row with the same key exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
    /// The batch fails (`DbError::Unique`).
    Fail,
    /// The existing row stays as it is; the statement changes nothing.
    Ignore,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_batches_bind_the_org_in_every_write() {
        let b = OrgBatch::new("org_1")
            .insert("api_keys", &["id", "name"], crate::args!["key_1", "ci"])
            .update(
                "api_keys",
                "revoked_at_ms = ?",
                crate::args![5i64],
                "id = ?",
                crate::args!["key_1"],
            )
            .delete("memberships", "user_id = ?", crate::args!["usr_1"])
            .into_stmts();
        assert_eq!(
            b[0].sql,
            "INSERT INTO api_keys (org_id, id, name) VALUES (?, ?, ?)"
        );
        assert_eq!(b[0].args[0], Val::from("org_1"));
        assert_eq!(
            b[1].sql,
            "UPDATE api_keys SET revoked_at_ms = ? WHERE org_id = ? AND (id = ?)"
        );
        assert_eq!(
            b[1].args,
            vec![Val::Int(5), Val::from("org_1"), Val::from("key_1")]
        );
        assert_eq!(
            b[2].sql,
            "DELETE FROM memberships WHERE org_id = ? AND (user_id = ?)"
        );
    }

    /// Runs statements as D1 runs a batch (one transaction) over the real `schema.sql`.
    fn sqlite() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../../../schema.sql"))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO orgs (id, slug, name, created_at_ms, created_by) VALUES \
               ('org_a', 'a', 'A', 1, 'u'), ('org_b', 'b', 'B', 1, 'u'); \
             INSERT INTO fl_models (id, org_id, name, created_by, created_at_ms) VALUES \
               ('mdl_a', 'org_a', 'm', 'u', 1);",
        )
        .unwrap();
        conn
    }

    fn run(conn: &mut rusqlite::Connection, stmts: Vec<Stmt>) -> Vec<usize> {
        use rusqlite::types::Value as Sq;
        let tx = conn.transaction().unwrap();
        let mut changes = Vec::new();
        for s in stmts {
            let args = s.args.iter().map(|v| match v {
                Val::Null => Sq::Null,
                Val::Int(i) => Sq::Integer(*i),
                Val::Real(f) => Sq::Real(*f),
                Val::Text(t) => Sq::Text(t.clone()),
                Val::Blob(b) => Sq::Blob(b.clone()),
            });
            changes.push(
                tx.execute(&s.sql, rusqlite::params_from_iter(args))
                    .unwrap(),
            );
        }
        tx.commit().unwrap();
        changes
    }

    fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// An upsert counts up its org's row, and never touches a row of another org that holds
    /// the same key.
    #[test]
    fn upserts_update_only_the_orgs_own_row() {
        let mut db = sqlite();
        db.execute_batch(
            "INSERT INTO fl_devices (id, org_id, device_identifier, created_at_ms) VALUES \
               ('dev_a', 'org_a', 'a', 1), ('dev_b', 'org_b', 'b', 1); \
             INSERT INTO fl_heartbeat_hours (org_id, device_id, hour_ms, count, last_heartbeat, last_at_ms) \
               VALUES ('org_b', 'dev_b', 0, 5, '{}', 1);",
        )
        .unwrap();
        let beat = |org: &str, device: &str, at: i64| {
            OrgBatch::new(org)
                .upsert(
                    "fl_heartbeat_hours",
                    &[
                        "device_id",
                        "hour_ms",
                        "count",
                        "last_heartbeat",
                        "last_at_ms",
                    ],
                    crate::args![device, 0i64, 1i64, format!("{{\"n\":{at}}}"), at],
                    "device_id, hour_ms",
                    "count = count + 1, last_heartbeat = excluded.last_heartbeat, \
                     last_at_ms = excluded.last_at_ms",
                )
                .into_stmts()
        };
        assert_eq!(run(&mut db, beat("org_a", "dev_a", 2)), vec![1]);
        assert_eq!(run(&mut db, beat("org_a", "dev_a", 3)), vec![1]);
        // org_a naming org_b's key: the conflict's update does not apply.
        assert_eq!(run(&mut db, beat("org_a", "dev_b", 4)), vec![0]);
        assert_eq!(
            count(
                &db,
                "SELECT count FROM fl_heartbeat_hours WHERE device_id = 'dev_a'"
            ),
            2
        );
        assert_eq!(
            count(
                &db,
                "SELECT last_at_ms FROM fl_heartbeat_hours WHERE device_id = 'dev_a'"
            ),
            3
        );
        assert_eq!(
            count(
                &db,
                "SELECT count FROM fl_heartbeat_hours WHERE device_id = 'dev_b'"
            ),
            5
        );
    }

    /// Rows of tables that have no `org_id` column are written only through owners of the
    /// batch's org: another org's group, device or token family matches nothing.
    #[test]
    fn linked_writes_reach_only_rows_owned_by_the_org() {
        let mut db = sqlite();
        db.execute_batch(
            "INSERT INTO fl_devices (id, org_id, device_identifier, created_at_ms) VALUES \
               ('dev_a', 'org_a', 'a', 1), ('dev_b', 'org_b', 'b', 1); \
             INSERT INTO fl_device_groups (id, org_id, name, created_by, created_at_ms) VALUES \
               ('dgr_a', 'org_a', 'ga', 'u', 1), ('dgr_b', 'org_b', 'gb', 'u', 1); \
             INSERT INTO fl_device_families (id, org_id, device_id, scopes, access_ttl_s, created_at_ms) \
               VALUES ('dfm_a', 'org_a', 'dev_a', 's', 60, 1), ('dfm_b', 'org_b', 'dev_b', 's', 60, 1); \
             INSERT INTO fl_device_refresh_tokens (id, family_id, token_hash, created_at_ms, expires_at_ms) \
               VALUES ('drt_a', 'dfm_a', 'ha', 1, 9), ('drt_b', 'dfm_b', 'hb', 1, 9);",
        )
        .unwrap();
        let member = |b: OrgBatch, g: &str, d: &str| {
            b.insert_linked(
                "fl_device_group_members",
                &["group_id", "device_id"],
                crate::args![g, d],
                &[("fl_device_groups", g), ("fl_devices", d)],
                OnDuplicate::Ignore,
            )
        };
        let batch = OrgBatch::new("org_a");
        let batch = member(batch, "dgr_a", "dev_a");
        let batch = member(batch, "dgr_a", "dev_a");
        let batch = member(batch, "dgr_a", "dev_b");
        let batch = member(batch, "dgr_b", "dev_a");
        let batch = batch
            .insert_linked(
                "fl_device_refresh_tokens",
                &[
                    "id",
                    "family_id",
                    "token_hash",
                    "created_at_ms",
                    "expires_at_ms",
                ],
                crate::args!["drt_x", "dfm_b", "hx", 2i64, 9i64],
                &[("fl_device_families", "dfm_b")],
                OnDuplicate::Fail,
            )
            .update_linked(
                "fl_device_refresh_tokens",
                "rotated_at_ms = ?",
                crate::args![5i64],
                ("family_id", "fl_device_families"),
                "id IN (?, ?)",
                crate::args!["drt_a", "drt_b"],
            );
        assert_eq!(run(&mut db, batch.into_stmts()), vec![1, 0, 0, 0, 0, 1]);
        assert_eq!(
            count(&db, "SELECT count(*) FROM fl_device_group_members"),
            1
        );
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM fl_device_refresh_tokens WHERE rotated_at_ms IS NOT NULL"
            ),
            1
        );
        assert_eq!(
            count(
                &db,
                "SELECT rotated_at_ms FROM fl_device_refresh_tokens WHERE id = 'drt_a'"
            ),
            5
        );
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM fl_device_refresh_tokens WHERE id = 'drt_x'"
            ),
            0
        );
    }

    /// An insert whose values SQL computes still names the org first; a new model version is
    /// numbered after the model's latest in the same statement.
    #[test]
    fn computed_inserts_bind_the_org() {
        use edgeplane_core::fl::versions::NewVersion;
        let mut db = sqlite();
        let version = |id: &str| {
            let v = NewVersion {
                id,
                model_id: "mdl_a",
                parent_id: None,
                round_id: None,
                sha256: "h",
                size_bytes: 1,
                parameters: 1,
                layout: "{}".into(),
                pieces: "[]".into(),
                aggregation: None,
                created_by: "u",
                created_at_ms: 1,
            };
            OrgBatch::new("org_a").insert_select(
                NewVersion::TABLE,
                NewVersion::COLUMNS,
                NewVersion::SELECT,
                v.values(),
            )
        };
        let stmts = version("mv_1").into_stmts();
        assert!(stmts[0]
            .sql
            .starts_with("INSERT INTO fl_model_versions (org_id, id, model_id, version, "));
        assert_eq!(stmts[0].args[0], Val::from("org_a"));
        run(&mut db, stmts);
        run(&mut db, version("mv_2").into_stmts());
        let numbered: Vec<(String, String, i64)> = db
            .prepare("SELECT id, org_id, version FROM fl_model_versions ORDER BY version")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            numbered,
            vec![
                ("mv_1".into(), "org_a".into(), 1),
                ("mv_2".into(), "org_a".into(), 2)
            ]
        );
    }
}
