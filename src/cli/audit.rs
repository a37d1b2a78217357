//! `himaya audit verify|checkpoint|export-checkpoints`: the operator's proof that the
//! disclosure log is whole. Reads the `audit` schema directly (configuration's database).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use himaya_audit::chain::Checkpoint;
use himaya_settings::Settings;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole chain (and exported checkpoints): names the first bad entry.
    Verify {
        /// Checkpoints exported earlier and kept elsewhere: reveal a truncated tail.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// Sign the head of the chain now.
    Checkpoint,
    /// Write every signed checkpoint to a file, to keep outside the hub.
    ExportCheckpoints {
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(cmd: AuditCommand, settings: Settings) -> anyhow::Result<()> {
    let pool = himaya_audit::connect(&settings)
        .await
        .context("connecting to the disclosure log (is PostgreSQL running?)")?;
    match cmd {
        AuditCommand::Verify { checkpoints } => {
            let exported: Vec<Checkpoint> = match &checkpoints {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_str(&text).with_context(|| {
                        format!("{} is not an exported checkpoint file", path.display())
                    })?
                }
                None => Vec::new(),
            };
            match himaya_audit::verify(&pool, &exported).await {
                Ok(n) => println!(
                    "disclosure log intact: {n} entries, {} exported checkpoints matched — سجل الإفصاح سليم",
                    exported.len()
                ),
                Err(himaya_audit::AuditError::Tamper(t)) => {
                    anyhow::bail!("disclosure log TAMPERED at entry {}: {t} — تم العبث بسجل الإفصاح عند القيد {}", t.seq(), t.seq())
                }
                Err(e) => return Err(e.into()),
            }
        }
        AuditCommand::Checkpoint => {
            let key = himaya_audit::signing_key(&settings.audit.signing_key_file)?;
            match himaya_audit::checkpoint(&pool, &key).await? {
                Some(seq) => println!("signed the log up to entry {seq}"),
                None => println!("the log is empty: nothing to sign"),
            }
        }
        AuditCommand::ExportCheckpoints { out } => {
            let list = himaya_audit::checkpoints(&pool).await?;
            std::fs::write(&out, serde_json::to_string_pretty(&list)?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{} checkpoints written to {}", list.len(), out.display());
        }
    }
    Ok(())
}
