//! The PostgreSQL schema, in versioned migrations: each applied in one transaction with its
//! row in `atacama_schema`, all of them under an advisory lock, so that daemons (or a daemon
//! and `atacama-mail store migrate`) starting at once do not both migrate. A database whose
//! schema is newer than this build knows is refused: a daemon must not write what a newer one
//! would misread.

use postgres::Client;

use crate::StoreError;

/// The schema version this build reads and writes: the last of [`MIGRATIONS`].
pub const PG_SCHEMA_VERSION: u64 = MIGRATIONS.len() as u64;

/// The advisory lock key held while migrating ("atacama" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x0061_7461_6361_6d61;

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The version the database had (0: empty).
    pub from: u64,
    /// The version it has now: [`PG_SCHEMA_VERSION`].
    pub to: u64,
}

/// Migration `n` (from 1) brings the schema from version `n - 1` to `n`.
const MIGRATIONS: [&str; 2] = [
    // 1: users, tokens, messages.
    //
    // Times are `timestamptz`, read back as Unix seconds. The packed body is lz4 already:
    // `STORAGE EXTERNAL` keeps TOAST from compressing it again. The envelope is `json`, not
    // `jsonb`: jsonb cannot hold a NUL (`\u0000`), which a decoded header may.
    r#"
    CREATE TABLE users (
        name text PRIMARY KEY,
        hash text NOT NULL,
        active boolean NOT NULL,
        created timestamptz NOT NULL,
        updated timestamptz NOT NULL
    );
    CREATE TABLE tokens (
        name text PRIMARY KEY,
        sha256 text NOT NULL,
        created timestamptz NOT NULL
    );
    CREATE SEQUENCE message_ids AS bigint;
    CREATE TABLE messages (
        id bigint PRIMARY KEY DEFAULT nextval('message_ids'),
        received_at timestamptz NOT NULL,
        user_name text NOT NULL,
        channel text NOT NULL,
        message_id text,
        in_reply_to text,
        parent_id bigint,
        subject text,
        size bigint NOT NULL,
        envelope json NOT NULL,
        header bytea NOT NULL,
        body bytea NOT NULL
    );
    ALTER SEQUENCE message_ids OWNED BY messages.id;
    ALTER TABLE messages ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE INDEX messages_by_user ON messages (user_name, id);
    CREATE INDEX messages_by_channel ON messages (channel, id);
    CREATE INDEX messages_by_message_id ON messages (message_id, id)
        WHERE message_id IS NOT NULL;
    CREATE INDEX messages_by_parent ON messages (parent_id, id) WHERE parent_id IS NOT NULL;
    CREATE TABLE message_rows (
        message bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        n integer NOT NULL,
        bytes bytea NOT NULL,
        PRIMARY KEY (message, n)
    );
    ALTER TABLE message_rows ALTER COLUMN bytes SET STORAGE EXTERNAL;
    "#,
    // 2: every change of a user notifies `atacama_users` with the name (`''` after a
    // TRUNCATE: anyone), so that daemons can remember logins between MAIL checks
    // (`pg::logins`), whoever changed the row: a daemon, the command line, SQL by hand.
    r#"
    CREATE FUNCTION atacama_user_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            PERFORM pg_notify('atacama_users', OLD.name);
        END IF;
        IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.name <> OLD.name) THEN
            PERFORM pg_notify('atacama_users', NEW.name);
        END IF;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER user_changed AFTER INSERT OR UPDATE OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION atacama_user_changed();
    CREATE FUNCTION atacama_users_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('atacama_users', '');
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER users_truncated AFTER TRUNCATE ON users
        FOR EACH STATEMENT EXECUTE FUNCTION atacama_users_truncated();
    "#,
];

/// Applies the migrations the database lacks; [`StoreError::SchemaVersion`] if it has one
/// this build does not know.
pub(super) fn migrate(client: &mut Client) -> Result<Migration, StoreError> {
    let mut tx = client.transaction()?;
    // Released at commit or rollback, also if the connection is lost.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS atacama_schema (
            version bigint PRIMARY KEY,
            applied timestamptz NOT NULL DEFAULT now()
        )",
    )?;
    let found: Option<i64> = tx
        .query_one("SELECT max(version) FROM atacama_schema", &[])?
        .try_get(0)?;
    let from = super::unsigned(found.unwrap_or(0), "atacama_schema.version")?;
    if from > PG_SCHEMA_VERSION {
        return Err(StoreError::SchemaVersion {
            found: from,
            expected: PG_SCHEMA_VERSION,
        });
    }
    for (version, sql) in (1u64..).zip(MIGRATIONS) {
        if version <= from {
            continue;
        }
        tx.batch_execute(sql)?;
        let version = super::bigint(version, "schema version")?;
        tx.execute(
            "INSERT INTO atacama_schema (version) VALUES ($1)",
            &[&version],
        )?;
    }
    tx.commit()?;
    if from < PG_SCHEMA_VERSION {
        log::info!("store: database schema migrated from version {from} to {PG_SCHEMA_VERSION}");
    }
    Ok(Migration {
        from,
        to: PG_SCHEMA_VERSION,
    })
}
