//! Operating the jobs of pipelines without knowing their types: the list of pipelines a
//! worker serves and, with the `cli` feature, one operator per pipeline and kind that parses
//! job files and starts, watches, steers and redrives jobs for the command line.

#[cfg(feature = "cli")]
mod batch;
#[cfg(feature = "cli")]
pub(crate) use batch::{interval, schedule_table};
#[cfg(feature = "cli")]
mod operate;
#[cfg(feature = "cli")]
mod sharded;
#[cfg(feature = "cli")]
mod stream;
#[cfg(feature = "cli")]
pub(crate) mod view;

#[cfg(feature = "cli")]
pub(crate) use operate::{Control, Operate, Overrides, Ready, operator};

#[cfg(feature = "cli")]
use crate::job::{Batch, Sharded, Stream};
use crate::worker::{Registered, WorkerBuilder, WorkerError};

type Register = Box<dyn FnOnce(WorkerBuilder) -> Result<WorkerBuilder, WorkerError>>;

/// Pipelines to register on one worker, made by [`pipelines!`](crate::pipelines), which
/// checks at compile time that their names are distinct.
pub struct PipelineList {
    register: Vec<Register>,
    names: Vec<&'static str>,
    #[cfg(feature = "cli")]
    pub(crate) operators: Vec<Box<dyn Operate>>,
}

impl PipelineList {
    /// An empty list.
    #[doc(hidden)]
    pub fn empty() -> Self {
        Self {
            register: Vec::new(),
            names: Vec::new(),
            #[cfg(feature = "cli")]
            operators: Vec::new(),
        }
    }

    /// Adds pipeline `P`. Use [`pipelines!`](crate::pipelines), which also checks the names.
    #[doc(hidden)]
    pub fn with<P: Registered>(mut self) -> Self {
        self.register
            .push(Box::new(|w: WorkerBuilder| w.pipeline::<P>()));
        self.names.push(P::NAMES.workflow);
        #[cfg(feature = "cli")]
        {
            if P::capabilities().is_stream() {
                self.operators.push(operator::<P, Stream>());
            } else {
                self.operators.push(operator::<P, Batch>());
                self.operators.push(operator::<P, Sharded>());
            }
        }
        self
    }

    /// The workflow names of the pipelines, in order.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

impl WorkerBuilder {
    /// Registers every pipeline of a [`pipelines!`](crate::pipelines) list.
    pub fn pipelines(mut self, list: PipelineList) -> Result<Self, WorkerError> {
        for register in list.register {
            self = register(self)?;
        }
        Ok(self)
    }
}
