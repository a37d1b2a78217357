//! `himaya parked list|show|replay|inbound`: the operator's view of what the hub could
//! not process. Bus messages wait in the parking queue with their reason until replayed;
//! items an agency sent that the connectors refused are listed from
//! `connectors.inbound_parked`. Only envelopes are shown (ids, types, queues, reasons),
//! never a body: a body holds a child's data.

use anyhow::Context;
use clap::Subcommand;
use himaya_bus::{Bus, Parked, Selection, Topology};
use himaya_settings::Settings;

use crate::client::Lang;

#[derive(Debug, Subcommand)]
pub enum ParkedCommand {
    #[command(flatten)]
    Bus(BusCommand),
    /// What agencies sent (pushed or pulled) that the hub refused, with the reason. The
    /// agency's message itself is not kept: take the reason up with the agency.
    Inbound {
        /// Only this agency's.
        #[arg(long)]
        agency: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, value_enum, default_value = "en")]
        lang: Lang,
    },
}

/// The commands on the parking queue.
#[derive(Debug, Subcommand)]
pub enum BusCommand {
    /// Parked bus messages, oldest first: id, event type, the queue it came from, why.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum, default_value = "en")]
        lang: Lang,
    },
    /// Everything recorded about one parked message except its body.
    Show {
        message_id: String,
        #[arg(long, value_enum, default_value = "en")]
        lang: Lang,
    },
    /// Send parked messages back to the queue each came from, once the cause is fixed.
    /// Consumers are idempotent: a message already handled is not handled twice.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["ids", "all", "from_queue"])))]
    Replay {
        /// A message to replay (repeatable).
        #[arg(long = "id")]
        ids: Vec<String>,
        /// Every parked message.
        #[arg(long)]
        all: bool,
        /// Every message parked from this queue (e.g. `deliver.health-cairo`).
        #[arg(long)]
        from_queue: Option<String>,
        #[arg(long, value_enum, default_value = "en")]
        lang: Lang,
    },
}

pub async fn run(cmd: ParkedCommand, settings: Settings) -> anyhow::Result<()> {
    let cmd = match cmd {
        ParkedCommand::Inbound {
            agency,
            limit,
            lang,
        } => return inbound(&settings, agency, limit, lang).await,
        ParkedCommand::Bus(cmd) => cmd,
    };
    let bus = Bus::connect(
        settings.bus.url.expose(),
        Topology::new(settings.bus.prefix.clone()),
    )
    .await
    .context("connecting to RabbitMQ (is it running? see `bus.url` in config/)")?;
    let result = bus_command(cmd, &bus).await;
    bus.close().await;
    result
}

