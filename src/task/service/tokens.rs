//! Bearer tokens for the HTTP transport: made from the OS's CSPRNG, shown once, kept only as
//! a SHA-256 hash, and checked by looking that hash up (so no comparison can leak timing).

use base64::Engine;
use sha2::{Digest, Sha256};

use super::TaskService;
use crate::domain::{Owner, now};
use crate::error::{Error, Result};
use crate::registry::TokenRecord;

/// Every token starts with this, so a leaked one is recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "tbx_";

/// The SHA-256 of a token, in hex: what the registry stores and looks up.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl TaskService {
    /// Makes a token for `owner`; returns its record and the token itself, which is not kept
    /// anywhere and cannot be shown again.
    pub fn create_token(&self, owner: &Owner, label: Option<&str>) -> Result<(TokenRecord, String)> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| Error::Config(format!("no randomness for a token: {e}")))?;
        let token = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let record = TokenRecord {
            id: format!("tok-{}", ulid::Ulid::new().to_string().to_lowercase()),
            owner: owner.clone(),
            label: label.map(str::trim).filter(|l| !l.is_empty()).map(String::from),
            created_at: now(),
            last_used_at: None,
            revoked_at: None,
        };
        self.registry.insert_token(&record, &token_hash(&token))?;
        Ok((record, token))
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        Ok(self.registry.list_tokens()?)
    }

    /// Revokes a token by id; from then on every request with it gets 401.
    pub fn revoke_token(&self, id: &str) -> Result<TokenRecord> {
        let unknown = || {
            Error::invalid(
                "token",
                format!("no token with id '{id}'; `taskbox token list` shows them"),
            )
        };
        let record = self.registry.get_token(id)?.ok_or_else(unknown)?;
        if record.revoked_at.is_some() {
            return Err(Error::invalid("token", format!("token '{id}' is revoked already")));
        }
        self.registry.revoke_token(id)?;
        self.registry.get_token(id)?.ok_or_else(unknown)
    }

    /// The live token a request presents, or `None` (unknown or revoked).
    pub fn authenticate(&self, token: &str) -> Result<Option<TokenRecord>> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        Ok(self.registry.authenticate_token(&token_hash(token))?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::runtime::fake::FakeRuntime;

    #[test]
    fn tokens_are_random_hashed_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            home: Some(dir.path().to_path_buf()),
            ..Config::default()
        };
        let service = TaskService::open(config, Arc::new(FakeRuntime::default())).unwrap();
        let alice = Owner::new("alice").unwrap();
        let (record, token) = service.create_token(&alice, Some("laptop")).unwrap();
        let (_, other) = service.create_token(&alice, None).unwrap();
        assert_ne!(token, other);
        assert!(
            token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 43,
            "{token}"
        );
        // Only the hash is on disk.
        for file in ["registry.db", "registry.db-wal"] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
            assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "{file}");
        }
        assert_eq!(service.authenticate(&token).unwrap().unwrap().owner, alice);
        assert_eq!(service.authenticate("tbx_wrong").unwrap(), None);
        assert_eq!(service.authenticate("").unwrap(), None);
        service.revoke_token(&record.id).unwrap();
        assert_eq!(service.authenticate(&token).unwrap(), None);
        assert!(service.revoke_token(&record.id).is_err());
        assert!(service.authenticate(&other).unwrap().is_some());
    }
}
