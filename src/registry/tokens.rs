//! Bearer tokens of the HTTP transport: created, listed, revoked, and looked up by the SHA-256
//! of the presented token. The token itself is never stored.

use rusqlite::{OptionalExtension, params};

use super::{Cached, Registry, RegistryError, Result, ts_from_sql, ts_to_sql};
use crate::domain::{Owner, Timestamp, now};

/// How stale `last_used_at` may get before a request writes it again: one write per token and
/// minute instead of one per request.
const LAST_USED_PRECISION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// A token as the registry keeps it (its hash, never the token).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub owner: Owner,
    pub label: Option<String>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

type RawToken = (String, String, Option<String>, String, Option<String>, Option<String>);

const COLUMNS: &str = "id, owner, label, created_at, last_used_at, revoked_at";

impl Registry {
    pub fn insert_token(&self, record: &TokenRecord, hash: &str) -> Result<()> {
        self.conn().execute_cached(
            "INSERT INTO tokens (id, owner, label, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                record.id,
                record.owner.as_str(),
                record.label,
                hash,
                ts_to_sql(&record.created_at)
            ],
        )?;
        Ok(())
    }

    /// Every token, oldest first.
    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tokens ORDER BY created_at, id"))?;
        let rows = stmt.query_map([], raw_token)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(into_record).collect()
    }

    /// Marks the token revoked; `false` when there is no such token or it was revoked already.
    pub fn revoke_token(&self, id: &str) -> Result<bool> {
        let changed = self.conn().execute_cached(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, ts_to_sql(&now())],
        )?;
        Ok(changed > 0)
    }

    pub fn get_token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let conn = self.conn();
        let raw = conn
            .query_row_cached(&format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"), [id], raw_token)
            .optional()?;
        raw.map(into_record).transpose()
    }

    /// The live (not revoked) token whose SHA-256 is `hash`, noting that it was used. A lookup
    /// by an unguessable hash on a unique index: no token comparison that could leak timing.
    pub fn authenticate_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let conn = self.conn();
        let raw = conn
            .query_row_cached(
                &format!("SELECT {COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_at IS NULL"),
                [hash],
                raw_token,
            )
            .optional()?;
        let Some(record) = raw.map(into_record).transpose()? else {
            return Ok(None);
        };
        let at = now();
        if record.last_used_at.is_none_or(|last| at - last > LAST_USED_PRECISION) {
            conn.execute_cached(
                "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
                params![record.id, ts_to_sql(&at)],
            )?;
        }
        Ok(Some(record))
    }
}

fn raw_token(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawToken> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn into_record((id, owner, label, created_at, last_used_at, revoked_at): RawToken) -> Result<TokenRecord> {
    Ok(TokenRecord {
        owner: Owner::new(&owner).map_err(|_| RegistryError::Corrupt {
            column: "owner",
            value: owner.clone(),
        })?,
        id,
        label,
        created_at: ts_from_sql("created_at", created_at)?,
        last_used_at: last_used_at.map(|t| ts_from_sql("last_used_at", t)).transpose()?,
        revoked_at: revoked_at.map(|t| ts_from_sql("revoked_at", t)).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn tokens_authenticate_until_revoked() {
        let reg = Registry::open_in_memory().unwrap();
        let record = TokenRecord {
            id: "tok-1".into(),
            owner: Owner::new("alice").unwrap(),
            label: Some("laptop".into()),
            created_at: ts_from_sql("t", ts_to_sql(&now())).unwrap(),
            last_used_at: None,
            revoked_at: None,
        };
        reg.insert_token(&record, "abc").unwrap();
        assert_eq!(reg.authenticate_token("nope").unwrap(), None);
        let found = reg.authenticate_token("abc").unwrap().unwrap();
        assert_eq!((found.id.as_str(), found.owner.as_str()), ("tok-1", "alice"));
        assert!(reg.get_token("tok-1").unwrap().unwrap().last_used_at.is_some());
        assert!(reg.revoke_token("tok-1").unwrap());
        assert!(!reg.revoke_token("tok-1").unwrap());
        assert_eq!(reg.authenticate_token("abc").unwrap(), None);
        let listed = reg.list_tokens().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].revoked_at.is_some());
    }
}
