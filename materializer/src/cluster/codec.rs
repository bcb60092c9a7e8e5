//! How Quiver's operators travel to a cluster's processes: retrieval's merges
//! ([`AsOfExec`], [`WindowAggExec`]) are encoded as their spec (JSON, after a tag), their
//! inputs by DataFusion's own encoding; everything else is Ballista's. The client encodes a
//! retrieval's plan with it, the scheduler decodes it and encodes each stage's tasks with it,
//! executors decode them (`quiver ballista scheduler|executor` register it).

use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use crate::retrieve::asof::{AsOfExec, AsOfSpec};
use crate::retrieve::window::{WindowAggExec, WindowSpec};

/// What starts the encoding of one of Quiver's operators (Ballista's own start with a
/// protobuf field tag, never with this text).
const TAG: &[u8] = b"quiver-node-v1:";

/// Ballista's physical codec, knowing Quiver's operators too.
#[derive(Debug, Default)]
pub struct QuiverPhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

#[derive(Serialize, Deserialize)]
enum Node {
    AsOf(AsOfSpec),
    Window(WindowSpec),
}

impl PhysicalExtensionCodec for QuiverPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(json) = buf.strip_prefix(TAG) else {
            return self.ballista.try_decode(buf, inputs, ctx, proto_converter);
        };
        let node: Node = serde_json::from_slice(json).map_err(|e| {
            DataFusionError::Internal(format!(
                "a Quiver operator sent by a client of another version? ({e}); run the same quiver on the client, scheduler and executors"
            ))
        })?;
        let [entities, rows] = inputs else {
            return Err(DataFusionError::Internal(format!(
                "a Quiver merge has two inputs, not {}",
                inputs.len()
            )));
        };
        let (entities, rows) = (entities.clone(), rows.clone());
        Ok(match node {
            Node::AsOf(spec) => Arc::new(AsOfExec::try_new(entities, rows, spec)?),
            Node::Window(spec) => Arc::new(WindowAggExec::try_new(entities, rows, spec)?),
        })
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let ours = if let Some(exec) = node.downcast_ref::<AsOfExec>() {
            Node::AsOf(exec.spec().clone())
        } else if let Some(exec) = node.downcast_ref::<WindowAggExec>() {
            Node::Window(exec.spec().clone())
        } else {
            return self.ballista.try_encode(node, buf, proto_converter);
        };
        buf.extend_from_slice(TAG);
        serde_json::to_writer(buf, &ours)
            .map_err(|e| DataFusionError::Internal(format!("encoding {}: {e}", node.name())))
    }
}
