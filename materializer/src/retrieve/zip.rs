//! The output: the entity table read again in file order, each batch zipped with the same rows
//! of every view's join output (each in input order, on its own task, so the views' sorts
//! proceed side by side). A view that ends early or out of step is an error, never a silent
//! drop.

use std::collections::VecDeque;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{SchemaRef, UInt64Type};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use futures::StreamExt;
use tokio::sync::mpsc::{Receiver, Sender, channel};

use super::{EntityInput, external};
use crate::error::Result;

/// One view's join output in input order, consumed `n` rows at a time.
pub(super) struct ViewStream {
    rx: Receiver<datafusion::error::Result<RecordBatch>>,
    pending: VecDeque<RecordBatch>,
}

impl ViewStream {
    /// Runs `stream` on its own task of `builder`.
    pub(super) fn spawn(
        builder: &mut RecordBatchReceiverStreamBuilder,
        mut stream: SendableRecordBatchStream,
    ) -> Self {
        let (tx, rx) = channel(2);
        builder.spawn(async move {
            while let Some(batch) = stream.next().await {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
            Ok(())
        });
        ViewStream {
            rx,
            pending: VecDeque::new(),
        }
    }

    async fn take(&mut self, n: usize, first_row: u64) -> datafusion::error::Result<RecordBatch> {
        let mut parts = Vec::new();
        let mut have = 0;
        while have < n {
            let batch = match self.pending.pop_front() {
                Some(b) => b,
                None => match self.rx.recv().await {
                    Some(b) => b?,
                    None => {
                        return Err(DataFusionError::Internal(format!(
                            "as-of join ended {} rows early",
                            n - have
                        )));
                    }
                },
            };
            let want = n - have;
            if batch.num_rows() > want {
                self.pending
                    .push_front(batch.slice(want, batch.num_rows() - want));
                parts.push(batch.slice(0, want));
                have = n;
            } else {
                have += batch.num_rows();
                parts.push(batch);
            }
        }
        let schema = match parts.first() {
            Some(b) => b.schema(),
            None => {
                return Err(DataFusionError::Internal("empty take".into()));
            }
        };
        let batch = concat_batches(&schema, &parts)?;
        let rows = batch.column(0).as_primitive::<UInt64Type>();
        if rows.value(0) != first_row || rows.value(n - 1) != first_row + n as u64 - 1 {
            return Err(DataFusionError::Internal(format!(
                "as-of join out of step at entity row {first_row}"
            )));
        }
        Ok(batch)
    }
}

/// Streams the output into `builder`: each batch of the entity table (as
/// [`EntityInput::for_output`] makes it), then the columns `picks` names, (view, column of its
/// join output), taken from the same rows of `views`.
pub(super) fn zip(
    builder: &mut RecordBatchReceiverStreamBuilder,
    input: EntityInput,
    mut views: Vec<ViewStream>,
    picks: Vec<(usize, usize)>,
    schema: SchemaRef,
) {
    let (etx, mut erx) = channel::<Result<RecordBatch>>(2);
    builder.spawn_blocking(move || {
        read_entities(&input, &etx);
        Ok(())
    });
    let tx = builder.tx();
    builder.spawn(async move {
        let mut first_row = 0u64;
        while let Some(batch) = erx.recv().await {
            let batch = batch.map_err(external)?;
            let n = batch.num_rows();
            let mut joined = Vec::with_capacity(views.len());
            for v in &mut views {
                joined.push(v.take(n, first_row).await?);
            }
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            for &(p, c) in &picks {
                columns.push(joined[p].column(c).clone());
            }
            first_row += n as u64;
            let out = RecordBatch::try_new(schema.clone(), columns)?;
            if tx.send(Ok(out)).await.is_err() {
                break;
            }
        }
        Ok(())
    });
}

/// Sends the entity table's batches for the output, in file order, until the first error
/// (sent too) or the receiver is gone.
fn read_entities(input: &EntityInput, etx: &Sender<Result<RecordBatch>>) {
    let reader = match input.reader() {
        Ok(r) => r,
        Err(e) => {
            let _ = etx.blocking_send(Err(e));
            return;
        }
    };
    let mut row = 0u64;
    for batch in reader {
        let batch = batch
            .map_err(|e| input.read_error(e))
            .and_then(|b| input.for_output(&b, row));
        row += batch.as_ref().map_or(0, |b| b.num_rows() as u64);
        let stop = batch.is_err();
        if etx.blocking_send(batch).is_err() || stop {
            break;
        }
    }
}
