//! `cargo run --example cluster_load`: the steady load and the checker of `scripts/cluster`.
//!
//! It is the simulated health agency (the tests' `FakeAgency`: a real HTTP server that
//! records every request and answers 201) and the school sending referrals, open loop:
//! submission `i` is due at t0 + i/rate whatever became of the earlier ones. A submission
//! the hub does not acknowledge (a replica killed, the database failing over) is sent
//! again with the same submission id, to the other cases replica, every 250 ms, until
//! acknowledged or `--give-up-secs` passed: the hub's intake is idempotent on it, as the
//! CLI relies on. Meanwhile it samples, through the RabbitMQ management API of whichever
//! node answers, how many consumers the hub's queues have.
//!
//! `scripts/cluster` writes what it does to the cluster into `--events` (one line each:
//! epoch milliseconds, a name, free words). After the send window the checker drains
//! (every acknowledged referral at the agency, no outbox row unsent), then reports:
//! offered, acknowledged, delivered, lost (acknowledged, never delivered), duplicated
//! effects (a submission that became two referrals, or a referral the agency received that
//! no acknowledged submission made), deliveries repeated under the same `Idempotency-Key`
//! (absorbed by the agency: at-least-once), parked and unrouted messages, and for each
//! event: how long until writes were acknowledged again and until the queues had their
//! consumers back. It exits 1 when anything was lost, duplicated or parked.

#[path = "../tests/it/helpers/mod.rs"]
mod helpers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use helpers::{as_agency, http, school_request, FakeAgency};
use himaya_proto::v1::intake_client::IntakeClient;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser, Debug)]
struct Args {
    /// Where the simulated agency listens (the hub's `agencies.health-cairo.endpoint`).
    #[arg(long)]
    agency_listen: SocketAddr,
    /// The cases replicas' gRPC addresses (development identity), comma-separated.
    #[arg(long, value_delimiter = ',')]
    hub: Vec<SocketAddr>,
    /// The RabbitMQ management APIs, comma-separated (`http://127.0.0.1:15681`).
    #[arg(long, value_delimiter = ',')]
    mgmt: Vec<String>,
    /// The hub's database, through the address the hub uses.
    #[arg(long)]
    database_url: String,
    /// Referrals a second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// The send window, seconds.
    #[arg(long, default_value_t = 180)]
    secs: u64,
    /// The longest wait for the backlog after the window, seconds.
    #[arg(long, default_value_t = 180)]
    drain_secs: u64,
    /// How long one submission is retried before it counts as refused.
    #[arg(long, default_value_t = 120)]
    give_up_secs: u64,
    /// The events file `scripts/cluster` appends to.
    #[arg(long)]
    events: PathBuf,
    /// Written once the agency listens and the load has started.
    #[arg(long)]
    started: PathBuf,
    /// The hub processes' logs (`<component>-<replica>.log`): when each reconnected.
    #[arg(long)]
    logs: Option<PathBuf>,
}

/// When a hub process made a broker connection (its log's "connected to the broker"
/// lines, which each process writes when a connection is made to one of several nodes),
/// epoch ms, by log file.
fn reconnections(dir: &std::path::Path) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(process) = name.strip_suffix(".log") else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in text
            .lines()
            .filter(|l| l.contains("connected to the broker"))
        {
            // The line starts with its RFC 3339 time, perhaps inside colour codes.
            let plain: String = line.chars().filter(|c| !c.is_control()).collect();
            let start = plain.find("20").unwrap_or(0);
            let stamp = plain[start..].split_whitespace().next().unwrap_or("");
            let stamp = stamp.split('[').next().unwrap_or(stamp);
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(stamp) {
                out.push((t.timestamp_millis(), process.to_owned()));
            }
        }
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One scheduled submission and what became of it.
struct Outcome {
    scheduled_ms: i64,
    /// Epoch ms of the answer that acknowledged it, and its referral id.
    acked: Option<(i64, String)>,
    /// Referral ids of every acknowledgement (a retry answers the same one, or a duplicate).
    referral_ids: HashSet<String>,
    /// Failed attempts, by gRPC code.
    failures: BTreeMap<String, usize>,
    /// When each failed attempt was answered (epoch ms), with its code.
    failed_at: Vec<(i64, String)>,
}

