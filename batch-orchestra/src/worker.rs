//! Workers: processes that run pipelines' workflows and activities for a task queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use temporalio_client::Client;
use temporalio_common::telemetry::{
    PrometheusExporterOptions, TelemetryOptions, start_prometheus_metric_exporter,
};
use temporalio_sdk::activities::ActivityDefinitions;
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::{Runtime, WorkerOptions};

use crate::activity::{PipelineActivities, Register};
use crate::batch::PipelineWorkflow;
use crate::cache::ConnectorCache;
use crate::connector::StreamSource;
use crate::metrics::MetricsSlot;
use crate::pipeline::Pipeline;
use crate::sharded::Grouped;
use crate::sharded::ShardedWorkflow;
use crate::stream::StreamWorkflow;

/// An error while building or running a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Two pipelines registered on one worker share a workflow or activity name.
    #[error(
        "the name `{0}` is registered twice on this worker: give each pipeline its own workflow name"
    )]
    DuplicateName(&'static str),
    /// One pipeline registered twice on one worker.
    #[error(
        "pipeline `{0}` is registered twice on this worker: remove the duplicate `.pipeline::<{0}>()` or `pipelines![..]` entry"
    )]
    PipelineTwice(String),
    /// The Temporal SDK refused the worker.
    #[error("cannot create the worker: {0}")]
    Create(String),
    /// The worker stopped with an error.
    #[error("the worker stopped: {0}")]
    Run(String),
    /// The metrics endpoint could not be served.
    #[error("cannot serve metrics on {addr}: {message}")]
    Metrics {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
}

/// Builds a [`Worker`]: pick a task queue, register pipelines, build.
///
/// ```no_run
/// # use batch_orchestra::testing::RangeToCounting;
/// # async fn demo(client: temporalio_client::Client) -> Result<(), batch_orchestra::WorkerError> {
/// let mut worker = batch_orchestra::Worker::builder(client, "batch-jobs")
///     .pipeline::<RangeToCounting>()?
///     .build()?;
/// worker.run().await
/// # }
/// ```
pub struct WorkerBuilder {
    client: Client,
    options: WorkerOptions,
    connectors: ConnectorCache,
    names: Vec<&'static str>,
    pipelines: Vec<std::any::TypeId>,
    metrics: Option<SocketAddr>,
    slots: Vec<(MetricsSlot, &'static str)>,
}

impl WorkerBuilder {
    /// Serves Prometheus metrics at `http://<addr>/metrics`: the pipelines' counts (see
    /// [`metrics`](crate::metrics) for the names) and the Temporal SDK's worker metrics, on
    /// the same endpoint. Port 0 picks a free port: [`Worker::metrics_addr`] tells which.
    ///
    /// ```no_run
    /// # use batch_orchestra::testing::RangeToCounting;
    /// # async fn demo(client: temporalio_client::Client) -> Result<(), batch_orchestra::WorkerError> {
    /// let worker = batch_orchestra::Worker::builder(client, "batch-jobs")
    ///     .metrics("127.0.0.1:9464".parse().unwrap())
    ///     .pipeline::<RangeToCounting>()?
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn metrics(mut self, addr: SocketAddr) -> Self {
        self.metrics = Some(addr);
        self
    }

    /// How long a shutdown waits for running activities before asking them to stop (30 s by
    /// default). Asked to stop, a `process` activity finishes the write in progress and
    /// returns the batches it completed; the job hands the rest to another worker.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.options.graceful_shutdown_period = Some(grace);
        self
    }

    /// Registers pipeline `P`: its workflow and its activities, and the parent workflow and
    /// `list` activity of its sharded jobs. For a streaming pipeline: its stream workflow and
    /// the queue executor, `<workflow>.stream`.
    pub fn pipeline<P: Registered>(self) -> Result<Self, WorkerError> {
        P::register(self)
    }

    /// Claims every name of pipeline `P` on this worker, refusing one taken.
    fn claim<P: Pipeline>(&mut self) -> Result<(), WorkerError> {
        let pipeline = std::any::TypeId::of::<P>();
        if self.pipelines.contains(&pipeline) {
            let path = std::any::type_name::<P>();
            let name = path.rsplit("::").next().unwrap_or(path);
            return Err(WorkerError::PipelineTwice(name.to_owned()));
        }
        self.pipelines.push(pipeline);
        let n = P::NAMES;
        let all = [
            n.workflow,
            n.plan,
            n.process,
            n.snapshot,
            n.begin,
            n.sharded,
            n.list,
            n.shard,
            n.shard_plan,
            n.shard_process,
            n.shard_snapshot,
            n.stream,
        ];
        for name in all {
            if self.names.contains(&name) {
                return Err(WorkerError::DuplicateName(name));
            }
            self.names.push(name);
        }
        Ok(())
    }

