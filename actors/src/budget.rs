//! Token and cost budgets per session, task and project, and the ledger
//! that adds up what each turn used.
//!
//! Each answered turn is charged to its session, its task and its project
//! (cost from the turn's usage and the price table). Crossing `warn_at` (80 %
//! by default) of a budget raises a notice once; reaching 100 % stops
//! delivery: the session's next message fails with [`Failure::Budget`], and,
//! when the budget says so, the session is stopped. The check lives in one
//! place, the delivery path.

use crate::error::HerdError;
use crate::usage::Usage;
use crate::waiting::Failure;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;

/// Prices of one model, in US dollars per million tokens.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Price {
    /// Input tokens (not from the cache).
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Input tokens written to the cache.
    pub cache_write: f64,
    /// Input tokens read from the cache.
    pub cache_read: f64,
}

impl Price {
    /// What `u` costs at these prices.
    pub fn cost(&self, u: &Usage) -> f64 {
        (u.input_tokens as f64 * self.input
            + u.output_tokens as f64 * self.output
            + u.cache_creation_input_tokens as f64 * self.cache_write
            + u.cache_read_input_tokens as f64 * self.cache_read)
            / 1_000_000.0
    }
}

/// The price table, by model name. A model is priced by its own entry, else
/// by the longest entry it starts with (`claude-sonnet-4` prices
/// `claude-sonnet-4-20250514`); an unknown model costs nothing.
pub type Prices = BTreeMap<String, Price>;

/// The price of `model` in `prices`.
pub fn price_of<'a>(prices: &'a Prices, model: Option<&str>) -> Option<&'a Price> {
    let model = model?;
    prices.get(model).or_else(|| {
        prices
            .iter()
            .filter(|(k, _)| model.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, p)| p)
    })
}

/// Tokens counted against a budget: every token of the turn (input, output,
/// cache writes and cache reads).
pub fn tokens_of(u: &Usage) -> u64 {
    u.input_tokens + u.output_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens
}

/// A budget: a token limit, a cost limit, or both.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Tokens allowed (see [`tokens_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// US dollars allowed (from the price table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Stop the session when the budget is spent (else only its deliveries stop).
    #[serde(default)]
    pub stop_session: bool,
}

impl Budget {
    /// Checks the limits; the error names `field` and the bad value.
    pub fn validate(&self, field: &str) -> Result<(), HerdError> {
        if self.tokens.is_none() && self.cost_usd.is_none() {
            return Err(HerdError::invalid(
                field,
                "a budget needs tokens, cost_usd or both",
            ));
        }
        if self.tokens == Some(0) {
            return Err(HerdError::invalid(
                format!("{field}.tokens"),
                "0: must be at least 1",
            ));
        }
        if let Some(c) = self.cost_usd {
            if !c.is_finite() || c <= 0.0 {
                return Err(HerdError::invalid(
                    format!("{field}.cost_usd"),
                    format!("{c}: must be a positive number of dollars"),
                ));
            }
        }
        Ok(())
    }
}

/// `[budgets]`: defaults and named budgets for tasks and projects.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// The fraction of a budget at which a warning notice is raised.
    pub warn_at: f64,
    /// Every session's budget, unless its spec gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<Budget>,
    /// Every task's budget, unless `tasks` names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Budget>,
    /// Every project's budget, unless `projects` names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<Budget>,
    /// Budgets of named tasks.
    pub tasks: BTreeMap<String, Budget>,
    /// Budgets of named projects.
    pub projects: BTreeMap<String, Budget>,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            warn_at: 0.8,
            session: None,
            task: None,
            project: None,
            tasks: BTreeMap::new(),
            projects: BTreeMap::new(),
        }
    }
}

impl BudgetConfig {
    /// Checks every budget; the error names its key.
    pub fn validate(&self) -> Result<(), HerdError> {
        if !(self.warn_at > 0.0 && self.warn_at < 1.0) {
            return Err(HerdError::invalid(
                "budgets.warn_at",
                format!("{}: must be between 0 and 1", self.warn_at),
            ));
        }
        let named = [("session", &self.session), ("task", &self.task)]
            .into_iter()
            .chain([("project", &self.project)]);
        for (k, b) in named {
            if let Some(b) = b {
                b.validate(&format!("budgets.{k}"))?;
            }
        }
        for (k, b) in &self.tasks {
            b.validate(&format!("budgets.tasks.{k}"))?;
        }
        for (k, b) in &self.projects {
            b.validate(&format!("budgets.projects.{k}"))?;
        }
        Ok(())
    }

    fn budget(&self, scope: &Scope, own: Option<&Budget>) -> Option<Budget> {
        match scope {
            Scope::Session { .. } => own.or(self.session.as_ref()).cloned(),
            Scope::Task { task } => self.tasks.get(task).or(self.task.as_ref()).cloned(),
            Scope::Project { project } => self
                .projects
                .get(project)
                .or(self.project.as_ref())
                .cloned(),
        }
    }
}

