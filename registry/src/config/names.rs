//! The names users give: projects, entities, sources, views, features and services.

/// The longest name of a project, entity, source, view, feature or service, in characters:
/// names become parts of file names and keys, which have limits of their own.
pub const MAX_NAME_LEN: usize = 100;

/// Names of projects, entities, views, features and services: what can safely appear in keys,
/// file names, column names and SQL without quoting.
pub fn is_identifier(name: &str) -> bool {
    check_name("", name).is_ok()
}

/// Checks a name; on error, the message (`invalid {what} name …`) and a hint.
pub fn check_name(what: &str, name: &str) -> std::result::Result<(), (String, String)> {
    let mut chars = name.chars();
    let well_formed = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        return Err((
            format!("invalid {what} name `{name}`"),
            "names use letters, digits and `_`, and do not start with a digit".into(),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err((
            format!(
                "invalid {what} name `{}…`: names are at most {MAX_NAME_LEN} characters, this one has {}",
                &name[..40],
                name.len()
            ),
            format!("shorten the name to at most {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(())
}