    fn workflow<W>(&mut self) -> Result<(), WorkerError>
    where
        W: temporalio_sdk::workflows::WorkflowImplementation,
        <W::Run as temporalio_common::WorkflowDefinition>::Input: Send,
    {
        self.options
            .register_workflow::<W>()
            .map_err(|e| WorkerError::Create(e.to_string()))?;
        Ok(())
    }

    fn activities<P: Pipeline>(&mut self, slot: MetricsSlot, register: Register<P>) {
        self.options
            .register_activities(PipelineActivities::<P>::new(
                self.connectors.clone(),
                slot,
                register,
                self.client.clone(),
            ));
    }

    /// A batch pipeline: its batch workflow, the parent of its sharded jobs and the shards'
    /// workflow, with their activities.
    fn batch_pipeline<P: Pipeline>(mut self) -> Result<Self, WorkerError> {
        self.claim::<P>()?;
        self.workflow::<PipelineWorkflow<P>>()?;
        self.workflow::<ShardedWorkflow<P>>()?;
        // The shards of sharded jobs: the same pipeline over groups of inputs.
        self.workflow::<PipelineWorkflow<Grouped<P>>>()?;
        let slot = MetricsSlot::default();
        self.slots.push((slot.clone(), P::NAMES.workflow));
        self.activities::<P>(slot.clone(), batch_and_list::<P>);
        self.activities::<Grouped<P>>(slot, crate::batch::activities::register::<Grouped<P>>);
        Ok(self)
    }

    /// A streaming pipeline: its stream workflow and the queue executor, nothing else.
    fn stream_pipeline<P: Pipeline>(mut self) -> Result<Self, WorkerError>
    where
        P::Source: StreamSource,
    {
        self.claim::<P>()?;
        self.workflow::<StreamWorkflow<P>>()?;
        let slot = MetricsSlot::default();
        self.slots.push((slot.clone(), P::NAMES.workflow));
        self.activities::<P>(slot, crate::stream::executor::register::<P>);
        Ok(self)
    }

    /// Builds the worker. Call it inside a Tokio runtime.
    pub fn build(self) -> Result<Worker, WorkerError> {
        let mut telemetry = TelemetryOptions::builder().build();
        let mut metrics = None;
        if let Some(addr) = self.metrics {
            let served = start_prometheus_metric_exporter(
                PrometheusExporterOptions::builder()
                    .socket_addr(addr)
                    .build(),
            )
            .map_err(|e| WorkerError::Metrics {
                addr,
                message: e.to_string(),
            })?;
            for (slot, pipeline) in &self.slots {
                slot.install(served.meter.as_ref(), pipeline);
            }
            telemetry.metrics = Some(served.meter.clone());
            metrics = Some(MetricsServer {
                addr: served.bound_addr,
                abort: served.abort_handle,
            });
        }
        let options = RuntimeOptions::builder()
            .telemetry_options(telemetry)
            .build()
            .map_err(WorkerError::Create)?;
        let runtime =
            Runtime::from_current_tokio(options).map_err(|e| WorkerError::Create(e.to_string()))?;
        let inner = temporalio_sdk::Worker::new(&runtime, self.client, self.options)
            .map_err(|e| WorkerError::Create(e.to_string()))?;
        Ok(Worker {
            inner,
            metrics,
            _runtime: runtime,
            ran: false,
        })
    }
}

/// A running worker for one task queue. Start as many as you like, on as many machines:
/// Temporal spreads the batches.
pub struct Worker {
    inner: temporalio_sdk::Worker,
    metrics: Option<MetricsServer>,
    _runtime: Runtime,
    /// Set once it has run: a shut-down worker serves nothing again.
    ran: bool,
}

struct MetricsServer {
    addr: SocketAddr,
    abort: tokio::task::AbortHandle,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            m.abort.abort();
        }
    }
}

impl Worker {
    /// Starts building a worker polling `task_queue`.
    pub fn builder(client: Client, task_queue: impl Into<String>) -> WorkerBuilder {
        WorkerBuilder {
            client,
            options: {
                let mut options = WorkerOptions::new(task_queue.into()).build();
                options.graceful_shutdown_period = Some(DEFAULT_SHUTDOWN_GRACE);
                options
            },
            connectors: ConnectorCache::default(),
            names: Vec::new(),
            pipelines: Vec::new(),
            metrics: None,
            slots: Vec::new(),
        }
    }

