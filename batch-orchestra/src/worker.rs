//! Workers: processes that run pipelines' workflows and activities for a task queue.

use temporalio_client::Client;
use temporalio_sdk::{Runtime, WorkerOptions};

use crate::activities::PipelineActivities;
use crate::cache::ConnectorCache;
use crate::pipeline::Pipeline;
use crate::workflow::PipelineWorkflow;

/// An error while building or running a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Two pipelines registered on one worker share a workflow or activity name.
    #[error(
        "the name `{0}` is registered twice on this worker: give each pipeline its own workflow name"
    )]
    DuplicateName(&'static str),
    /// The Temporal SDK refused the worker.
    #[error("cannot create the worker: {0}")]
    Create(String),
    /// The worker stopped with an error.
    #[error("the worker stopped: {0}")]
    Run(String),
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
}

impl WorkerBuilder {
    /// Registers pipeline `P`: its workflow and its three activities.
    pub fn pipeline<P: Pipeline>(mut self) -> Result<Self, WorkerError> {
        let n = P::NAMES;
        for name in [n.workflow, n.plan, n.process, n.snapshot] {
            if self.names.contains(&name) {
                return Err(WorkerError::DuplicateName(name));
            }
            self.names.push(name);
        }
        self.options
            .register_workflow::<PipelineWorkflow<P>>()
            .map_err(|e| WorkerError::Create(e.to_string()))?;
        self.options
            .register_activities(PipelineActivities::<P>::new(self.connectors.clone()));
        Ok(self)
    }

    /// Registers every pipeline of a [`pipelines!`](crate::pipelines) list.
    pub fn pipelines(self, list: PipelineList) -> Result<Self, WorkerError> {
        (list.register)(self)
    }

    /// Builds the worker. Call it inside a Tokio runtime.
    pub fn build(self) -> Result<Worker, WorkerError> {
        let runtime = Runtime::from_current_tokio(Default::default())
            .map_err(|e| WorkerError::Create(e.to_string()))?;
        let inner = temporalio_sdk::Worker::new(&runtime, self.client, self.options)
            .map_err(|e| WorkerError::Create(e.to_string()))?;
        Ok(Worker {
            inner,
            _runtime: runtime,
        })
    }
}

/// A running worker for one task queue. Start as many as you like, on as many machines:
/// Temporal spreads the batches.
pub struct Worker {
    inner: temporalio_sdk::Worker,
    _runtime: Runtime,
}

impl Worker {
    /// Starts building a worker polling `task_queue`.
    pub fn builder(client: Client, task_queue: impl Into<String>) -> WorkerBuilder {
        WorkerBuilder {
            client,
            options: WorkerOptions::new(task_queue.into()).build(),
            connectors: ConnectorCache::default(),
            names: Vec::new(),
        }
    }

    /// Runs until [`shutdown_handle`](Self::shutdown_handle) is called. The future is not
    /// `Send`: await it on the main task or a `LocalSet`.
    pub async fn run(&mut self) -> Result<(), WorkerError> {
        self.inner
            .run()
            .await
            .map_err(|e| WorkerError::Run(e.to_string()))
    }

    /// Runs the worker while `work` runs, then shuts it down and returns `work`'s output.
    ///
    /// Handy for a process that both serves a job and waits for it, and for tests.
    pub async fn run_until<F: Future>(&mut self, work: F) -> Result<F::Output, WorkerError> {
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

    /// A function that asks the worker to stop: running activities finish first.
    pub fn shutdown_handle(&self) -> impl Fn() + use<> {
        self.inner.shutdown_handle()
    }
}

type Register = Box<dyn FnOnce(WorkerBuilder) -> Result<WorkerBuilder, WorkerError>>;

/// Pipelines to register on one worker, made by [`pipelines!`](crate::pipelines), which
/// checks at compile time that their names are distinct.
pub struct PipelineList {
    register: Register,
}

impl PipelineList {
    #[doc(hidden)]
    pub fn new(
        register: impl FnOnce(WorkerBuilder) -> Result<WorkerBuilder, WorkerError> + 'static,
    ) -> Self {
        Self {
            register: Box::new(register),
        }
    }
}
