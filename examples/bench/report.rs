//! Result rows: the aligned table and the JSON document.

use serde::Serialize;

/// Whether a figure meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The target holds.
    Pass,
    /// The target is missed.
    Miss,
    /// A figure without a target (context, breakdowns).
    Info,
    /// Could not be measured (e.g. no recorder yet); `note` says why.
    NotAvailable,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Miss => "MISS",
            Self::Info => "info",
            Self::NotAvailable => "n/a",
        }
    }

    /// Pass if `ok`, else Miss.
    pub fn of(ok: bool) -> Self {
        if ok {
            Self::Pass
        } else {
            Self::Miss
        }
    }
}

/// One line of the results.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// throughput, spawn, restart, scale, fanin, claude.
    pub bench: &'static str,
    /// What is measured.
    pub metric: String,
    /// herd's figure, human readable.
    pub herd: String,
    /// The baseline's figure, human readable ("" when none).
    pub baseline: String,
    /// The figure compared with the target (a ratio, a percentile...).
    pub value: Option<f64>,
    /// Unit of `value`.
    pub unit: &'static str,
    /// The target, human readable ("" when none).
    pub target: String,
    /// Pass, miss, info, n/a.
    pub verdict: Verdict,
    /// /proc/loadavg when the figure was taken.
    pub load: String,
    /// Anything a reader needs to interpret the figure.
    pub note: String,
}

impl Row {
    /// A row with a value and target; `note`/`baseline` may be filled later.
    pub fn new(bench: &'static str, metric: impl Into<String>) -> Self {
        Self {
            bench,
            metric: metric.into(),
            herd: String::new(),
            baseline: String::new(),
            value: None,
            unit: "",
            target: String::new(),
            verdict: Verdict::Info,
            load: crate::util::loadavg(),
            note: String::new(),
        }
    }

    /// Sets herd's figure.
    pub fn herd(mut self, s: impl Into<String>) -> Self {
        self.herd = s.into();
        self
    }

    /// Sets the baseline's figure.
    pub fn baseline(mut self, s: impl Into<String>) -> Self {
        self.baseline = s.into();
        self
    }

    /// Sets the compared value and its unit.
    pub fn value(mut self, v: f64, unit: &'static str) -> Self {
        self.value = Some(v);
        self.unit = unit;
        self
    }

    /// Sets the target and the verdict.
    pub fn target(mut self, t: impl Into<String>, ok: bool) -> Self {
        self.target = t.into();
        self.verdict = Verdict::of(ok);
        self
    }

    /// Marks the row as not measurable, with why.
    pub fn not_available(mut self, why: impl Into<String>) -> Self {
        self.verdict = Verdict::NotAvailable;
        self.note = why.into();
        self
    }

    /// Sets a note.
    pub fn note(mut self, n: impl Into<String>) -> Self {
        self.note = n.into();
        self
    }

    fn value_text(&self) -> String {
        match self.value {
            None => String::new(),
            Some(v) if self.unit.is_empty() => format!("{v:.2}"),
            Some(v) => format!("{v:.2} {}", self.unit),
        }
    }
}

/// The aligned text table.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "bench", "metric", "herd", "baseline", "value", "target", "result", "load",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        cells.push(vec![
            r.bench.to_string(),
            r.metric.clone(),
            r.herd.clone(),
            r.baseline.clone(),
            r.value_text(),
            r.target.clone(),
            r.verdict.label().to_string(),
            r.load.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, r) in cells.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    let notes: Vec<&Row> = rows.iter().filter(|r| !r.note.is_empty()).collect();
    if !notes.is_empty() {
        out.push_str("\nnotes:\n");
        for r in notes {
            out.push_str(&format!("  {} / {}: {}\n", r.bench, r.metric, r.note));
        }
    }
    out
}

/// The Markdown table (for docs/PERFORMANCE.md).
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| bench | metric | herd | baseline | value | target | result | load |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.bench,
            r.metric,
            r.herd,
            r.baseline,
            r.value_text(),
            r.target,
            r.verdict.label(),
            r.load
        ));
    }
    out
}
