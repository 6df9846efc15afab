//! Worker metrics for Prometheus: what the activities read, wrote and refused, per pipeline.
//!
//! [`WorkerBuilder::metrics`](crate::WorkerBuilder::metrics) serves them at `/metrics` on the
//! address it is given, on the same endpoint as the Temporal SDK's own worker metrics
//! (`temporal_*`: task slots, poll latencies, activity and workflow task counts). Ours are
//! prefixed `batch_orchestra_` and labelled by `pipeline` only (never by job id, so the number
//! of series stays bounded):
//!
//! | Metric | Kind | Meaning |
//! |---|---|---|
//! | `batch_orchestra_records_read_total` | counter | records read from sources |
//! | `batch_orchestra_records_written_total` | counter | records newly written to sinks |
//! | `batch_orchestra_records_already_present_total` | counter | records a sink already held (retries, redrives) |
//! | `batch_orchestra_records_superseded_total` | counter | records an upserting sink held a newer version of |
//! | `batch_orchestra_records_quarantined_total` | counter | failed records kept whole in a job's quarantine |
//! | `batch_orchestra_records_filtered_total` | counter | records a transform filtered out |
//! | `batch_orchestra_record_errors_total` | counter | records refused (bad input), kept in the report |
//! | `batch_orchestra_batches_total` | counter | batches processed |
//! | `batch_orchestra_activity_failures_total` | counter | `process` attempts that failed (each retry counts) |
//! | `batch_orchestra_batch_duration` | histogram (ms) | time to read, transform and write one batch |
//! | `batch_orchestra_activities_in_flight` | gauge | `process` activities running on this worker |
//!
//! Counts are per worker process: a job spread over several workers is the sum over them.
//! They are added when a `process` attempt succeeds, as the workflow adds them to the report;
//! a failed attempt adds only to `activity_failures_total`. So at the end of a job the sum of
//! `records_written_total` over its workers equals the report's `records_written` (when only
//! that job ran on them). The batch duration is recorded for every batch written, in
//! milliseconds.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use temporalio_common::telemetry::metrics::{
    CoreMeter, Counter, HistogramDuration, MetricAttributes, MetricKeyValue, MetricParameters,
    NewAttributes, UpDownCounter,
};

/// The instruments of one pipeline, with its `pipeline` label.
pub(crate) struct PipelineMetrics {
    labels: MetricAttributes,
    read: Counter,
    written: Counter,
    already_present: Counter,
    superseded: Counter,
    quarantined: Counter,
    filtered: Counter,
    record_errors: Counter,
    batches: Counter,
    failures: Counter,
    duration: HistogramDuration,
    in_flight: UpDownCounter,
}

impl PipelineMetrics {
    fn new(meter: &dyn CoreMeter, pipeline: &str) -> Self {
        let labels = meter.new_attributes(NewAttributes::from(vec![MetricKeyValue::new(
            "pipeline",
            pipeline.to_owned(),
        )]));
        let counter = |name: &'static str, description: &'static str| {
            meter.counter(
                MetricParameters::builder()
                    .name(name)
                    .description(description)
                    .build(),
            )
        };
        Self {
            read: counter(
                "batch_orchestra_records_read_total",
                "Records read from sources",
            ),
            written: counter(
                "batch_orchestra_records_written_total",
                "Records newly written to sinks",
            ),
            already_present: counter(
                "batch_orchestra_records_already_present_total",
                "Records a sink already held",
            ),
            superseded: counter(
                "batch_orchestra_records_superseded_total",
                "Records an upserting sink held a newer version of",
            ),
            quarantined: counter(
                "batch_orchestra_records_quarantined_total",
                "Failed records kept whole in a job's quarantine",
            ),
            filtered: counter(
                "batch_orchestra_records_filtered_total",
                "Records a transform filtered out",
            ),
            record_errors: counter(
                "batch_orchestra_record_errors_total",
                "Records refused as bad input",
            ),
            batches: counter("batch_orchestra_batches_total", "Batches processed"),
            failures: counter(
                "batch_orchestra_activity_failures_total",
                "Process attempts that failed",
            ),
            duration: meter.histogram_duration(
                MetricParameters::builder()
                    .name("batch_orchestra_batch_duration")
                    .description("Time to read, transform and write one batch")
                    .build(),
            ),
            in_flight: meter.up_down_counter(
                MetricParameters::builder()
                    .name("batch_orchestra_activities_in_flight")
                    .description("Process activities running on this worker")
                    .build(),
            ),
            labels,
        }
    }

    /// Records how long one batch took to read, transform and write.
    pub(crate) fn batch_took(&self, took: Duration) {
        self.duration.record(took, &self.labels);
    }

    /// Counts a successful `process` attempt.
    pub(crate) fn processed(&self, counts: Counts) {
        let l = &self.labels;
        self.read.add(counts.read, l);
        self.written.add(counts.written, l);
        self.already_present.add(counts.already_present, l);
        self.superseded.add(counts.superseded, l);
        self.quarantined.add(counts.quarantined, l);
        self.filtered.add(counts.filtered, l);
        self.record_errors.add(counts.record_errors, l);
        self.batches.add(counts.batches, l);
    }

    /// Counts a failed `process` attempt (a connector that could not be built included).
    pub(crate) fn failure(&self) {
        self.failures.add(1, &self.labels);
    }

    /// Marks a `process` activity running until the guard drops.
    pub(crate) fn running(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.add(1, &self.labels);
        InFlightGuard(self.clone())
    }
}

/// Keeps one activity counted in `activities_in_flight`.
pub(crate) struct InFlightGuard(Arc<PipelineMetrics>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.add(-1, &self.0.labels);
    }
}

/// Where a pipeline's activities find their instruments: empty until the worker is built
/// with metrics.
#[derive(Clone, Default)]
pub(crate) struct MetricsSlot(Arc<OnceLock<Arc<PipelineMetrics>>>);

impl MetricsSlot {
    pub(crate) fn install(&self, meter: &dyn CoreMeter, pipeline: &str) {
        let _ = self.0.set(Arc::new(PipelineMetrics::new(meter, pipeline)));
    }

    pub(crate) fn get(&self) -> Option<&Arc<PipelineMetrics>> {
        self.0.get()
    }
}

/// What one successful `process` attempt did.
pub(crate) struct Counts {
    pub read: u64,
    pub written: u64,
    pub already_present: u64,
    pub superseded: u64,
    pub quarantined: u64,
    pub filtered: u64,
    pub record_errors: u64,
    pub batches: u64,
}
