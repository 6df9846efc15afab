//! Showing progress and reports to people.

use std::fmt::Write as _;

use crate::job::{ProgressSummary, ReportSummary};

impl ProgressSummary {
    /// The job's total records, once the whole input is planned (not for redrives, which
    /// plan only their failed ranges).
    pub fn total(&self) -> Option<u64> {
        (self.planning_done && self.report.redrive_of.is_none()).then_some(self.records_planned)
    }

    /// Records done: read, or in failed batches.
    pub fn done(&self) -> u64 {
        let failed: u64 = self.report.failed.iter().map(|f| f.records).sum();
        self.report.records_read + failed
    }

    /// One line for a progress bar or a log.
    pub fn line(&self) -> String {
        let r = &self.report;
        let mut line = format!(
            "read {} · written {} · already present {} · errors {} · failed batches {} · {}/{} in flight",
            thousands(r.records_read),
            thousands(r.records_written),
            thousands(r.already_present),
            thousands(r.record_errors),
            r.failed_batches,
            self.in_flight,
            self.max_in_flight,
        );
        if r.superseded > 0 {
            let _ = write!(line, " · superseded {}", thousands(r.superseded));
        }
        if r.quarantined > 0 {
            let _ = write!(line, " · quarantined {}", thousands(r.quarantined));
        }
        if let Some(rate) = self.max_records_per_s {
            let _ = write!(line, " · limit {}/s", thousands(rate.into()));
        }
        let stuck = self.running.iter().filter(|r| r.stuck).count();
        if stuck > 0 {
            let _ = write!(line, " · {stuck} stuck");
        }
        if self.paused {
            line.push_str(" · PAUSED");
        }
        if let Some(outage) = &self.outage {
            let _ = write!(
                line,
                " · WAITING for the sink or source ({} batches held)",
                outage.held_batches
            );
        }
        line
    }
}

/// A status for people: several lines.
pub(crate) fn describe_progress(p: &ProgressSummary) -> String {
    let r = &p.report;
    let state = match (&p.outage, p.paused) {
        (Some(o), _) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            format!(
                "waiting for the sink or source for {} s ({} batches held; the job fails in {} s if it does not answer): {}",
                now.saturating_sub(o.since_ms) / 1_000,
                o.held_batches,
                o.until_ms.saturating_sub(now) / 1_000,
                o.cause
            )
        }
        (None, true) => "running, paused".to_owned(),
        (None, false) => "running".to_owned(),
    };
    let mut out = format!(
        "job       {}\npipeline  {}\nstate     {state}\n",
        r.job_id, r.pipeline
    );
    let of = match p.total() {
        Some(total) if total > 0 => format!(
            " of {} ({:.0}%)",
            thousands(total),
            p.done() as f64 * 100.0 / total as f64
        ),
        _ => String::new(),
    };
    let _ = writeln!(out, "records   read {}{of}", thousands(r.records_read));
    out.push_str(&describe_counts(r));
    let _ = writeln!(
        out,
        "batches   {} done, {} in flight of {}{}",
        thousands(r.batches),
        p.in_flight,
        p.max_in_flight,
        p.max_records_per_s
            .map(|n| format!(", limited to {} records/s", thousands(n.into())))
            .unwrap_or_default()
    );
    for running in p.running.iter().filter(|r| r.stuck) {
        let _ = writeln!(
            out,
            "stuck     {} (batches from {}, {} s old, attempt {})",
            running.activity_id,
            running.first_batch,
            running.age_ms / 1000,
            running.attempt.unwrap_or(1)
        );
    }
    let _ = writeln!(
        out,
        "elapsed   {:.1} s, {} records/s",
        r.elapsed_ms as f64 / 1000.0,
        thousands(rate(r))
    );
    out
}

