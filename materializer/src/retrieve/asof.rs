//! The sort-merge as-of join: a DataFusion [`ExecutionPlan`] over two inputs sorted by the join
//! keys and then time, so it composes with scans, filters and spilling sorts and never builds a
//! cross product or a hash table of either side.
//!
//! Left (entities): the join keys, `__t` (UTC ns) and `__row` (input position).
//! Right (view rows): the same join keys, `__e` (event time), `__c` (created time, nullable) and
//! the features. Both sorted ascending by keys (nulls first), then time (and `__c`, nulls first).
//!
//! For each entity row (keys `k`, time `t`) the output row holds `__row`, the winning view row's
//! features and its `__e`, `__c`: among the rows with keys `k`, `__e <= t`, `__e >= t - ttl` (when
//! ttl > 0) and, with the created cutoff, `__c <= t`, the greatest `(__e, __c)`; a full tie goes to
//! the row whose encoded value blob is greatest — the rule the online store applies, so an offline
//! and an online answer can be compared byte for byte. No candidate → nulls.
//!
//! Memory: the current batch of each side, the view rows of the current key that can still win
//! (without the cutoff: only the latest time's ties), and output not yet emitted.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, TimestampNanosecondArray, UInt64Array, new_null_array,
};
use arrow::compute::interleave;
use arrow::datatypes::{Field, Schema, SchemaRef, TimestampNanosecondType};
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use quiver_online_store::value_codec::should_replace;
use tokio::sync::mpsc::Sender;

use super::merge::{check_partition, merge_properties};
use crate::columns::Layout;

pub const ENTITY_TIME: &str = "__t";
pub const ENTITY_ROW: &str = "__row";
pub const EVENT: &str = "__e";
pub const CREATED: &str = "__c";

/// Right batches retained before pending output is flushed to release them.
const MAX_RETAINED: usize = 64;

/// What the join needs to know besides its inputs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AsOfSpec {
    /// The view's join keys, first columns of both inputs.
    pub keys: usize,
    /// Inclusive lower bound on `t - __e` in ns; 0 = unbounded.
    pub ttl_ns: i64,
    /// Also require `__c <= t`.
    pub created_cutoff: bool,
    /// How the right input's rows encode as value blobs, for full ties. Column names are the
    /// right input's.
    pub layout: Layout,
    pub batch_rows: usize,
}

#[derive(Debug)]
pub struct AsOfExec {
    entities: Arc<dyn ExecutionPlan>,
    rows: Arc<dyn ExecutionPlan>,
    spec: Arc<AsOfSpec>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl AsOfExec {
    pub fn try_new(
        entities: Arc<dyn ExecutionPlan>,
        rows: Arc<dyn ExecutionPlan>,
        spec: AsOfSpec,
    ) -> Result<Self> {
        let right = rows.schema();
        let mut fields = vec![Field::new(
            ENTITY_ROW,
            arrow::datatypes::DataType::UInt64,
            false,
        )];
        for f in right.fields().iter().skip(spec.keys + 2) {
            fields.push(f.as_ref().clone().with_nullable(true));
        }
        for name in [EVENT, CREATED] {
            let f = right.field_with_name(name)?;
            fields.push(f.clone().with_nullable(true));
        }
        let schema = Arc::new(Schema::new(fields));
        let properties = merge_properties("as-of join", &schema, &entities, &rows)?;
        Ok(AsOfExec {
            entities,
            rows,
            spec: Arc::new(spec),
            schema,
            properties,
        })
    }

    pub fn spec(&self) -> &AsOfSpec {
        &self.spec
    }
}

impl DisplayAs for AsOfExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "AsOfExec: keys={}, ttl_ns={}, created_cutoff={}",
            self.spec.keys, self.spec.ttl_ns, self.spec.created_cutoff
        )
    }
}

