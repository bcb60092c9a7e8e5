//! Windowed aggregates at each entity row's time: a DataFusion [`ExecutionPlan`] over the same
//! two sorted inputs as [`super::asof::AsOfExec`] — the entity keys/times and the view's events,
//! both ascending by (join keys, time) — in one streaming pass.
//!
//! Left (entities): the join keys, `__t` (UTC ns) and `__row`. Right (events): the join keys,
//! `__e`, `__c` and the columns the aggregates read, sorted by keys, `__e`, `__c`.
//!
//! For each key, events up to the entity row's time are folded into the current tile; a tile
//! left behind goes into one sliding-window queue per aggregate (two stacks: amortized O(1)
//! per tile in and out, so each event and each tile is touched a constant number of times,
//! and nothing ever rescans a window). An aggregate's value at `t` is its queue (the complete
//! tiles from its first tile) merged with the current tile, when that is in the window — the
//! window rule of `quiver_registry::aggregation`.
//!
//! Output per entity row: `__row`, each aggregate's value, and `__e`, `__c` of the latest event
//! in the longest window. Memory: the current batch of each side, and per key the tiles of the
//! longest window.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampNanosecondType};
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use quiver_online_store::aggregate::Partial;
use quiver_online_store::tiles::{Tile, add_to_tile, empty_tile};
use quiver_online_store::value_codec::Value;
use quiver_registry::Aggregations;
use quiver_registry::aggregation::tile_of;
use tokio::sync::mpsc::Sender;

mod output;

use output::Output;

use super::asof::{CREATED, ENTITY_ROW, EVENT};
use super::merge::{check_partition, merge_properties};
use crate::columns::{Layout, canonical_type, utc_ns};

/// What the aggregation needs besides its inputs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WindowSpec {
    /// The view's join keys, first columns of both inputs.
    pub keys: usize,
    pub aggregations: Aggregations,
    /// The right input as rows: join keys, `__e`, `__c`, and the aggregates' columns as its
    /// features.
    pub layout: Layout,
    /// Per aggregate, the index of its column among the layout's features (`None`: `count` of
    /// events).
    pub columns: Vec<Option<usize>>,
    pub batch_rows: usize,
}

#[derive(Debug)]
pub struct WindowAggExec {
    entities: Arc<dyn ExecutionPlan>,
    rows: Arc<dyn ExecutionPlan>,
    spec: Arc<WindowSpec>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl WindowAggExec {
    pub fn try_new(
        entities: Arc<dyn ExecutionPlan>,
        rows: Arc<dyn ExecutionPlan>,
        spec: WindowSpec,
    ) -> Result<Self> {
        let mut fields = vec![Field::new(ENTITY_ROW, DataType::UInt64, false)];
        for a in &spec.aggregations.items {
            fields.push(Field::new(&a.name, canonical_type(a.output_type()), true));
        }
        fields.push(Field::new(EVENT, utc_ns(), true));
        fields.push(Field::new(CREATED, utc_ns(), true));
        let schema = Arc::new(Schema::new(fields));
        let properties = merge_properties("window aggregation", &schema, &entities, &rows)?;
        Ok(WindowAggExec {
            entities,
            rows,
            spec: Arc::new(spec),
            schema,
            properties,
        })
    }

    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }
}

impl DisplayAs for WindowAggExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "WindowAggExec: keys={}, aggregates={}, hop_ns={}",
            self.spec.keys,
            self.spec.aggregations.items.len(),
            self.spec.aggregations.hop_ns()
        )
    }
}

impl ExecutionPlan for WindowAggExec {
    fn name(&self) -> &str {
        "WindowAggExec"
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
                "window aggregation has two children".into(),
            ));
        }
        let rows = children.pop().expect("two children");
        let entities = children.pop().expect("two children");
        Ok(Arc::new(WindowAggExec::try_new(
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
        check_partition("window aggregation", self, partition)?;
        let entities = self.entities.execute(partition, context.clone())?;
        let rows = self.rows.execute(partition, context)?;
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 2);
        let fields = self.rows.schema().fields()[..self.spec.keys]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let run = Run {
            spec: self.spec.clone(),
            schema: self.schema.clone(),
            converter: RowConverter::new(fields)?,
        };
        let tx = builder.tx();
        builder.spawn(run.run(entities, rows, tx));
        Ok(builder.build())
    }
}

/// A sliding window of tiles for one aggregate, oldest first: a queue of two stacks, so that
/// both ends move in amortized O(1) merges.
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    /// Oldest on top (last); each entry holds its tile and the merge of it and every newer
    /// entry of this stack.
    front: Vec<(i64, Partial)>,
    /// Newest last; each entry its own tile's partial.
    back: Vec<(i64, Partial)>,
    /// The merge of `back`.
    back_total: Partial,
    empty: Partial,
}

