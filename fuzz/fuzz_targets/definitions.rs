//! Any text as a definition file: parsing and validation report problems, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_registry::definitions::DefinitionFile;
use quiver_registry::source_schema::SchemaResolver;

/// Sources of unknown schema: validation checks everything but the Parquet columns.
struct NoSchemas;

impl SchemaResolver for NoSchemas {
    fn view_input_schema(
        &self,
        _source: &quiver_registry::Source,
        _query: Option<&str>,
    ) -> Result<Option<arrow::datatypes::SchemaRef>, String> {
        Ok(None)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    if let Ok(file) = DefinitionFile::parse("fuzz.yaml", text, &env) {
        let _ = quiver_registry::validate::validate("fuzz", &[("fuzz.yaml".into(), file)], &NoSchemas);
    }
});