async fn submit(channels: Arc<Vec<Channel>>, i: u64, give_up: Duration) -> Outcome {
    let scheduled_ms = now_ms();
    let started = Instant::now();
    let id = format!("cluster-{i}");
    let mut out = Outcome {
        scheduled_ms,
        acked: None,
        referral_ids: HashSet::new(),
        failures: BTreeMap::new(),
        failed_at: Vec::new(),
    };
    let mut attempt = 0usize;
    while started.elapsed() < give_up {
        let replica = (i as usize + attempt) % channels.len();
        let ch = channels[replica].clone();
        let mut r = as_agency("school-cairo-alnour", school_request(&id));
        r.set_timeout(Duration::from_secs(10));
        match IntakeClient::new(ch).submit_school_referral(r).await {
            Ok(a) => {
                let a = a.into_inner();
                out.referral_ids.insert(a.referral_id.clone());
                out.acked = Some((now_ms(), a.referral_id));
                return out;
            }
            Err(s) => {
                *out.failures.entry(format!("{:?}", s.code())).or_default() += 1;
                // Which replica answered so: a killed one, or the database behind both.
                let letter = (b'a' + replica as u8) as char;
                out.failed_at
                    .push((now_ms(), format!("{:?} from cases-{letter}", s.code())));
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    out
}

/// The hub's queues' consumers, summed, as one node's management API lists them (the
/// parking and unrouted queues have none by design).
async fn consumers(
    http: &reqwest::Client,
    mgmt: &[String],
) -> Option<(i64, Vec<serde_json::Value>)> {
    for base in mgmt {
        let Ok(r) = http
            .get(format!("{base}/api/queues/%2F"))
            .basic_auth("guest", Some("guest"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        else {
            continue;
        };
        let Ok(list) = r.json::<Vec<serde_json::Value>>().await else {
            continue;
        };
        let total = list
            .iter()
            .filter(|q| !q["name"].as_str().unwrap_or("").starts_with("himaya."))
            .map(|q| q["consumers"].as_i64().unwrap_or(0))
            .sum();
        return Some((total, list));
    }
    None
}

struct Event {
    at_ms: i64,
    name: String,
    words: String,
}

fn read_events(path: &PathBuf) -> Vec<Event> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            let at_ms = parts.next()?.parse().ok()?;
            let name = parts.next()?.to_owned();
            let words = parts.next().unwrap_or("").to_owned();
            Some(Event { at_ms, name, words })
        })
        .collect()
}

fn secs(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.hub.is_empty() || args.rate <= 0.0 {
        eprintln!("--hub needs at least one address and --rate must be above 0");
        return std::process::ExitCode::from(2);
    }
    let listener = match tokio::net::TcpListener::bind(args.agency_listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "the simulated agency cannot listen on {}: {e}",
                args.agency_listen
            );
            return std::process::ExitCode::from(2);
        }
    };
    let agency = FakeAgency::default();
    agency.clone().serve(listener);
    let channels: Arc<Vec<Channel>> = Arc::new(
        args.hub
            .iter()
            .map(|a| {
                Endpoint::from_shared(format!("http://{a}"))
                    .map(|e| e.connect_timeout(Duration::from_secs(2)).connect_lazy())
            })
            .collect::<Result<_, _>>()
            .unwrap_or_default(),
    );
    let http = http();

    // The consumers, sampled every 250 ms until the checker is done.
    let samples: Arc<Mutex<Vec<(i64, i64)>>> = Arc::default();
    let stop_sampling = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let (samples, http, mgmt, stop) = (
            samples.clone(),
            http.clone(),
            args.mgmt.clone(),
            stop_sampling.clone(),
        );
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Some((total, _)) = consumers(&http, &mgmt).await {
                    samples.lock().unwrap().push((now_ms(), total));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // The quorum queues as the cluster placed them, before anything is killed.
    if let Some((total, list)) = consumers(&http, &args.mgmt).await {
        println!("queues of the hub (consumers in all: {total}):");
        for q in &list {
            let members = q["members"].as_array().map(|m| m.len()).unwrap_or(0);
            println!(
                "  {:<40} {:<8} leader {:<24} members {} consumers {}",
                q["name"].as_str().unwrap_or("?"),
                q["type"].as_str().unwrap_or("?"),
                q["leader"].as_str().or(q["node"].as_str()).unwrap_or("?"),
                members,
                q["consumers"].as_i64().unwrap_or(0)
            );
        }
    }

    let t0 = Instant::now() + Duration::from_millis(100);
    let t0_ms = now_ms() + 100;
    let window = Duration::from_secs(args.secs);
    let give_up = Duration::from_secs(args.give_up_secs);
    let _ = std::fs::write(&args.started, format!("{t0_ms}\n"));
    println!(
        "offering {} referrals/s for {} s to {} cases replicas",
        args.rate,
        args.secs,
        channels.len()
    );
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0u64.. {
        let due = t0 + Duration::from_secs_f64(i as f64 / args.rate);
        if due >= t0 + window {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        tasks.spawn(submit(channels.clone(), i, give_up));
    }
    let window_end_ms = now_ms();
    let mut outcomes = Vec::new();
    while let Some(o) = tasks.join_next().await {
        if let Ok(o) = o {
            outcomes.push(o);
        }
    }
    outcomes.sort_by_key(|o| o.scheduled_ms);

    // Drain: every acknowledged referral at the agency and no outbox row unsent.
    let acked: HashSet<String> = outcomes
        .iter()
        .filter_map(|o| o.acked.as_ref().map(|(_, r)| r.clone()))
        .collect();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(&args.database_url);
    let unsent_sql = "SELECT (SELECT count(*) FROM cases.outbox WHERE sent_at IS NULL) \
        + (SELECT count(*) FROM router.outbox WHERE sent_at IS NULL) \
        + (SELECT count(*) FROM connectors.outbox WHERE sent_at IS NULL)";
    let arrived = |agency: &FakeAgency| -> HashSet<String> {
        agency
            .requests()
            .iter()
            .filter_map(|s| s.body["referral_id"].as_str().map(str::to_owned))
            .collect()
    };
    let drain_started = Instant::now();
    let mut unsent: i64 = -1;
    let drained = loop {
        let got = arrived(&agency);
        if acked.iter().all(|r| got.contains(r)) {
            unsent = match &pool {
                Ok(p) => sqlx::query_scalar::<_, Option<i64>>(unsent_sql)
                    .fetch_one(p)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(-1),
                Err(_) => -1,
            };
            if unsent == 0 {
                break true;
            }
        }
        if drain_started.elapsed() > Duration::from_secs(args.drain_secs) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Late redeliveries, if any, still arrive and are counted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_sampling.cancel();
    let _ = sampler.await;

    // What the agency saw.
    let requests = agency.requests();
    let mut by_key: HashMap<String, (i64, usize)> = HashMap::new();
    let mut first_arrival: HashMap<String, Instant> = HashMap::new();
    let mut referral_of_key: HashMap<String, String> = HashMap::new();
    for s in &requests {
        let key = s.idempotency_key.clone().unwrap_or_default();
        let referral = s.body["referral_id"].as_str().unwrap_or("").to_owned();
        by_key.entry(key.clone()).or_insert((0, 0)).1 += 1;
        first_arrival.entry(referral.clone()).or_insert(s.at);
        referral_of_key.insert(key, referral);
    }
    let repeated: usize = by_key.values().map(|(_, n)| n - 1).sum();
    // Two keys for one referral would be two effects of one referral at the agency.
    let mut keys_per_referral: HashMap<&str, usize> = HashMap::new();
    for r in referral_of_key.values() {
        *keys_per_referral.entry(r.as_str()).or_default() += 1;
    }
    let twice_at_agency = keys_per_referral.values().filter(|n| **n > 1).count();
    let unexpected = first_arrival.keys().filter(|r| !acked.contains(*r)).count();
    let twice_acked = outcomes.iter().filter(|o| o.referral_ids.len() > 1).count();
    let delivered = acked
        .iter()
        .filter(|r| first_arrival.contains_key(*r))
        .count();
    let lost = acked.len() - delivered;
    let refused = outcomes.iter().filter(|o| o.acked.is_none()).count();
    let retried = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        for (c, n) in &o.failures {
            *failures.entry(c.clone()).or_default() += n;
        }
    }

    // Latency from the due time to the agency (the clocks: epoch ms for the schedule,
    // the agency's arrival instants mapped to epoch ms through one pair of readings).
    let (now_i, now_e) = (Instant::now(), now_ms());
    let epoch_of = |at: Instant| now_e - now_i.saturating_duration_since(at).as_millis() as i64;
    let mut latency: Vec<(i64, i64)> = outcomes
        .iter()
        .filter_map(|o| {
            let (_, r) = o.acked.as_ref()?;
            let at = first_arrival.get(r)?;
            Some((o.scheduled_ms, epoch_of(*at) - o.scheduled_ms))
        })
        .collect();
    latency.sort_by_key(|(s, _)| *s);
    let mut lat_sorted: Vec<i64> = latency.iter().map(|(_, l)| *l).collect();
    lat_sorted.sort();

    // Parked and unrouted, from whichever node answers.
    let mut parked = -1i64;
    let mut unrouted = -1i64;
    if let Some((_, list)) = consumers(&http, &args.mgmt).await {
        for q in &list {
            match q["name"].as_str() {
                Some("himaya.parking") => parked = q["messages"].as_i64().unwrap_or(-1),
                Some("himaya.unrouted") => unrouted = q["messages"].as_i64().unwrap_or(-1),
                _ => {}
            }
        }
    }

    // What the unrouted queue holds, by event type (peeked, requeued, never consumed).
    let mut unrouted_types: BTreeMap<String, usize> = BTreeMap::new();
    if unrouted > 0 {
        for base in &args.mgmt {
            let peek = http
                .post(format!("{base}/api/queues/%2F/himaya.unrouted/get"))
                .basic_auth("guest", Some("guest"))
                .json(&serde_json::json!({"count": 100, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 1}))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            let Ok(Ok(list)) = (match peek {
                Ok(r) => Ok(r.json::<Vec<serde_json::Value>>().await),
                Err(e) => Err(e),
            }) else {
                continue;
            };
            for m in list {
                let t = m["properties"]["type"].as_str().unwrap_or("?");
                let key = m["routing_key"].as_str().unwrap_or("?");
                *unrouted_types.entry(format!("{t} ({key})")).or_default() += 1;
            }
            break;
        }
    }

    println!();
    println!(
        "== cluster run: {} s at {} referrals/s ==",
        args.secs, args.rate
    );
    println!("offered (submissions due)            {}", outcomes.len());
    println!("acknowledged by the hub              {}", acked.len());
    println!("  of which after retries             {retried}");
    println!("  never acknowledged (gave up)       {refused}");
    println!("failed attempts, by gRPC code        {failures:?}");
    println!("delivered at the agency              {delivered}");
    println!("LOST (acknowledged, not delivered)   {lost}");
    println!(
        "DUPLICATED effects                   {} (two referrals for one submission: {twice_acked}; \
         a referral under two keys: {twice_at_agency}; unknown referrals at the agency: {unexpected})",
        twice_acked + twice_at_agency + unexpected
    );
    println!("deliveries repeated, same key        {repeated} (absorbed by Idempotency-Key)");
    println!("PARKED (himaya.parking)              {parked}");
    println!("unrouted (himaya.unrouted)           {unrouted} {unrouted_types:?}");
    println!(
        "outbox rows unsent after the drain   {unsent} (drained: {}, in {})",
        drained,
        secs(drain_started.elapsed().as_millis() as i64)
    );
    println!(
        "due → at the agency                  p50 {} p99 {} max {}",
        secs(percentile(&lat_sorted, 0.5)),
        secs(percentile(&lat_sorted, 0.99)),
        secs(*lat_sorted.last().unwrap_or(&0))
    );

    let acks: Vec<i64> = {
        let mut v: Vec<i64> = outcomes
            .iter()
            .filter_map(|o| o.acked.as_ref().map(|(t, _)| *t))
            .collect();
        v.sort();
        v
    };
    let samples = samples.lock().unwrap().clone();
    let events = read_events(&args.events);
    println!();
    println!("events (seconds from the start of the load):");
    for (k, e) in events.iter().enumerate() {
        let at = e.at_ms;
        let next = events.get(k + 1).map(|n| n.at_ms).unwrap_or(i64::MAX);
        // The window a figure looks at: up to 30 s, ending at the next event that is not
        // part of the same step (the failover's three events come within a second).
        let until = events[k + 1..]
            .iter()
            .map(|n| n.at_ms)
            .find(|t| *t > at + 5_000)
            .unwrap_or(i64::MAX)
            .min(at + 30_000)
            .min(window_end_ms);
        let mut line = format!(
            "  {:>6.1}  {:<18} {}",
            (at - t0_ms) as f64 / 1000.0,
            e.name,
            e.words
        );
        // Writes: the first acknowledgement of a submission due after the event (one in
        // flight across it may have been committed before), the longest pause between
        // acknowledgements in the 30 s after it, and the attempts that failed meanwhile.
        let first_ack = outcomes
            .iter()
            .filter(|o| o.scheduled_ms > at)
            .filter_map(|o| o.acked.as_ref().map(|(t, _)| *t))
            .min();
        let mut longest = 0;
        let mut prev = at;
        for t in acks.iter().filter(|t| **t > at && **t <= until) {
            longest = longest.max(t - prev);
            prev = *t;
        }
        let mut failed: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &outcomes {
            for (t, c) in &o.failed_at {
                if *t > at && *t <= until {
                    *failed.entry(c.as_str()).or_default() += 1;
                }
            }
        }
        if let Some(t) = first_ack {
            line += &format!(
                " | first write due after it acknowledged after {}; over the next {}: longest pause between acknowledgements {}, failed attempts {:?}",
                secs(t - at),
                secs(until - at),
                secs(longest),
                failed
            );
        }
        // Consumers: the count just before, the lowest after, and when it was back.
        let before = samples.iter().rfind(|(t, _)| *t <= at).map(|(_, n)| *n);
        if let Some(before) = before {
            let after: Vec<&(i64, i64)> = samples
                .iter()
                .filter(|(t, _)| *t > at && *t <= next)
                .collect();
            let lowest = after.iter().map(|(_, n)| *n).min().unwrap_or(before);
            let back = after
                .iter()
                .skip_while(|(_, n)| *n >= before)
                .find(|(_, n)| *n >= before)
                .map(|(t, _)| t - at);
            line += &format!(
                " | consumers as the management API counts them {before} → lowest {lowest}"
            );
            match (lowest < before, back) {
                (true, Some(b)) => line += &format!(", back to {before} after {}", secs(b)),
                (true, None) => line += &format!(", not back to {before} before the next event"),
                _ => {}
            }
        }
        // The hub's side: processes that made a new broker connection after the event
        // (their node died), and when the last of them had one.
        if let Some(dir) = &args.logs {
            let after: Vec<(i64, String)> = reconnections(dir)
                .into_iter()
                .filter(|(t, _)| *t > at && *t <= until)
                .collect();
            if let Some(last) = after.iter().map(|(t, _)| *t).max() {
                let processes: HashSet<&str> = after.iter().map(|(_, p)| p.as_str()).collect();
                line += &format!(
                    " | {} hub processes reconnected to another node, the last after {}",
                    processes.len(),
                    secs(last - at)
                );
            }
        }
        // Deliveries due around it: the slowest.
        let slowest = latency
            .iter()
            .filter(|(s, _)| *s >= at - 5_000 && *s < next)
            .map(|(_, l)| *l)
            .max();
        if let Some(l) = slowest {
            line += &format!(" | slowest delivery due after it {}", secs(l));
        }
        println!("{line}");
    }
    let ok = lost == 0 && twice_acked + twice_at_agency + unexpected == 0 && parked == 0 && drained;
    println!();
    println!(
        "{}",
        if ok {
            "RESULT: nothing lost, nothing duplicated, nothing parked"
        } else {
            "RESULT: FAILED (see the counts above)"
        }
    );
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
