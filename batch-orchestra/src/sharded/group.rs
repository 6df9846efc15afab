//! A shard of several inputs: [`Inputs`] reads its inputs one after another as one source, so
//! a directory of small files runs as a few child workflows rather than one per file, and
//! [`Grouped`] is the pipeline its child workflows (`<workflow>.shard`) run.

use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;

use crate::connector::Shard;
use crate::connector::{BatchRange, Offset, Plan, PlannedBatch, ReadBatch, Source, SourceConfig};
use crate::error::{ConnectorError, RecordError, TransformError};
use crate::pipeline::{Pipeline, PipelineNames, Transformed};

/// A position in a group of inputs: the input, the records before it in that input, and the
/// input's own offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct GroupOffset<O: Offset> {
    /// The input's index in the group.
    pub input: u32,
    /// Records of that input before this offset.
    pub record: u64,
    /// The offset within the input.
    pub at: O,
}

/// Several inputs of one source, read one after another: the source of a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Inputs<S: SourceConfig> {
    /// The inputs, in listing order.
    pub inputs: Vec<Shard<S>>,
}

impl<S: SourceConfig> SourceConfig for Inputs<S> {
    const NAME: &'static str = S::NAME;
    type Record = S::Record;
    type Offset = GroupOffset<S::Offset>;
    type Source = InputsReader<S>;

    async fn build(&self) -> Result<InputsReader<S>, ConnectorError> {
        if self.inputs.is_empty() {
            return Err(ConnectorError::config("a shard with no input"));
        }
        Ok(InputsReader {
            built: self.inputs.iter().map(|_| Default::default()).collect(),
            inputs: self.inputs.clone(),
        })
    }
}

/// The built [`Inputs`]: builds each input's source when it is first planned or read.
pub struct InputsReader<S: SourceConfig> {
    inputs: Vec<Shard<S>>,
    /// Each input's built source, and its id scope: `<key>@<fingerprint of its version>`.
    built: Vec<tokio::sync::OnceCell<(Arc<S::Source>, String)>>,
}

impl<S: SourceConfig> InputsReader<S> {
    async fn input(&self, index: u32) -> Result<(&Shard<S>, Arc<S::Source>), ConnectorError> {
        let i = index as usize;
        let shard = self
            .inputs
            .get(i)
            .ok_or_else(|| ConnectorError::batch(format!("input {index} is not in this shard")))?;
        let (source, _) = self.built[i]
            .get_or_try_init(|| async {
                let (source, scope) = shard.build_scoped().await?;
                Ok::<_, ConnectorError>((Arc::new(source), scope))
            })
            .await
            .map_err(|e| e.context(format_args!("input `{}`", shard.key)))?;
        Ok((shard, source.clone()))
    }

    /// Whether record errors need the input's name: a group of one is named by its shard.
    fn named(&self) -> bool {
        self.inputs.len() > 1
    }
}

impl<S: SourceConfig> Source for InputsReader<S> {
    type Record = S::Record;
    type Offset = GroupOffset<S::Offset>;

    async fn plan(
        &self,
        from: Option<&Self::Offset>,
        batch_size: u64,
        max_batches: usize,
    ) -> Result<Plan<Self::Offset>, ConnectorError> {
        let mut batches = Vec::new();
        let (mut input, mut record, mut at) = match from {
            Some(o) => (o.input, o.record, Some(o.at.clone())),
            None => (0, 0, None),
        };
        while batches.len() < max_batches && (input as usize) < self.inputs.len() {
            let (shard, source) = self.input(input).await?;
            let plan = source
                .plan(at.as_ref(), batch_size, max_batches - batches.len())
                .await
                .map_err(|e| e.context(format_args!("input `{}`", shard.key)))?;
            for b in plan.batches {
                batches.push(PlannedBatch {
                    start: GroupOffset {
                        input,
                        record,
                        at: b.start,
                    },
                    end: GroupOffset {
                        input,
                        record: record + b.records,
                        at: b.end,
                    },
                    records: b.records,
                });
                record += b.records;
            }
            if !plan.end_of_source {
                break;
            }
            input += 1;
            record = 0;
            at = None;
        }
        Ok(Plan {
            batches,
            end_of_source: input as usize >= self.inputs.len(),
        })
    }

    async fn read(
        &self,
        range: &BatchRange<Self::Offset>,
    ) -> Result<ReadBatch<Self::Record>, ConnectorError> {
        if range.start.input != range.end.input {
            return Err(ConnectorError::batch(format!(
                "batch {} spans inputs {} and {}",
                range.index, range.start.input, range.end.input
            )));
        }
        let (shard, source) = self.input(range.start.input).await?;
        let inner = within_input(range);
        let mut read = source
            .read(&inner)
            .await
            .map_err(|e| e.context(format_args!("input `{}`", shard.key)))?;
        if self.named() {
            for e in &mut read.errors {
                *e = RecordError::new(e.position, format!("in `{}`: {}", shard.key, e.message));
            }
        }
        Ok(read)
    }

    /// The input's key and the fingerprint of the version read, so a listing that finds new
    /// files under old names writes new ids. Scopes are set once an input is built, which
    /// its read did.
    fn scope(&self, range: &BatchRange<Self::Offset>) -> Option<(String, u64)> {
        let i = range.start.input as usize;
        let name = match self.built.get(i)?.get() {
            Some((_, scoped)) => scoped.clone(),
            None => self.inputs.get(i)?.key.clone(),
        };
        Some((name, range.start.record))
    }

    async fn raw_records(
        &self,
        range: &BatchRange<Self::Offset>,
        records: &[u64],
    ) -> Result<Vec<(u64, Vec<u8>)>, ConnectorError> {
        let (_, source) = self.input(range.start.input).await?;
        let inner = within_input(range);
        source.raw_records(&inner, records).await
    }

    async fn is_current(&self) -> bool {
        for built in &self.built {
            if let Some((source, _)) = built.get()
                && !source.is_current().await
            {
                return false;
            }
        }
        true
    }
}

/// A range of a group as the range of its one input.
fn within_input<O: crate::connector::Offset>(range: &BatchRange<GroupOffset<O>>) -> BatchRange<O> {
    BatchRange {
        index: range.index,
        start: range.start.at.clone(),
        end: range.end.at.clone(),
        first_record: range.start.record,
        records: range.records,
    }
}

/// The pipeline a shard's child workflow runs: pipeline `P` over a group of `P`'s inputs,
/// registered with `P` under `<workflow>.shard` and its activities.
pub struct Grouped<P>(PhantomData<fn() -> P>);

impl<P: Pipeline> Pipeline for Grouped<P> {
    type Source = Inputs<P::Source>;
    type Sink = P::Sink;
    type State = P::State;
    const NAMES: PipelineNames = PipelineNames {
        workflow: P::NAMES.shard,
        plan: P::NAMES.shard_plan,
        process: P::NAMES.shard_process,
        snapshot: P::NAMES.shard_snapshot,
        // Shards are never incremental: no begin activity is registered for them.
        begin: P::NAMES.begin,
        sharded: P::NAMES.sharded,
        list: P::NAMES.list,
        shard: P::NAMES.shard,
        shard_plan: P::NAMES.shard_plan,
        shard_process: P::NAMES.shard_process,
        shard_snapshot: P::NAMES.shard_snapshot,
        stream: P::NAMES.stream,
    };

    fn transform(
        record: <Self::Source as SourceConfig>::Record,
        state: &Self::State,
    ) -> impl std::future::Future<
        Output = Result<Transformed<<Self::Sink as crate::SinkConfig>::Record>, TransformError>,
    > + Send {
        P::transform(record, state)
    }
}
