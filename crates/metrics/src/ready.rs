//! Whether a process of the hub is ready to take work: every component it runs has
//! started (its migrations run, its queues declared), and PostgreSQL and RabbitMQ are
//! reachable now. `/readyz` answers from it, the gRPC health service follows it, and
//! `himaya_ready{component}` shows it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use himaya_words::{msg, Lang};

/// What keeps a process from being ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    /// Components still starting (migrations, declarations).
    Starting(Vec<&'static str>),
    Database,
    Broker,
}

impl Down {
    /// A short name for machines (`starting`, `database`, `broker`).
    pub fn name(&self) -> &'static str {
        match self {
            Down::Starting(_) => "starting",
            Down::Database => "database",
            Down::Broker => "broker",
        }
    }

    /// What people read, in `lang`.
    pub fn say(&self, lang: Lang) -> String {
        match self {
            Down::Starting(c) => msg!("ready-starting", components = c.join(", ")).render(lang),
            Down::Database => msg!("ready-database-down").render(lang),
            Down::Broker => msg!("ready-broker-down").render(lang),
        }
    }
}

/// The readiness of one process.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The components this process runs, and whether each has started.
    components: Mutex<Vec<(&'static str, bool)>>,
    database: AtomicBool,
    broker: AtomicBool,
}

impl Readiness {
    /// Not ready: nothing started, nothing reached yet.
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// `component` runs here; not ready until [`Readiness::started`].
    pub fn expect(&self, component: &'static str) {
        let mut all = self.components.lock().unwrap_or_else(|p| p.into_inner());
        if !all.iter().any(|(c, _)| *c == component) {
            all.push((component, false));
        }
    }

    /// `component` has run its migrations and declared its queues.
    pub fn started(&self, component: &'static str) {
        let mut all = self.components.lock().unwrap_or_else(|p| p.into_inner());
        match all.iter_mut().find(|(c, _)| *c == component) {
            Some((_, s)) => *s = true,
            None => all.push((component, true)),
        }
    }

    /// PostgreSQL answered (or not) just now; whether that changed anything.
    pub fn set_database(&self, up: bool) -> bool {
        self.database.swap(up, Ordering::Relaxed) != up
    }

    /// RabbitMQ answered (or not) just now; whether that changed anything.
    pub fn set_broker(&self, up: bool) -> bool {
        self.broker.swap(up, Ordering::Relaxed) != up
    }

    /// The components this process runs, each with whether it is ready.
    pub fn components(&self) -> Vec<(&'static str, bool)> {
        let reachable =
            self.database.load(Ordering::Relaxed) && self.broker.load(Ordering::Relaxed);
        self.components
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(c, started)| (*c, *started && reachable))
            .collect()
    }

    /// Everything that keeps the process from being ready; empty when ready.
    pub fn down(&self) -> Vec<Down> {
        let mut out = Vec::new();
        let starting: Vec<&'static str> = self
            .components
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, s)| !s)
            .map(|(c, _)| *c)
            .collect();
        if !starting.is_empty() {
            // PostgreSQL and RabbitMQ are asked once every component has started: until
            // then only the start is said (a migration under way is no outage).
            out.push(Down::Starting(starting));
            return out;
        }
        if !self.database.load(Ordering::Relaxed) {
            out.push(Down::Database);
        }
        if !self.broker.load(Ordering::Relaxed) {
            out.push(Down::Broker);
        }
        out
    }

    pub fn is_ready(&self) -> bool {
        self.down().is_empty()
    }

    /// The body of `/readyz`: JSON with what is down and why, in Arabic and English.
    pub fn report(&self) -> (bool, String) {
        let down = self.down();
        let say = |lang| {
            if down.is_empty() {
                msg!("ready-ok").render(lang)
            } else {
                down.iter()
                    .map(|d| d.say(lang))
                    .collect::<Vec<_>>()
                    .join(if lang == Lang::Arabic { "؛ " } else { "; " })
            }
        };
        let names: Vec<String> = down.iter().map(|d| format!("\"{}\"", d.name())).collect();
        let body = format!(
            "{{\"ready\":{},\"down\":[{}],\"message_ar\":{},\"message_en\":{}}}\n",
            down.is_empty(),
            names.join(","),
            json_string(&say(Lang::Arabic)),
            json_string(&say(Lang::English)),
        );
        (down.is_empty(), body)
    }
}

/// A JSON string literal of `s`.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_started_and_everything_reachable() {
        let r = Readiness::new();
        r.expect("cases");
        assert!(!r.is_ready());
        assert_eq!(r.down(), vec![Down::Starting(vec!["cases"])]);
        r.started("cases");
        assert!(r.set_database(true));
        assert!(!r.set_database(true), "no change");
        r.set_broker(true);
        assert!(r.is_ready());
        assert_eq!(r.components(), vec![("cases", true)]);
        r.set_broker(false);
        let (ready, body) = r.report();
        assert!(!ready);
        assert!(body.contains("\"down\":[\"broker\"]"), "{body}");
        assert!(body.contains("RabbitMQ"), "{body}");
        assert!(body.contains("message_ar"), "{body}");
        assert_eq!(r.components(), vec![("cases", false)]);
    }
}