impl SlidingWindow {
    pub(crate) fn new(empty: Partial) -> Self {
        SlidingWindow {
            front: Vec::new(),
            back: Vec::new(),
            back_total: empty.clone(),
            empty,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.front.clear();
        self.back.clear();
        self.back_total = self.empty.clone();
    }

    /// Appends a tile newer than every tile held.
    pub(crate) fn push(&mut self, tile: i64, partial: Partial) {
        self.back_total.merge(&partial);
        self.back.push((tile, partial));
    }

    /// Drops the tiles before `first`.
    pub(crate) fn evict_before(&mut self, first: i64) {
        loop {
            if self.front.is_empty() {
                if self.back.first().is_none_or(|(t, _)| *t >= first) {
                    return;
                }
                // Flip: newest first, each entry the merge of itself and all newer ones (the
                // entry pushed just before it), in place.
                for (tile, mut merged) in self.back.drain(..).rev() {
                    if let Some((_, newer)) = self.front.last() {
                        merged.merge(newer);
                    }
                    self.front.push((tile, merged));
                }
                self.back_total.clone_from(&self.empty);
            }
            match self.front.last() {
                Some((t, _)) if *t < first => {
                    self.front.pop();
                }
                _ => return,
            }
        }
    }

    /// The merge of every tile held.
    pub(crate) fn total(&self) -> Partial {
        let mut total = match self.front.last() {
            Some((_, p)) => p.clone(),
            None => self.empty.clone(),
        };
        total.merge(&self.back_total);
        total
    }
}

/// One key's state: the tile being filled, each aggregate's window of complete tiles, the
/// latest event consumed.
struct KeyState {
    head: Option<(i64, Tile)>,
    windows: Vec<SlidingWindow>,
    latest: Option<(i64, Option<i64>)>,
}

impl KeyState {
    fn clear(&mut self) {
        self.head = None;
        self.latest = None;
        for w in &mut self.windows {
            w.clear();
        }
    }
}

/// The current batch of the right input: its keys to compare, its rows to read.
struct RightBatch {
    keys: Rows,
    rows: crate::columns::Rows,
    row: usize,
}

struct Run {
    spec: Arc<WindowSpec>,
    schema: SchemaRef,
    converter: RowConverter,
}

impl Run {
    async fn next_right(&self, rows: &mut SendableRecordBatchStream) -> Result<Option<RightBatch>> {
        while let Some(batch) = rows.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let k = self.spec.keys;
            return Ok(Some(RightBatch {
                keys: self.converter.convert_columns(&batch.columns()[..k])?,
                rows: crate::columns::Rows::new(&batch, &self.spec.layout)
                    .map_err(DataFusionError::Execution)?,
                row: 0,
            }));
        }
        Ok(None)
    }

    async fn run(
        self,
        mut entities: SendableRecordBatchStream,
        mut rows: SendableRecordBatchStream,
        tx: Sender<Result<RecordBatch>>,
    ) -> Result<()> {
        let spec = self.spec.clone();
        let aggs = &spec.aggregations;
        let hop = aggs.hop_ns();
        let max_tiles = aggs.max_tiles();
        let spans: Vec<i64> = aggs.items.iter().map(|a| a.tiles(hop)).collect();
        let mut state = KeyState {
            head: None,
            windows: aggs
                .items
                .iter()
                .map(|a| SlidingWindow::new(Partial::empty(a)))
                .collect(),
            latest: None,
        };
        let mut right = self.next_right(&mut rows).await?;
        let mut group: Option<OwnedRow> = None;
        let mut out = Output::new(&self.schema, aggs, spec.batch_rows);
        let mut values: Vec<Option<Value>> = vec![None; aggs.items.len()];
        let k = spec.keys;
        while let Some(batch) = entities.next().await {
            let batch = batch?;
            let keys = self.converter.convert_columns(&batch.columns()[..k])?;
            let times = batch.column(k).as_primitive::<TimestampNanosecondType>();
            let positions = batch
                .column(k + 1)
                .as_primitive::<arrow::datatypes::UInt64Type>();
            for r in 0..batch.num_rows() {
                let position = positions.value(r);
                if batch.columns()[..k].iter().any(|c| c.is_null(r)) || times.is_null(r) {
                    out.push_nulls(position);
                } else {
                    let key = keys.row(r);
                    let t = times.value(r);
                    if group.as_ref().is_none_or(|g| g.row() != key) {
                        state.clear();
                        group = Some(key.owned());
                        // Skip the events of keys no entity row has.
                        while let Some(b) = right.as_mut() {
                            while b.row < b.keys.num_rows() && b.keys.row(b.row) < key {
                                b.row += 1;
                            }
                            if b.row < b.keys.num_rows() {
                                break;
                            }
                            right = self.next_right(&mut rows).await?;
                        }
                    }
                    // Fold in this key's events up to `t`.
                    while let Some(b) = right.as_mut() {
                        if b.row >= b.keys.num_rows() {
                            right = self.next_right(&mut rows).await?;
                            continue;
                        }
                        let i = b.row;
                        // The plan filtered out rows without an event time.
                        let (event, created) = b.rows.times(i).unwrap_or((i64::MAX, None));
                        if b.keys.row(i) != key || event > t {
                            break;
                        }
                        let tile = tile_of(event, hop);
                        if state.head.as_ref().is_some_and(|(h, _)| *h != tile) {
                            let (h, done) = state.head.take().expect("checked");
                            for (w, p) in state.windows.iter_mut().zip(done.partials) {
                                w.push(h, p);
                            }
                        }
                        let head =
                            &mut state.head.get_or_insert_with(|| (tile, empty_tile(aggs))).1;
                        for (slot, column) in values.iter_mut().zip(&spec.columns) {
                            *slot = column.and_then(|c| b.rows.value(c, i));
                        }
                        add_to_tile(head, aggs, event, created, &values);
                        state.latest = Some((event, created));
                        b.row += 1;
                    }
                    out.push(position, &mut state, aggs, &spans, t, hop, max_tiles);
                }
                if out.len() >= spec.batch_rows {
                    let batch = out.finish()?;
                    if tx.send(Ok(batch)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        if out.len() > 0 {
            let batch = out.finish()?;
            let _ = tx.send(Ok(batch)).await;
        }
        Ok(())
    }
}