/// What a budget covers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Scope {
    /// One session.
    Session {
        /// Its id.
        session: Uuid,
    },
    /// Every session of a task.
    Task {
        /// The task id.
        task: String,
    },
    /// Every session of a project.
    Project {
        /// The project id.
        project: String,
    },
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session { session } => write!(f, "session {session}"),
            Self::Task { task } => write!(f, "task {task:?}"),
            Self::Project { project } => write!(f, "project {project:?}"),
        }
    }
}

/// What a budget limits.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Tokens.
    Tokens,
    /// US dollars.
    Usd,
}

/// Tokens and dollars spent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    /// Tokens (see [`tokens_of`]).
    pub tokens: u64,
    /// US dollars.
    pub cost_usd: f64,
}

/// One scope's spend against its budget.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetStatus {
    /// What is covered.
    #[serde(flatten)]
    pub scope: Scope,
    /// Spent so far.
    pub spent: Spend,
    /// The budget, if one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// A budget crossed a threshold.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetCrossing {
    /// What is covered.
    #[serde(flatten)]
    pub scope: Scope,
    /// What is limited.
    pub unit: Unit,
    /// Spent so far.
    pub used: f64,
    /// The limit.
    pub limit: f64,
    /// True at 100 % (delivery stops), false at the warning threshold.
    pub exceeded: bool,
}

impl fmt::Display for BudgetCrossing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = if self.limit > 0.0 {
            self.used / self.limit * 100.0
        } else {
            100.0
        };
        let (used, limit) = match self.unit {
            Unit::Tokens => (format!("{} tokens", self.used), format!("{}", self.limit)),
            Unit::Usd => (format!("${:.4}", self.used), format!("${:.4}", self.limit)),
        };
        let what = if self.exceeded {
            "spent"
        } else {
            "nearly spent"
        };
        write!(
            f,
            "budget of {} {what}: {used} of {limit} ({pct:.0}%)",
            self.scope
        )
    }
}

/// Who a turn is charged to.
#[derive(Debug, Clone)]
pub(crate) struct Payer {
    pub(crate) session: Uuid,
    pub(crate) task: Option<String>,
    pub(crate) project: Option<String>,
    /// The session's own budget (its spec's), over the configured default.
    pub(crate) own: Option<Budget>,
}

impl Payer {
    /// The payer of a session's turns.
    pub(crate) fn of(info: &crate::info::SessionInfo, spec: &crate::spec::SessionSpec) -> Self {
        Self {
            session: info.id,
            task: info.task_id.clone(),
            project: info.project_id.clone(),
            own: spec.budget.clone(),
        }
    }

    fn scopes(&self) -> Vec<Scope> {
        let mut v = vec![Scope::Session {
            session: self.session,
        }];
        if let Some(t) = &self.task {
            v.push(Scope::Task { task: t.clone() });
        }
        if let Some(p) = &self.project {
            v.push(Scope::Project { project: p.clone() });
        }
        v
    }
}

#[derive(Default)]
struct Book {
    spent: HashMap<Scope, Spend>,
    /// Crossings already reported: (scope, unit, exceeded).
    reported: HashSet<(Scope, Unit, bool)>,
}

/// The fleet's ledger, shared by every session of a registry.
#[derive(Clone)]
pub(crate) struct Ledger {
    cfg: Arc<BudgetConfig>,
    prices: Arc<Prices>,
    book: Arc<Mutex<Book>>,
}

