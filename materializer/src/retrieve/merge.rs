//! What the two sorted merges of retrieval ([`super::asof::AsOfExec`] and
//! [`super::window::WindowAggExec`]) share: their inputs and output as DataFusion sees them.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{ExecutionPlan, Partitioning, PlanProperties};

/// The properties of a merge of two single sorted partitions (entity keys/times and a view's
/// rows) into one streamed partition; an input of several partitions is refused.
pub(super) fn merge_properties(
    what: &str,
    schema: &SchemaRef,
    entities: &Arc<dyn ExecutionPlan>,
    rows: &Arc<dyn ExecutionPlan>,
) -> Result<Arc<PlanProperties>> {
    for (side, plan) in [("entity", entities), ("view", rows)] {
        if plan.properties().partitioning.partition_count() != 1 {
            return Err(DataFusionError::Internal(format!(
                "{what}: the {side} input must be one sorted partition"
            )));
        }
    }
    Ok(Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Incremental,
        Boundedness::Bounded,
    )))
}