impl ExecutionPlan for AsOfExec {
    fn name(&self) -> &str {
        "AsOfExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.entities, &self.rows]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 2 {
            return Err(DataFusionError::Internal(
                "as-of join has two children".into(),
            ));
        }
        let rows = children.pop().expect("two children");
        let entities = children.pop().expect("two children");
        Ok(Arc::new(AsOfExec::try_new(
            entities,
            rows,
            self.spec.as_ref().clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        check_partition("as-of join", self, partition)?;
        let entities = self.entities.execute(partition, context.clone())?;
        let rows = self.rows.execute(partition, context)?;
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 2);
        let merge = Merge::new(self.spec.clone(), self.schema.clone(), &self.rows.schema())?;
        let tx = builder.tx();
        builder.spawn(merge.run(entities, rows, tx));
        Ok(builder.build())
    }
}

/// One batch of the right input, ready for row access.
struct RightBatch {
    batch: RecordBatch,
    keys: Rows,
    event: TimestampNanosecondArray,
    created: TimestampNanosecondArray,
    /// Built on the first full tie that needs blobs.
    blobs: Option<crate::columns::Rows>,
}

/// An output row: the entity row's position and its winner (retained batch `seq`, row), if any.
type Decided = (u64, Option<(usize, usize)>);

#[derive(Debug, Clone, Copy)]
struct Candidate {
    seq: usize,
    row: usize,
    event: i64,
    created: Option<i64>,
}

/// The right input as a cursor over a window of retained batches.
struct Right {
    stream: SendableRecordBatchStream,
    converter: Arc<RowConverter>,
    keys: usize,
    /// Retained batches; `batches[0]` has sequence number `base`.
    batches: VecDeque<RightBatch>,
    base: usize,
    /// Next unconsumed row.
    seq: usize,
    row: usize,
    done: bool,
}

impl Right {
    /// The next unconsumed row, loading batches as needed; `None` at the end.
    async fn peek(&mut self) -> Result<Option<(usize, usize)>> {
        loop {
            if let Some(b) = self.batches.get(self.seq - self.base) {
                if self.row < b.batch.num_rows() {
                    return Ok(Some((self.seq, self.row)));
                }
                self.seq += 1;
                self.row = 0;
                continue;
            }
            if self.done {
                return Ok(None);
            }
            match self.stream.next().await {
                None => self.done = true,
                Some(batch) => {
                    let batch = batch?;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    let keys = self
                        .converter
                        .convert_columns(&batch.columns()[..self.keys])?;
                    let event = batch.column(self.keys).as_primitive().clone();
                    let created = batch.column(self.keys + 1).as_primitive().clone();
                    self.batches.push_back(RightBatch {
                        batch,
                        keys,
                        event,
                        created,
                        blobs: None,
                    });
                }
            }
        }
    }

    fn get(&self, seq: usize) -> &RightBatch {
        &self.batches[seq - self.base]
    }

    /// Drops retained batches before `keep`.
    fn release_before(&mut self, keep: usize) {
        while self.base < keep && !self.batches.is_empty() {
            self.batches.pop_front();
            self.base += 1;
        }
    }
}

struct Merge {
    spec: Arc<AsOfSpec>,
    schema: SchemaRef,
    converter: Arc<RowConverter>,
    /// One all-null row per output feature column (and `__e`, `__c`): the "no candidate" source.
    nulls: Vec<ArrayRef>,
}

fn times(batch: &RecordBatch, i: usize) -> &TimestampNanosecondArray {
    batch.column(i).as_primitive::<TimestampNanosecondType>()
}

impl Merge {
    fn new(spec: Arc<AsOfSpec>, schema: SchemaRef, right: &SchemaRef) -> Result<Self> {
        let fields = right.fields()[..spec.keys]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter = Arc::new(RowConverter::new(fields)?);
        let nulls = schema.fields()[1..]
            .iter()
            .map(|f| new_null_array(f.data_type(), 1))
            .collect();
        Ok(Merge {
            spec,
            schema,
            converter,
            nulls,
        })
    }

    /// The right input columns copied to the output, by index: features, then `__e`, `__c`.
    fn right_columns(&self, width: usize) -> Vec<usize> {
        let k = self.spec.keys;
        ((k + 2)..width).chain([k, k + 1]).collect()
    }

    async fn run(
        self,
        mut entities: SendableRecordBatchStream,
        rows: SendableRecordBatchStream,
        tx: Sender<Result<RecordBatch>>,
    ) -> Result<()> {
        let width = rows.schema().fields().len();
        let columns = self.right_columns(width);
        let mut right = Right {
            stream: rows,
            converter: self.converter.clone(),
            keys: self.spec.keys,
            batches: VecDeque::new(),
            base: 0,
            seq: 0,
            row: 0,
            done: false,
        };
        let mut group_key: Option<OwnedRow> = None;
        let mut group: Vec<Candidate> = Vec::new();
        // Decided output rows: (entity row position, winning right row). One vector, so a
        // flush can never see a position without its winner.
        let mut decided: Vec<Decided> = Vec::with_capacity(self.spec.batch_rows);
        let k = self.spec.keys;
        while let Some(batch) = entities.next().await {
            let batch = batch?;
            let keys = self.converter.convert_columns(&batch.columns()[..k])?;
            let key_is_null = |r: usize| batch.columns()[..k].iter().any(|c| c.is_null(r));
            let t = times(&batch, k);
            let positions = batch
                .column(k + 1)
                .as_primitive::<arrow::datatypes::UInt64Type>();
            for r in 0..batch.num_rows() {
                // A row is pushed only once its winner is decided: advancing the right side to
                // its key (below) may flush, and must emit only earlier rows.
                let pick = if key_is_null(r) || t.is_null(r) {
                    None
                } else {
                    let key = keys.row(r);
                    let t = t.value(r);
                    if group_key.as_ref().is_none_or(|g| g.row() != key) {
                        group.clear();
                        group_key = Some(key.owned());
                        while let Some((seq, row)) = right.peek().await? {
                            if right.get(seq).keys.row(row) >= key {
                                break;
                            }
                            right.row += 1;
                            if right.batches.len() > MAX_RETAINED
                                && !self
                                    .flush(&mut right, &columns, &mut decided, &[], &tx)
                                    .await?
                            {
                                return Ok(());
                            }
                        }
                    }
                    while let Some((seq, row)) = right.peek().await? {
                        let b = right.get(seq);
                        if b.keys.row(row) != key || b.event.value(row) > t {
                            break;
                        }
                        let c = Candidate {
                            seq,
                            row,
                            event: b.event.value(row),
                            created: (!b.created.is_null(row)).then(|| b.created.value(row)),
                        };
                        if !self.spec.created_cutoff
                            && group
                                .last()
                                .is_some_and(|l| (l.event, l.created) != (c.event, c.created))
                        {
                            group.clear();
                        }
                        group.push(c);
                        right.row += 1;
                    }
                    self.choose(&mut right, &group, t)?
                };
                decided.push((positions.value(r), pick));
                if (decided.len() >= self.spec.batch_rows || right.batches.len() > MAX_RETAINED)
                    && !self
                        .flush(&mut right, &columns, &mut decided, &group, &tx)
                        .await?
                {
                    return Ok(());
                }
            }
        }
        self.flush(&mut right, &columns, &mut decided, &group, &tx)
            .await?;
        Ok(())
    }

