//! Feature services: lists of `view:feature` references and whole views.

use super::{Kind, Validator, at};
use crate::definitions::DefinitionFile;
use crate::hint::did_you_mean;
use crate::model::{FeatureRef, FeatureService};

impl Validator {
    pub(super) fn services(&mut self, file: &str, defs: &DefinitionFile) {
        for def in &defs.feature_services {
            let declared = self.declare(Kind::Service, file, &def.name);
            let from = format!("feature service `{}`", def.name.value);
            if def.features.value.is_empty() {
                self.error(
                    file,
                    at(&def.features),
                    format!("{from} lists no features"),
                    Some("list `view:feature` references or whole views".into()),
                );
                continue;
            }
            let mut refs: Vec<FeatureRef> = Vec::new();
            let mut ok = true;
            for r in &def.features.value {
                let view = r.value.split(':').next().unwrap_or_default();
                if !self.registry.feature_views.contains_key(view)
                    && self.places.contains_key(&(Kind::View, view.to_string()))
                {
                    ok = false; // the view is invalid; reported at its definition
                    continue;
                }
                match self.registry.resolve_ref(&r.value) {
                    Ok(resolved) => {
                        for fr in resolved {
                            if refs.contains(&fr) {
                                self.error(
                                    file,
                                    at(r),
                                    format!("{from} lists `{fr}` twice"),
                                    Some("remove the repeated reference".into()),
                                );
                                ok = false;
                            } else {
                                refs.push(fr);
                            }
                        }
                    }
                    Err(message) => {
                        ok = false;
                        let hint = self.ref_hint(&r.value);
                        self.error(file, at(r), format!("{from}: {message}"), hint);
                    }
                }
            }
            if ok && declared {
                self.registry.feature_services.insert(
                    def.name.value.clone(),
                    FeatureService {
                        name: def.name.value.clone(),
                        features: refs,
                        description: def.description.clone(),
                        tags: def.tags.clone(),
                    },
                );
            }
        }
    }

    fn ref_hint(&self, text: &str) -> Option<String> {
        let (view, feature) = text.split_once(':').unwrap_or((text, ""));
        match self.registry.feature_views.get(view) {
            Some(v) => did_you_mean(feature, v.features.iter().map(|f| f.name.as_str())).map(|h| {
                h.replace('`', "")
                    .replace("did you mean ", &format!("did you mean `{view}:"))
                    .replace('?', "`?")
            }),
            None => {
                let views: Vec<&str> = self
                    .registry
                    .feature_views
                    .keys()
                    .map(String::as_str)
                    .collect();
                did_you_mean(view, views.iter().copied()).or_else(|| {
                    Some(if views.is_empty() {
                        "define it under `feature_views:`".to_string()
                    } else {
                        format!("defined feature views: {}", views.join(", "))
                    })
                })
            }
        }
    }
}
