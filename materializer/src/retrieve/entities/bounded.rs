//! What a batch decodes to, and batches counted against a limit and cut to a size.

use std::collections::VecDeque;

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchReader};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;

use super::MAX_BATCH_BYTES;
use crate::error::Error;

/// Batches of another reader, counted and cut: each batch's decoded size (see
/// [`decoded_bytes`]) adds to a total that may not pass the limit (then the reader fails with
/// the limit's message), and a batch larger than [`MAX_BATCH_BYTES`] is passed on in slices.
pub(super) struct Bounded {
    inner: Box<dyn RecordBatchReader + Send>,
    schema: SchemaRef,
    /// The limit and the message of going past it.
    limit: Option<(u64, String)>,
    decoded: u64,
    pending: VecDeque<RecordBatch>,
    done: bool,
}

impl Bounded {
    /// `inner`'s batches, failing with `limit.1` past `limit.0` decoded bytes.
    pub(super) fn new(
        inner: Box<dyn RecordBatchReader + Send>,
        limit: Option<(u64, String)>,
    ) -> Self {
        Bounded {
            schema: inner.schema(),
            inner,
            limit,
            decoded: 0,
            pending: VecDeque::new(),
            done: false,
        }
    }
}

impl Iterator for Bounded {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(batch) = self.pending.pop_front() {
            return Some(Ok(batch));
        }
        if self.done {
            return None;
        }
        let batch = match self.inner.next()? {
            Ok(batch) => batch,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let size = decoded_bytes(&batch);
        self.decoded = self.decoded.saturating_add(size);
        if let Some((max, message)) = &self.limit
            && self.decoded > *max
        {
            self.done = true;
            let e = Error::TooLarge(message.clone());
            return Some(Err(ArrowError::ExternalError(Box::new(e))));
        }
        let rows = batch.num_rows();
        if size <= MAX_BATCH_BYTES || rows < 2 {
            return Some(Ok(batch));
        }
        let pieces = usize::try_from(size.div_ceil(MAX_BATCH_BYTES))
            .unwrap_or(rows)
            .min(rows);
        let step = rows.div_ceil(pieces);
        let mut at = 0;
        while at < rows {
            let n = step.min(rows - at);
            self.pending.push_back(batch.slice(at, n));
            at += n;
        }
        self.pending.pop_front().map(Ok)
    }
}

impl RecordBatchReader for Bounded {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// What `batch` holds decoded, in bytes: its columns' buffers (the part of them it uses), a
/// dictionary's value counted once for every row that uses it — what casting it (a join key,
/// the timestamp) would make of it.
pub fn decoded_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| array_bytes(c.as_ref()))
        .sum()
}

fn array_bytes(array: &dyn Array) -> u64 {
    let plain = |a: &dyn Array| {
        a.to_data()
            .get_slice_memory_size()
            .unwrap_or_else(|_| a.get_array_memory_size()) as u64
    };
    let Some(dictionary) = array.as_any_dictionary_opt() else {
        return plain(array);
    };
    let keys = dictionary.keys();
    let values = dictionary.values();
    if values.is_empty() {
        return plain(keys);
    }
    let lengths: Vec<u64> = match values.data_type() {
        DataType::Utf8 => lengths(values.as_string::<i32>().offsets()),
        DataType::LargeUtf8 => lengths(values.as_string::<i64>().offsets()),
        DataType::Binary => lengths(values.as_binary::<i32>().offsets()),
        DataType::LargeBinary => lengths(values.as_binary::<i64>().offsets()),
        _ => {
            let each = plain(values.as_ref()) / values.len() as u64;
            vec![each; values.len()]
        }
    };
    let used: u64 = dictionary
        .normalized_keys()
        .iter()
        .map(|k| lengths[*k] + 8)
        .sum();
    plain(keys) + used
}

fn lengths<O: arrow::array::OffsetSizeTrait>(offsets: &[O]) -> Vec<u64> {
    offsets
        .windows(2)
        .map(|w| (w[1] - w[0]).as_usize() as u64)
        .collect()
}