    /// Where the metrics are served, when the worker was built with
    /// [`metrics`](WorkerBuilder::metrics).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr)
    }

    /// Runs until the process gets Ctrl-C (SIGINT) or SIGTERM, then shuts down gracefully:
    /// no new work is taken, running activities finish (or, past the
    /// [shutdown grace](WorkerBuilder::shutdown_grace), finish their write in progress and
    /// return what they completed), and the function returns. A second signal exits the
    /// process at once with code 130; Temporal then hands the unfinished batches to another
    /// worker after their heartbeat timeout, and idempotent sinks absorb the repeats.
    ///
    /// Use it in your own worker binaries so a deploy or a `kill` does not cut batches short.
    pub async fn run_until_signal(&mut self) -> Result<(), WorkerError> {
        self.start_once()?;
        let shutdown = self.inner.shutdown_handle();
        let signals = async move {
            stop_signal().await;
            tracing::info!(
                "shutting down: running activities finish first (signal again to stop at once)"
            );
            shutdown();
            stop_signal().await;
            tracing::warn!("second signal: stopping at once");
            std::process::exit(130);
        };
        tokio::select! {
            ran = self.inner.run() => ran.map_err(|e| WorkerError::Run(e.to_string())),
            () = signals => Ok(()),
        }
    }

    /// Runs until [`shutdown_handle`](Self::shutdown_handle) is called. The future is not
    /// `Send`: await it on the main task or a `LocalSet`.
    pub async fn run(&mut self) -> Result<(), WorkerError> {
        self.start_once()?;
        self.inner
            .run()
            .await
            .map_err(|e| WorkerError::Run(e.to_string()))
    }

    /// Runs the worker while `work` runs, then shuts it down and returns `work`'s output.
    ///
    /// Handy for a process that both serves a job and waits for it, and for tests. A worker
    /// runs once: after this returns it is shut down, a second run is an error, and serving
    /// again takes a new worker from [`Worker::builder`] (cheap: the client is shared).
    pub async fn run_until<F: Future>(&mut self, work: F) -> Result<F::Output, WorkerError> {
        self.start_once()?;
        let shutdown = self.inner.shutdown_handle();
        let work = async move {
            let out = work.await;
            shutdown();
            out
        };
        let (ran, out) = tokio::join!(self.inner.run(), work);
        ran.map_err(|e| WorkerError::Run(e.to_string()))?;
        Ok(out)
    }

    /// Refuses a second run: the worker shut down at the end of the first.
    fn start_once(&mut self) -> Result<(), WorkerError> {
        if std::mem::replace(&mut self.ran, true) {
            return Err(WorkerError::Run(
                "this worker has already run and shut down: build a new one with `Worker::builder` to serve again".into(),
            ));
        }
        Ok(())
    }

    /// A function that asks the worker to stop: running activities finish first.
    pub fn shutdown_handle(&self) -> impl Fn() + use<> {
        self.inner.shutdown_handle()
    }
}

/// How long a shutdown waits for running activities by default.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Registers the activities of a batch pipeline: its batch jobs' and its sharded jobs' `list`.
fn batch_and_list<P: Pipeline>(me: Arc<PipelineActivities<P>>, defs: &mut ActivityDefinitions) {
    crate::batch::activities::register::<P>(me.clone(), defs);
    crate::batch::begin::register::<P>(me.clone(), defs);
    crate::sharded::list::register::<P>(me, defs);
}

/// A pipeline a worker can register: `pipeline!` implements it, choosing the kinds its
/// source serves (a stream, or batch and sharded jobs). Bound generic code that registers
/// pipelines with it: `fn serve<P: Registered>(...)`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a pipeline declared with `pipeline!`",
    note = "declare it with `batch_orchestra::pipeline! {{ pub MyPipeline {{ source: ..., sink: ... }} }}`"
)]
pub trait Registered: Pipeline {
    /// Registers the pipeline's workflows and activities.
    fn register(worker: WorkerBuilder) -> Result<WorkerBuilder, WorkerError>;
}

/// Picks a pipeline's registration where its type is concrete:
/// `(&&PipelineProbe::<P>::new()).register(worker)` registers a stream when `P`'s source is a
/// [`StreamSource`], and batch and sharded jobs when not.
#[doc(hidden)]
pub struct PipelineProbe<P>(std::marker::PhantomData<fn() -> P>);

impl<P> PipelineProbe<P> {
    /// A probe for `P`.
    pub const fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<P> Default for PipelineProbe<P> {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a streaming pipeline.
#[doc(hidden)]
pub trait RegisterStream {
    /// Registers the stream workflow and the queue executor.
    fn register(&self, worker: WorkerBuilder) -> Result<WorkerBuilder, WorkerError>;
}

impl<P: Pipeline> RegisterStream for &PipelineProbe<P>
where
    P::Source: StreamSource,
{
    fn register(&self, worker: WorkerBuilder) -> Result<WorkerBuilder, WorkerError> {
        worker.stream_pipeline::<P>()
    }
}

/// Registers a batch pipeline.
#[doc(hidden)]
pub trait RegisterBatch {
    /// Registers the batch and sharded workflows and their activities.
    fn register(&self, worker: WorkerBuilder) -> Result<WorkerBuilder, WorkerError>;
}

impl<P: Pipeline> RegisterBatch for PipelineProbe<P> {
    fn register(&self, worker: WorkerBuilder) -> Result<WorkerBuilder, WorkerError> {
        worker.batch_pipeline::<P>()
    }
}

/// Waits for SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // No signal handling here (should not happen on Unix): Ctrl-C only.
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
