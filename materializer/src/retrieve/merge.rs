//! What the two sorted merges of retrieval ([`super::asof::AsOfExec`] and
//! [`super::window::WindowAggExec`]) share: their inputs and output as DataFusion sees them.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{ExecutionPlan, Partitioning, PlanProperties};

/// The properties of a merge of two sorted inputs (entity keys/times and a view's rows) of the
/// same number of partitions, partition `i` of one with partition `i` of the other (both
/// hash-partitioned by the join keys, or one partition each): one streamed output partition
/// per input partition.
pub(super) fn merge_properties(
    what: &str,
    schema: &SchemaRef,
    entities: &Arc<dyn ExecutionPlan>,
    rows: &Arc<dyn ExecutionPlan>,
) -> Result<Arc<PlanProperties>> {
    let partitions = entities.properties().partitioning.partition_count();
    if rows.properties().partitioning.partition_count() != partitions {
        return Err(DataFusionError::Internal(format!(
            "{what}: the entity input has {partitions} partitions, the view input {}",
            rows.properties().partitioning.partition_count()
        )));
    }
    Ok(Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Incremental,
        Boundedness::Bounded,
    )))
}

/// Checks that `partition` is one of `plan`'s.
pub(super) fn check_partition(
    what: &str,
    plan: &dyn ExecutionPlan,
    partition: usize,
) -> Result<()> {
    let partitions = plan.properties().partitioning.partition_count();
    if partition >= partitions {
        return Err(DataFusionError::Internal(format!(
            "{what} has {partitions} partitions, not partition {partition}"
        )));
    }
    Ok(())
}