/// A finished job's report for people.
pub(crate) fn describe_report(r: &ReportSummary) -> String {
    let kind = r
        .kind
        .as_ref()
        .map(|k| format!(" ({k})"))
        .unwrap_or_default();
    let mut out = format!(
        "job       {}\npipeline  {}\nstatus    {}{kind}\n",
        r.job_id, r.pipeline, r.status
    );
    if let Some(of) = &r.redrive_of {
        let _ = writeln!(out, "redrive   of {of}");
    }
    let _ = writeln!(out, "records   read {}", thousands(r.records_read));
    out.push_str(&describe_counts(r));
    let _ = writeln!(
        out,
        "batches   {} done, {} failed",
        thousands(r.batches),
        r.failed_batches
    );
    let _ = writeln!(
        out,
        "elapsed   {:.1} s, {} records/s",
        r.elapsed_ms as f64 / 1000.0,
        thousands(rate(r))
    );
    if let Some(failure) = &r.failure {
        let _ = writeln!(out, "failure   {failure}");
    }
    out
}

fn describe_counts(r: &ReportSummary) -> String {
    let superseded = if r.superseded > 0 {
        format!(", superseded by newer versions {}", thousands(r.superseded))
    } else {
        String::new()
    };
    let mut out = format!(
        "          written {}, already present {}{superseded}, filtered {}, record errors {}\n",
        thousands(r.records_written),
        thousands(r.already_present),
        thousands(r.records_filtered),
        thousands(r.record_errors),
    );
    for e in &r.error_samples {
        let _ = writeln!(out, "error     {e}");
    }
    if let Some(q) = &r.quarantine {
        let _ = writeln!(
            out,
            "quarantine {} records in {} (`batch-orchestra errors {}` lists them)",
            thousands(r.quarantined),
            q.describe(r.redrive_of.as_deref().unwrap_or(&r.job_id)),
            r.job_id
        );
    }
    for f in &r.failed {
        // A sharded job's shard that failed as a whole (its file vanished, say) has no
        // batch range: its message names it.
        if f.batches == 0 {
            let _ = writeln!(out, "failed    {}: {}", f.kind, f.message);
            continue;
        }
        let _ = writeln!(
            out,
            "failed    batches {}-{} ({} records): {}: {}",
            f.first_batch,
            f.first_batch + f.batches.saturating_sub(1),
            thousands(f.records),
            f.kind,
            f.message
        );
    }
    out
}

fn rate(r: &ReportSummary) -> u64 {
    (r.records_read * 1000)
        .checked_div(r.elapsed_ms)
        .unwrap_or(0)
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn a_progress_line_says_what_a_person_checks() {
        let view: ProgressSummary = serde_json::from_value(serde_json::json!({
            "report": {"job_id": "j", "pipeline": "p", "status": "Running",
                       "records_read": 1500, "records_written": 1490, "record_errors": 10,
                       "failed": [{"first_batch": 3, "batches": 1, "records": 500,
                                   "kind": "TransientError", "message": "down"}],
                       "failed_batches": 1},
            "in_flight": 2, "max_in_flight": 4, "paused": true,
            "max_records_per_s": 5000, "records_planned": 4000, "planning_done": true
        }))
        .unwrap();
        assert_eq!(view.total(), Some(4000));
        assert_eq!(view.done(), 2000);
        let line = view.line();
        assert!(line.contains("read 1,500"), "{line}");
        assert!(line.contains("errors 10"), "{line}");
        assert!(line.contains("2/4 in flight"), "{line}");
        assert!(line.contains("limit 5,000/s"), "{line}");
        assert!(line.ends_with("PAUSED"), "{line}");
        let status = describe_progress(&view);
        assert!(status.contains("of 4,000 (50%)"), "{status}");
        assert!(status.contains("batches 3-3 (500 records)"), "{status}");
    }

    #[test]
    fn a_shard_that_failed_whole_is_named_not_given_a_batch_range() {
        let view: ReportSummary = serde_json::from_value(serde_json::json!({
            "job_id": "j", "pipeline": "p", "status": "CompletedWithFailures",
            "failed": [{"first_batch": 0, "batches": 0, "records": 0, "kind": "Failed",
                        "message": "shard `a.csv` (1 input): a.csv: no such file"}]
        }))
        .unwrap();
        let text = describe_report(&view);
        assert!(
            text.contains("failed    Failed: shard `a.csv` (1 input): a.csv: no such file"),
            "{text}"
        );
        assert!(!text.contains("batches 0-0"), "{text}");
    }
}