async fn bus_command(cmd: BusCommand, bus: &Bus) -> anyhow::Result<()> {
    match cmd {
        BusCommand::List { limit, lang } => {
            let total = bus.parked_count().await?;
            let list = bus.parked(limit).await?;
            if list.is_empty() {
                println!("{}", lang.pick("nothing is parked", "لا توجد رسائل موقوفة"));
                return Ok(());
            }
            println!(
                "{} {total}",
                lang.pick("parked messages:", "الرسائل الموقوفة:")
            );
            for p in &list {
                print_line(p, lang);
            }
            if (list.len() as u64) < u64::from(total) {
                println!(
                    "{}",
                    lang.pick(
                        "(more than shown: raise --limit)",
                        "(يوجد أكثر مما عُرض: ارفع ‎--limit)"
                    )
                );
            }
        }
        BusCommand::Show { message_id, lang } => {
            let found = bus
                .parked(usize::MAX)
                .await?
                .into_iter()
                .find(|p| p.message_id == message_id);
            let Some(p) = found else {
                anyhow::bail!(
                    "{}",
                    lang.pick(
                        "no parked message has this id (see `himaya parked list`)",
                        "لا توجد رسالة موقوفة بهذا المعرّف (انظر ‎`himaya parked list`)"
                    )
                );
            };
            print_line(&p, lang);
            println!("  {} {} B", lang.pick("body:", "المحتوى:"), p.bytes);
            println!("  {}", lang.pick("headers:", "الترويسات:"));
            for (k, v) in &p.headers {
                println!("    {k}: {v}");
            }
        }
        BusCommand::Replay {
            ids,
            all,
            from_queue,
            lang,
        } => {
            let selection = match (all, from_queue) {
                (true, _) => Selection::All,
                (false, Some(q)) => Selection::FromQueue(q),
                (false, None) => Selection::Ids(ids.clone()),
            };
            let report = bus.replay_parked(&selection).await?;
            for (id, queue) in &report.replayed {
                println!("{} {id} → {queue}", lang.pick("replayed", "أعيد إرسالها"));
            }
            for (id, why) in &report.kept {
                println!("{} {id}: {why}", lang.pick("kept", "أُبقيت"));
            }
            let mut missing = 0;
            if let Selection::Ids(ids) = &selection {
                for id in ids {
                    let seen = report.replayed.iter().any(|(r, _)| r == id)
                        || report.kept.iter().any(|(k, _)| k == id);
                    if !seen {
                        missing += 1;
                        println!("{} {id}", lang.pick("not parked:", "ليست موقوفة:"));
                    }
                }
            }
            println!(
                "{} {}, {} {}, {} {}",
                lang.pick("replayed", "أعيد إرسال"),
                report.replayed.len(),
                lang.pick("kept", "أُبقي"),
                report.kept.len(),
                lang.pick("not selected", "غير مختارة"),
                report.unselected
            );
            if !report.kept.is_empty() || missing > 0 {
                anyhow::bail!(
                    "{}",
                    lang.pick(
                        "some messages asked for were not replayed (see above)",
                        "لم يُعَد إرسال بعض الرسائل المطلوبة (انظر أعلاه)"
                    )
                );
            }
        }
    }
    Ok(())
}

fn print_line(p: &Parked, lang: Lang) {
    let when = p
        .parked_at
        .and_then(|s| chrono::DateTime::from_timestamp(i64::try_from(s).ok()?, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into());
    println!(
        "{}  {}  {} {}  {}  {}",
        p.message_id,
        if p.event_type.is_empty() {
            "-"
        } else {
            &p.event_type
        },
        lang.pick("from", "من"),
        p.from_queue.as_deref().unwrap_or("?"),
        when,
        p.reason
    );
}

async fn inbound(
    settings: &Settings,
    agency: Option<String>,
    limit: i64,
    lang: Lang,
) -> anyhow::Result<()> {
    let pool = himaya_store::connect_service(&settings.database, himaya_connect::SCHEMA)
        .await
        .context("connecting to PostgreSQL (is it running? see `database.url` in config/)")?;
    let rows: Vec<RefusedRow> = sqlx::query_as(
        "SELECT id, agency_id, route, message_id, http_status, reason, \
             to_char(parked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS\"Z\"') AS parked_at \
             FROM inbound_parked WHERE $1::text IS NULL OR agency_id = $1 \
             ORDER BY id DESC LIMIT $2",
    )
    .bind(agency.as_deref())
    .bind(limit.max(0))
    .fetch_all(&pool)
    .await
    .context("reading connectors.inbound_parked (has `himaya serve connectors` run once?)")?;
    pool.close().await;
    if rows.is_empty() {
        println!(
            "{}",
            lang.pick(
                "no refused agency messages",
                "لا توجد رسائل مرفوضة من الجهات"
            )
        );
    }
    for r in rows {
        println!(
            "#{}  {}  {}  {}  {}  {}  {}",
            r.id,
            r.parked_at,
            r.agency_id,
            r.route,
            r.message_id.as_deref().unwrap_or("-"),
            r.http_status,
            r.reason
        );
    }
    Ok(())
}

/// One row of `connectors.inbound_parked`.
#[derive(sqlx::FromRow)]
struct RefusedRow {
    id: i64,
    agency_id: String,
    route: String,
    message_id: Option<String>,
    http_status: i32,
    reason: String,
    parked_at: String,
}
