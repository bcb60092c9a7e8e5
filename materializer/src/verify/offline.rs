//! The offline answer for the sampled entities: the point-in-time retrieval at the watermark,
//! with the winning row's times, the view's ttl lifted (the store keeps a value until it is
//! replaced; the ttl is applied when serving).

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use futures::TryStreamExt;
use quiver_registry::{FeatureRef, FeatureView, Field, Ttl};

use super::VerifyJob;
use crate::columns::{Layout, Rows};
use crate::error::{Error, Result};
use crate::output_names::output_name;
use crate::retrieve::{Engine, EntityInput, Options, Request, retrieve, stream_error};

/// The retrieval's rows for the entities of `sampled` (join keys and `event_timestamp`).
pub(super) async fn offline_rows(
    job: &VerifyJob<'_>,
    view: &FeatureView,
    sampled: RecordBatch,
) -> Result<Rows> {
    let name = format!("the sampled entities of `{}`", view.name);
    let input = EntityInput::from_batches(sampled.schema(), vec![sampled], None, &name)?;
    let mut unbounded = job.registry.registry.clone();
    if let Some(v) = unbounded.feature_views.get_mut(&view.name) {
        v.ttl = Ttl { seconds: 0 };
    }
    let features: Vec<FeatureRef> = view
        .features
        .iter()
        .map(|f| FeatureRef {
            view: view.name.clone(),
            feature: f.name.clone(),
        })
        .collect();
    let request = Request {
        registry: &unbounded,
        root: job.root,
        features: &features,
        entities: &input,
        options: Options {
            full_feature_names: true,
            created_cutoff: false,
        },
    };
    let engine = Engine {
        with_times: true,
        ..job.engine.clone()
    };
    let retrieval = retrieve(&request, &engine).await?;
    let schema = retrieval.schema.clone();
    let batches: Vec<RecordBatch> = retrieval.stream.try_collect().await.map_err(stream_error)?;
    let offline = concat_batches(&schema, &batches).map_err(Error::arrow(format!(
        "computing `{}` offline at the watermark",
        view.name
    )))?;
    Rows::new(&offline, &layout(job, view)).map_err(Error::Invalid)
}

/// The retrieval's columns as the online layout: the join keys, the winner's times, the
/// features under their full names.
fn layout(job: &VerifyJob<'_>, view: &FeatureView) -> Layout {
    let registry = &job.registry.registry;
    Layout {
        join_keys: registry.join_keys(view).into_iter().cloned().collect(),
        timestamp: format!("{}__event_timestamp", view.name),
        created: Some(format!("{}__created_timestamp", view.name)),
        features: view
            .features
            .iter()
            .map(|f| Field {
                name: output_name(&view.name, &f.name, true),
                ..f.clone()
            })
            .collect(),
    }
}
