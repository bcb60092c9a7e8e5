//! Per-view agreement as a table, for the terminal.

use super::ViewReport;

/// Per-view agreement as a table, for the terminal.
pub fn render(reports: &[ViewReport]) -> String {
    let mut out = String::new();
    for r in reports {
        if let Some(lost) = &r.lost {
            out.push_str(&format!(
                "{}: DATA LOST — {lost}; run `quiver materialize-incremental` to refill it\n\n",
                r.view
            ));
            continue;
        }
        let Some(w) = &r.watermark else {
            out.push_str(&format!(
                "{}: not materialized yet, nothing to verify\n\n",
                r.view
            ));
            continue;
        };
        render_view(&mut out, r, w);
        out.push('\n');
    }
    out
}

/// A materialized view's report: its agreement per feature, what else was counted, examples.
fn render_view(out: &mut String, r: &ViewReport, watermark: &str) {
    let at = r
        .compared_at
        .as_ref()
        .map(|t| format!(", windows compared at {t}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "{}: {} of {} entities sampled at watermark {}{at} — {}\n",
        r.view,
        r.sampled,
        r.entities,
        watermark,
        if r.agrees() {
            "online = offline"
        } else {
            "DISAGREE"
        }
    ));
    let width = r
        .features
        .iter()
        .map(|f| f.feature.len())
        .max()
        .unwrap_or(7)
        .max(7);
    out.push_str(&format!(
        "  {:width$}  {:>8}  {:>8}  {:>8}  {:>7}\n",
        "feature", "match", "mismatch", "missing", "agree"
    ));
    for f in &r.features {
        let total = f.matched + f.mismatched + f.missing;
        let share = if total == 0 {
            100.0
        } else {
            100.0 * f.matched as f64 / total as f64
        };
        out.push_str(&format!(
            "  {:width$}  {:>8}  {:>8}  {:>8}  {:>6.2}%\n",
            f.feature, f.matched, f.mismatched, f.missing, share
        ));
    }
    if let Some(note) = &r.note {
        out.push_str(&format!("  note: {note}\n"));
    }
    if r.time_mismatches > 0 {
        out.push_str(&format!(
            "  {} entities hold a value from a different row than offline\n",
            r.time_mismatches
        ));
    }
    if r.corrupt > 0 {
        out.push_str(&format!(
            "  {} entities hold a damaged online value (served as NOT_FOUND): materialize the view's full range again to replace them\n",
            r.corrupt
        ));
    }
    if r.ahead > 0 {
        out.push_str(&format!(
            "  {} entities hold a value newer than the watermark (an explicit range past it, or a run in progress): not compared\n",
            r.ahead
        ));
    }
    if r.expired > 0 {
        out.push_str(&format!(
            "  {} entities have no online value because their key expired (key_ttl: older than the ttl), as expected\n",
            r.expired
        ));
    }
    for e in &r.examples {
        out.push_str(&format!("  e.g. {e}\n"));
    }
}