impl Ledger {
    pub(crate) fn new(cfg: BudgetConfig, prices: Prices) -> Self {
        Self {
            cfg: Arc::new(cfg),
            prices: Arc::new(prices),
            book: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `u` costs.
    pub(crate) fn cost(&self, u: &Usage) -> f64 {
        price_of(&self.prices, u.model.as_deref()).map_or(0.0, |p| p.cost(u))
    }

    /// Adds what a session spent before this ledger existed (a restored
    /// session); reports nothing.
    pub(crate) fn seed(&self, payer: &Payer, spend: &Spend) {
        let mut book = self.lock();
        for s in payer.scopes() {
            let e = book.spent.entry(s).or_default();
            e.tokens += spend.tokens;
            e.cost_usd += spend.cost_usd;
        }
    }

    /// Charges one turn; returns its cost and the thresholds it crossed
    /// (each reported once).
    pub(crate) fn charge(&self, payer: &Payer, u: &Usage) -> (f64, Vec<BudgetCrossing>) {
        let cost = self.cost(u);
        let tokens = tokens_of(u);
        let mut book = self.lock();
        let mut crossed = vec![];
        for scope in payer.scopes() {
            let e = book.spent.entry(scope.clone()).or_default();
            e.tokens += tokens;
            e.cost_usd += cost;
            let spent = e.clone();
            let Some(b) = self.cfg.budget(&scope, payer.own.as_ref()) else {
                continue;
            };
            for c in crossings(&scope, &spent, &b, self.cfg.warn_at) {
                if book.reported.insert((scope.clone(), c.unit, c.exceeded)) {
                    crossed.push(c);
                }
            }
        }
        (cost, crossed)
    }

    /// The first spent budget of this payer, if any: the failure its next
    /// message fails with, and whether the session should stop.
    pub(crate) fn check(&self, payer: &Payer) -> Option<(Failure, bool)> {
        let book = self.lock();
        payer.scopes().into_iter().find_map(|scope| {
            let b = self.cfg.budget(&scope, payer.own.as_ref())?;
            let spent = book.spent.get(&scope).cloned().unwrap_or_default();
            let c = crossings(&scope, &spent, &b, self.cfg.warn_at)
                .into_iter()
                .find(|c| c.exceeded)?;
            Some((
                Failure::Budget {
                    message: c.to_string(),
                    scope: c.scope,
                    unit: c.unit,
                    used: c.used,
                    limit: c.limit,
                },
                b.stop_session,
            ))
        })
    }

    /// Every scope with spend or a budget, sorted.
    pub(crate) fn statuses(&self) -> Vec<BudgetStatus> {
        let book = self.lock();
        let mut v: Vec<BudgetStatus> = book
            .spent
            .iter()
            .map(|(scope, spent)| BudgetStatus {
                budget: match scope {
                    Scope::Session { .. } => None,
                    s => self.cfg.budget(s, None),
                },
                scope: scope.clone(),
                spent: spent.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.scope.cmp(&b.scope));
        v
    }
}

/// The thresholds `spent` is at or beyond, per unit: the highest only.
fn crossings(scope: &Scope, spent: &Spend, b: &Budget, warn_at: f64) -> Vec<BudgetCrossing> {
    let pairs = [
        (
            Unit::Tokens,
            spent.tokens as f64,
            b.tokens.map(|t| t as f64),
        ),
        (Unit::Usd, spent.cost_usd, b.cost_usd),
    ];
    pairs
        .into_iter()
        .filter_map(|(unit, used, limit)| {
            let limit = limit?;
            let exceeded = used >= limit;
            (exceeded || used >= limit * warn_at).then(|| BudgetCrossing {
                scope: scope.clone(),
                unit,
                used,
                limit,
                exceeded,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, model: &str) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            model: Some(model.into()),
            ..Default::default()
        }
    }

    #[test]
    fn prices_by_exact_then_longest_prefix() {
        let mut p = Prices::new();
        p.insert(
            "claude".into(),
            Price {
                input: 1.0,
                ..Default::default()
            },
        );
        p.insert(
            "claude-sonnet-4".into(),
            Price {
                input: 3.0,
                output: 15.0,
                ..Default::default()
            },
        );
        let u = usage(1_000_000, 1_000_000, "claude-sonnet-4-20250514");
        assert_eq!(price_of(&p, u.model.as_deref()).unwrap().cost(&u), 18.0);
        assert_eq!(price_of(&p, Some("claude-haiku")).unwrap().input, 1.0);
        assert!(price_of(&p, Some("gpt")).is_none());
    }

    #[test]
    fn warns_once_then_stops_at_the_limit() {
        let mut cfg = BudgetConfig::default();
        cfg.tasks.insert(
            "t".into(),
            Budget {
                tokens: Some(1000),
                ..Default::default()
            },
        );
        let l = Ledger::new(cfg, Prices::new());
        let payer = Payer {
            session: Uuid::nil(),
            task: Some("t".into()),
            project: None,
            own: None,
        };
        let (_, c) = l.charge(&payer, &usage(500, 0, "m"));
        assert!(c.is_empty() && l.check(&payer).is_none());
        let (_, c) = l.charge(&payer, &usage(300, 0, "m"));
        assert_eq!(c.len(), 1);
        assert!(
            !c[0].exceeded && c[0].to_string().contains("80%"),
            "{}",
            c[0]
        );
        let (_, c) = l.charge(&payer, &usage(10, 0, "m"));
        assert!(c.is_empty(), "the warning is reported once");
        let (_, c) = l.charge(&payer, &usage(200, 0, "m"));
        assert!(c[0].exceeded);
        let (f, stop) = l.check(&payer).unwrap();
        assert_eq!(f.kind(), "budget");
        assert!(!stop);
        assert!(f.to_string().contains("task \"t\""), "{f}");
    }

    #[test]
    fn bad_budgets_name_the_field() {
        let e = Budget::default().validate("budget").unwrap_err();
        assert!(e.to_string().contains("budget"), "{e}");
        let e = Budget {
            cost_usd: Some(-1.0),
            ..Default::default()
        }
        .validate("budget")
        .unwrap_err();
        assert!(e.to_string().contains("budget.cost_usd") && e.to_string().contains("-1"));
    }
}
