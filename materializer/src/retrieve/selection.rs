//! What a user's selection names: a feature service, or `view:feature` and `view` references.

use quiver_registry::{FeatureRef, Registry};

use crate::error::{Error, Result};

/// The features a selection names: a feature service, or comma-separated `view:feature` / `view`.
pub fn resolve_selection(registry: &Registry, selection: &str) -> Result<Vec<FeatureRef>> {
    if let Some(service) = registry.feature_services.get(selection.trim()) {
        return Ok(service.features.clone());
    }
    let mut refs = Vec::new();
    for part in selection
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let view = part.split(':').next().unwrap_or(part);
        if registry.feature_services.contains_key(part) {
            return Err(Error::Invalid(format!(
                "`{part}` is a feature service: name it alone, or list `view:feature` references without it"
            )));
        }
        if let Some(v) = part.strip_suffix(':')
            && registry.feature_views.contains_key(v)
        {
            return Err(Error::Invalid(format!(
                "`{part}` names no feature: write `{v}:FEATURE`, or `{v}` for all of its features"
            )));
        }
        refs.extend(registry.resolve_ref(part).map_err(|e| {
            // A hint only for a name that is not a view; never the name itself.
            let hint = if registry.feature_views.contains_key(view) {
                None
            } else {
                let names = registry
                    .feature_services
                    .keys()
                    .chain(registry.feature_views.keys())
                    .map(String::as_str)
                    .filter(|n| *n != view);
                quiver_registry::did_you_mean(view, names)
            };
            let hint = hint.map(|h| format!("; {h}")).unwrap_or_default();
            Error::Invalid(format!(
                "`{part}` is neither a feature service nor a feature reference: {e}{hint}"
            ))
        })?);
    }
    if refs.is_empty() {
        return Err(Error::Invalid(
            "no features given: name a feature service or `view:feature` references".into(),
        ));
    }
    Ok(refs)
}
