//! First start: the initial tenant and admin user, and the token-signing secret.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use rand::RngCore;
use tributary_auth::{password, token, Authenticator};
use tributary_store::meta::prelude::*;
use tributary_store::Role;

use crate::config::Config;

/// Creates the first tenant and its owner when the store has no tenant yet.
pub async fn first_start(meta: &dyn MetaStore, config: &Config) -> anyhow::Result<()> {
    if meta.tenant_count().await? > 0 {
        return Ok(());
    }
    let (pw, generated) = match &config.admin_password {
        Some(pw) => {
            password::check_policy(pw).map_err(|e| anyhow::anyhow!("admin_password: {e}"))?;
            (pw.clone(), false)
        }
        None => (token::generate(20), true),
    };
    let hash = Authenticator::hash_password(&pw).await?;
    let (tenant, user) = meta
        .create_tenant_with_owner(&config.tenant_name, &config.admin_email, &hash, Role::Owner)
        .await?;
    tracing::info!(tenant = %tenant.id, email = %user.email, "first start: created tenant and admin user");
    if generated {
        // Printed once, on stdout, never logged.
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "\nTributary created tenant {:?} and admin user {}\n  password: {pw}\n  (shown only this once: store it now, or set TRIBUTARY_ADMIN_PASSWORD before the first start)\n",
            tenant.name, user.email
        )?;
        out.flush()?;
    }
    Ok(())
}

/// The secret that signs access tokens: from the configuration, or a random
/// one kept in the data directory (readable by the owner only).
pub fn jwt_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &config.jwt_secret {
        return Ok(s.as_bytes().to_vec());
    }
    let path = config.data_dir.join("jwt.secret");
    if path.exists() {
        let hex_secret =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return hex::decode(hex_secret.trim())
            .with_context(|| format!("{} is not hex", path.display()));
    }
    let mut secret = vec![0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    write_private(&path, hex::encode(&secret).as_bytes())?;
    Ok(secret)
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}
