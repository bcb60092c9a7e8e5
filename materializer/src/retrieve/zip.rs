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
        // Every position, not only the ends: a row repeated and another missing between them
        // (a cluster re-running tasks) must not pass.
        let rows = batch.column(0).as_primitive::<UInt64Type>();
        if let Some(at) = (0..n).find(|&i| rows.value(i) != first_row + i as u64) {
            return Err(DataFusionError::Internal(format!(
                "as-of join out of step at entity row {}",
                first_row + at as u64
            )));
        }
        Ok(batch)
    }

    /// Checks that nothing is left after the entity table's last row.
    async fn finish(&mut self, rows: u64) -> datafusion::error::Result<()> {
        let extra = match self.pending.pop_front() {
            Some(b) => Some(b),
            None => self.rx.recv().await.transpose()?,
        };
        match extra {
            Some(b) if b.num_rows() > 0 => Err(DataFusionError::Internal(format!(
                "as-of join out of step: rows beyond the entity table's {rows}"
            ))),
            _ => Ok(()),
        }
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
                return Ok(());
            }
        }
        for v in &mut views {
            v.finish(first_row).await?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::stream::{
        RecordBatchReceiverStreamBuilder, RecordBatchStreamAdapter,
    };

    use super::ViewStream;

    fn view_of(rows: Vec<Vec<u64>>) -> (ViewStream, RecordBatchReceiverStreamBuilder) {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "__row",
            DataType::UInt64,
            false,
        )]));
        let batches: Vec<_> = rows
            .into_iter()
            .map(|r| {
                Ok(
                    RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt64Array::from(r))])
                        .unwrap(),
                )
            })
            .collect();
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(batches),
        ));
        let mut builder = RecordBatchReceiverStreamBuilder::new(schema, 2);
        (ViewStream::spawn(&mut builder, stream), builder)
    }

    /// A join output with one entity row repeated and another missing between the ends of a
    /// chunk (what a cluster re-running tasks returned) is an error, never a shifted table.
    #[tokio::test]
    async fn rows_repeated_missing_or_extra_are_errors() {
        let (mut view, _builder) = view_of(vec![vec![0, 1, 1, 3]]);
        let err = view.take(4, 0).await.unwrap_err().to_string();
        assert!(err.contains("out of step at entity row 2"), "{err}");

        let (mut view, _builder) = view_of(vec![vec![0, 1], vec![2, 3, 4]]);
        assert_eq!(view.take(4, 0).await.unwrap().num_rows(), 4);
        let err = view.finish(4).await.unwrap_err().to_string();
        assert!(err.contains("beyond the entity table's 4"), "{err}");

        let (mut view, _builder) = view_of(vec![vec![0, 1, 2]]);
        assert_eq!(view.take(3, 0).await.unwrap().num_rows(), 3);
        view.finish(3).await.unwrap();
    }
}
