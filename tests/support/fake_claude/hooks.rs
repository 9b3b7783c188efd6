//! The fake CLI's hooks, like the real one's: hook settings come from
//! `--settings <file-or-json>`, `$HOME/.claude/settings.json` and
//! `<cwd>/.claude/settings.json`, all of them added together; `"type":
//! "http"` hooks POST the event JSON (header values may name variables listed
//! in `allowedEnvVars`, as `$VAR`), `"type": "command"` hooks run `sh -c` with
//! the JSON on stdin. Events go out one at a time, in order, from one thread,
//! so the program never waits on them.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

enum Action {
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
    Command(String),
}

struct Hook {
    event: String,
    matcher: String,
    action: Action,
}

/// Where the fake's events go.
pub struct Hooks {
    tx: Option<mpsc::Sender<(Vec<Action>, String)>>,
    hooks: Vec<Hook>,
    base: Value,
}

fn settings_from(arg: &str) -> Option<Value> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg).ok()?
    };
    serde_json::from_str(&text).ok()
}

fn expand(value: &str, allowed: &[String]) -> String {
    let mut out = value.to_string();
    for name in allowed {
        let v = std::env::var(name).unwrap_or_default();
        out = out
            .replace(&format!("${{{name}}}"), &v)
            .replace(&format!("${name}"), &v);
    }
    out
}

fn parse(settings: &Value, into: &mut Vec<Hook>) {
    let Some(events) = settings["hooks"].as_object() else {
        return;
    };
    for (event, groups) in events {
        for g in groups.as_array().into_iter().flatten() {
            let matcher = g["matcher"].as_str().unwrap_or("").to_string();
            for h in g["hooks"].as_array().into_iter().flatten() {
                let action = match h["type"].as_str() {
                    Some("http") => {
                        let allowed: Vec<String> = h["allowedEnvVars"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect();
                        let headers = h["headers"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), expand(v.as_str().unwrap_or(""), &allowed)))
                            .collect();
                        Action::Http {
                            url: h["url"].as_str().unwrap_or("").to_string(),
                            headers,
                        }
                    }
                    Some("command") => {
                        Action::Command(h["command"].as_str().unwrap_or("").to_string())
                    }
                    _ => continue,
                };
                into.push(Hook {
                    event: event.clone(),
                    matcher: matcher.clone(),
                    action,
                });
            }
        }
    }
}

impl Hooks {
    /// The hooks of every settings source; `base` fields go in every event.
    pub fn load(settings_arg: Option<&str>, home: &str, cwd: &str, base: Value) -> Self {
        let mut hooks = vec![];
        for path in [
            Path::new(home).join(".claude/settings.json"),
            Path::new(cwd).join(".claude/settings.json"),
        ] {
            if let Some(s) = path.to_str().and_then(settings_from) {
                parse(&s, &mut hooks);
            }
        }
        if let Some(s) = settings_arg.and_then(settings_from) {
            parse(&s, &mut hooks);
        }
        let tx = (!hooks.is_empty()).then(|| {
            let (tx, rx) = mpsc::channel::<(Vec<Action>, String)>();
            std::thread::spawn(move || {
                for (actions, body) in rx {
                    for a in actions {
                        run(&a, &body);
                    }
                }
            });
            tx
        });
        Self { tx, hooks, base }
    }

    /// Fires `event` with `fields` (and the base fields) to every matching hook.
    pub fn fire(&self, event: &str, fields: Value) {
        let Some(tx) = &self.tx else { return };
        let tool = fields["tool_name"].as_str().unwrap_or("");
        let actions: Vec<Action> = self
            .hooks
            .iter()
            .filter(|h| h.event == event)
            .filter(|h| h.matcher.is_empty() || h.matcher == "*" || h.matcher == tool)
            .map(|h| match &h.action {
                Action::Http { url, headers } => Action::Http {
                    url: url.clone(),
                    headers: headers.clone(),
                },
                Action::Command(c) => Action::Command(c.clone()),
            })
            .collect();
        if actions.is_empty() {
            return;
        }
        let mut body = self.base.clone();
        if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
            for (k, v) in f {
                b.insert(k.clone(), v.clone());
            }
            b.insert("hook_event_name".into(), json!(event));
        }
        let _ = tx.send((actions, body.to_string()));
    }
}

fn run(action: &Action, body: &str) {
    match action {
        Action::Http { url, headers } => {
            let _ = post(url, headers, body);
        }
        Action::Command(cmd) => {
            if let Ok(mut child) = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
            {
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(body.as_bytes());
                }
                let _ = child.wait();
            }
        }
    }
}

/// A plain HTTP/1.1 POST to an `http://host:port/path` URL.
fn post(url: &str, headers: &[(String, String)], body: &str) -> std::io::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// hooks"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut answer = vec![];
    let _ = s.read_to_end(&mut answer);
    Ok(())
}
