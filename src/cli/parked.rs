//! `himaya parked list|show|replay|inbound`: the operator's view of what the hub could
//! not process. Bus messages wait in the parking queue with their reason until replayed;
//! items an agency sent that the connectors refused are listed from
//! `connectors.inbound_parked`. Only envelopes are shown (ids, types, queues, reasons),
//! never a body: a body holds a child's data.

use std::io::Write;

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
        /// The id `list` shows: the message id, or `pkd_…` for a message without one.
        id: String,
        #[arg(long, value_enum, default_value = "en")]
        lang: Lang,
    },
    /// Send parked messages back to the queue each came from, once the cause is fixed.
    /// Consumers are idempotent: a message already handled is not handled twice.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["ids", "id", "all", "from_queue"])))]
    Replay {
        /// The messages to replay, by the id `list` shows.
        #[arg(value_name = "ID")]
        ids: Vec<String>,
        /// A message to replay, by its id (repeatable; the same as giving the id alone).
        #[arg(long = "id", value_name = "ID")]
        id: Vec<String>,
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
    let bus = Bus::connect_links(
        himaya_bus::Link::all_from_settings(&settings.bus)?,
        Topology::new(settings.bus.prefix.clone()),
        Default::default(),
    )
    .await
    .context("connecting to RabbitMQ (is it running? see `bus.url` and `bus.urls` in config/)")?;
    let result = bus_command(cmd, &bus, &mut std::io::stdout()).await;
    bus.close().await;
    result
}

/// Runs one command on the parking queue, writing what an operator reads to `out`
/// (stdout for the command line; a buffer in tests, which check what is printed).
pub async fn bus_command<W: Write>(cmd: BusCommand, bus: &Bus, out: &mut W) -> anyhow::Result<()> {
    match cmd {
        BusCommand::List { limit, lang } => list(bus, limit, lang, out).await,
        BusCommand::Show { id, lang } => show(bus, &id, lang, out).await,
        BusCommand::Replay {
            mut ids,
            id,
            all,
            from_queue,
            lang,
        } => {
            ids.extend(id);
            let selection = match (all, from_queue) {
                (true, _) => Selection::All,
                (false, Some(q)) => Selection::FromQueue(q),
                (false, None) => Selection::Ids(ids),
            };
            replay(bus, &selection, lang, out).await
        }
    }
}

async fn list<W: Write>(bus: &Bus, limit: usize, lang: Lang, out: &mut W) -> anyhow::Result<()> {
    let total = bus.parked_count().await?;
    let list = bus.parked(limit).await?;
    if list.is_empty() {
        writeln!(
            out,
            "{}",
            lang.pick("nothing is parked", "لا توجد رسائل موقوفة")
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{} {total}",
        lang.pick("parked messages:", "الرسائل الموقوفة:")
    )?;
    for p in &list {
        print_line(p, lang, out)?;
    }
    if (list.len() as u64) < u64::from(total) {
        writeln!(
            out,
            "{}",
            lang.pick(
                "(more than shown: raise --limit)",
                "(يوجد أكثر مما عُرض: ارفع ‎--limit)"
            )
        )?;
    }
    Ok(())
}

async fn show<W: Write>(bus: &Bus, id: &str, lang: Lang, out: &mut W) -> anyhow::Result<()> {
    let found = bus
        .parked(usize::MAX)
        .await?
        .into_iter()
        .find(|p| p.id == id);
    let Some(p) = found else {
        anyhow::bail!(
            "{}",
            lang.pick(
                "no parked message has this id (see `himaya parked list`)",
                "لا توجد رسالة موقوفة بهذا المعرّف (انظر ‎`himaya parked list`)"
            )
        );
    };
    print_line(&p, lang, out)?;
    writeln!(
        out,
        "  {} {}",
        lang.pick("message id:", "معرّف الرسالة:"),
        p.message_id
    )?;
    writeln!(out, "  {} {} B", lang.pick("body:", "المحتوى:"), p.bytes)?;
    writeln!(out, "  {}", lang.pick("headers:", "الترويسات:"))?;
    for (k, v) in &p.headers {
        writeln!(out, "    {k}: {v}")?;
    }
    Ok(())
}

async fn replay<W: Write>(
    bus: &Bus,
    selection: &Selection,
    lang: Lang,
    out: &mut W,
) -> anyhow::Result<()> {
    let report = bus.replay_parked(selection).await?;
    for (id, queue) in &report.replayed {
        writeln!(
            out,
            "{} {id} → {queue}",
            lang.pick("replayed", "أعيد إرسالها")
        )?;
    }
    for (id, why) in &report.kept {
        writeln!(out, "{} {id}: {why}", lang.pick("kept", "أُبقيت"))?;
    }
    let mut missing = 0;
    if let Selection::Ids(ids) = selection {
        for id in ids {
            let seen = report.replayed.iter().any(|(r, _)| r == id)
                || report.kept.iter().any(|(k, _)| k == id);
            if !seen {
                missing += 1;
                writeln!(out, "{} {id}", lang.pick("not parked:", "ليست موقوفة:"))?;
            }
        }
    }
    writeln!(
        out,
        "{} {}, {} {}, {} {}",
        lang.pick("replayed", "أعيد إرسال"),
        report.replayed.len(),
        lang.pick("kept", "أُبقي"),
        report.kept.len(),
        lang.pick("not selected", "غير مختارة"),
        report.unselected
    )?;
    if !report.kept.is_empty() || missing > 0 {
        anyhow::bail!(
            "{}",
            lang.pick(
                "some messages asked for were not replayed (see above)",
                "لم يُعَد إرسال بعض الرسائل المطلوبة (انظر أعلاه)"
            )
        );
    }
    Ok(())
}

fn print_line<W: Write>(p: &Parked, lang: Lang, out: &mut W) -> std::io::Result<()> {
    let when = p
        .parked_at
        .and_then(|s| chrono::DateTime::from_timestamp(i64::try_from(s).ok()?, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into());
    writeln!(
        out,
        "{}  {}  {} {}  {}  {}",
        p.id,
        if p.event_type.is_empty() {
            "-"
        } else {
            &p.event_type
        },
        lang.pick("from", "من"),
        p.from_queue.as_deref().unwrap_or("?"),
        when,
        p.reason
    )
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