    /// The winner among `group` (this key's consumed rows, ascending by time) for time `t`.
    fn choose(
        &self,
        right: &mut Right,
        group: &[Candidate],
        t: i64,
    ) -> Result<Option<(usize, usize)>> {
        let eligible =
            |c: &Candidate| !self.spec.created_cutoff || c.created.is_none_or(|x| x <= t);
        let Some(last) = group.iter().rposition(eligible) else {
            return Ok(None);
        };
        let best = group[last];
        if self.spec.ttl_ns > 0 && best.event < t.saturating_sub(self.spec.ttl_ns) {
            return Ok(None);
        }
        // Candidates are ascending by (event, created): the ties with `best` end the slice.
        let same = |c: &&Candidate| (c.event, c.created) == (best.event, best.created);
        if last == 0 || !same(&&group[last - 1]) {
            // The common case, decided without allocating: one row at the latest time.
            return Ok(Some((best.seq, best.row)));
        }
        let ties: Vec<Candidate> = group[..=last]
            .iter()
            .rev()
            .take_while(same)
            .filter(|c| eligible(c))
            .copied()
            .collect();
        // A full tie: the greatest value blob wins, as in the online store.
        let mut winner: Option<(Vec<u8>, Candidate)> = None;
        for c in ties {
            let b = &mut right.batches[c.seq - right.base];
            if b.blobs.is_none() {
                b.blobs = Some(
                    crate::columns::Rows::new(&b.batch, &self.spec.layout)
                        .map_err(DataFusionError::Execution)?,
                );
            }
            let blob = b.blobs.as_ref().expect("built above").encode(
                c.row,
                c.event,
                c.created,
                Vec::new(),
            );
            if winner
                .as_ref()
                .is_none_or(|(w, _)| should_replace(&blob, w))
            {
                winner = Some((blob, c));
            }
        }
        Ok(winner.map(|(_, c)| (c.seq, c.row)))
    }

    /// Emits the rows decided so far and releases right batches nothing refers to any more;
    /// false when the consumer has gone away.
    async fn flush(
        &self,
        right: &mut Right,
        columns: &[usize],
        decided: &mut Vec<Decided>,
        group: &[Candidate],
        tx: &Sender<Result<RecordBatch>>,
    ) -> Result<bool> {
        if !decided.is_empty() {
            // Source 0 is the all-null row; source i + 1 is retained batch i.
            let indices: Vec<(usize, usize)> = decided
                .iter()
                .map(|(_, p)| match p {
                    None => (0, 0),
                    Some((seq, row)) => (seq - right.base + 1, *row),
                })
                .collect();
            let positions = UInt64Array::from_iter_values(decided.iter().map(|(r, _)| *r));
            let mut out: Vec<ArrayRef> = vec![Arc::new(positions)];
            for (i, &c) in columns.iter().enumerate() {
                let mut sources: Vec<&dyn Array> = vec![self.nulls[i].as_ref()];
                sources.extend(right.batches.iter().map(|b| b.batch.column(c).as_ref()));
                out.push(interleave(&sources, &indices)?);
            }
            decided.clear();
            let batch = RecordBatch::try_new(self.schema.clone(), out)?;
            if tx.send(Ok(batch)).await.is_err() {
                return Ok(false);
            }
        }
        let keep = group.iter().map(|c| c.seq).min().unwrap_or(right.seq);
        right.release_before(keep.min(right.seq));
        Ok(true)
    }
}
