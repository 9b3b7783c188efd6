//! Versioned migrations of the store, applied in order at start.
//!
//! `PRAGMA user_version` holds the version; each step runs in its own
//! transaction, so a crash mid-migration leaves the previous version intact.

use rusqlite::Connection;

/// The schema version this build writes.
pub const VERSION: i64 = 3;

/// Each migration brings the schema from `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: sessions, events, messages, tasks.
    "CREATE TABLE sessions (
        id          TEXT PRIMARY KEY,
        spec        TEXT NOT NULL,
        info        TEXT NOT NULL,
        state       TEXT NOT NULL,
        reason      TEXT NOT NULL,
        generation  INTEGER NOT NULL,
        task_id     TEXT,
        project_id  TEXT,
        pid         INTEGER,
        pid_start   INTEGER,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        ended_at    INTEGER
     );
     CREATE INDEX sessions_task ON sessions(task_id);
     CREATE INDEX sessions_ended ON sessions(ended_at);
     CREATE TABLE events (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id  TEXT NOT NULL,
        from_state  TEXT NOT NULL,
        to_state    TEXT NOT NULL,
        reason      TEXT NOT NULL,
        at          TEXT NOT NULL,
        generation  INTEGER NOT NULL
     );
     CREATE INDEX events_session ON events(session_id, seq);
     CREATE TABLE messages (
        id          TEXT PRIMARY KEY,
        session_id  TEXT NOT NULL,
        state       TEXT NOT NULL,
        body        TEXT NOT NULL
     );
     CREATE INDEX messages_session ON messages(session_id);
     CREATE TABLE tasks (
        task_id     TEXT PRIMARY KEY,
        session_id  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
     );",
    // 1 → 2: typed end causes. Events keep theirs (JSON); a session stored as
    // stopped by a daemon shutdown (known then only by its reason's text)
    // gets the typed cause, so recovery never reads the text again.
    "ALTER TABLE events ADD COLUMN cause TEXT;
     UPDATE sessions
        SET info = json_set(info, '$.cause', json('{\"kind\":\"daemon_shutdown\"}'))
      WHERE reason = 'daemon shutdown' AND json_extract(info, '$.cause') IS NULL;",
    // 2 → 3: the webhooks' durable outbox. A row is a notification not yet
    // acknowledged by its endpoint (deleted on a 2xx): `url` names the
    // `[[notify]]` target, `id` is the delivery id endpoints de-duplicate on.
    "CREATE TABLE outbox (
        id          TEXT PRIMARY KEY,
        url         TEXT NOT NULL,
        event       TEXT NOT NULL,
        body        TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        next_at     INTEGER NOT NULL,
        last_error  TEXT,
        created_at  INTEGER NOT NULL
     );
     CREATE INDEX outbox_due ON outbox(next_at);",
];

/// Applies every migration after `from`.
pub fn migrate(conn: &mut Connection, from: i64) -> rusqlite::Result<()> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_line_up() {
        assert_eq!(MIGRATIONS.len() as i64, VERSION);
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c, 0).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
        migrate(&mut c, v).unwrap();
    }
}
