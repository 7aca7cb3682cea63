//! How the CLI prints: aligned tables for lists, `field: value` lines for one resource.

use serde_json::Value;

/// A cell: strings as they are (any hidden character escaped, so no server text can steer the
/// terminal), null as `-`, anything else as compact JSON.
pub(crate) fn cell(value: &Value) -> String {
    let shown = match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let joined: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            if joined.is_empty() {
                "-".to_owned()
            } else {
                joined.join(",")
            }
        }
        other => other.to_string(),
    };
    crate::text::printable(&shown).into_owned()
}

/// `rows` as a table with these `columns` (JSON field names, upper-cased as headings).
pub(crate) fn table(rows: &[Value], columns: &[&str]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|column| cell(&row[*column])).collect())
        .collect();
    let headings: Vec<String> = columns.iter().map(|column| column.to_uppercase()).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|index| {
            cells
                .iter()
                .map(|row| row[index].chars().count())
                .chain([headings[index].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&headings).chain(cells.iter()) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(text, width)| format!("{text:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One resource as `field: value` lines, in the API's field order.
pub(crate) fn record(value: &Value) -> String {
    let Some(fields) = value.as_object() else {
        return format!("{value}\n");
    };
    let width = fields.keys().map(String::len).max().unwrap_or(0);
    fields
        .iter()
        .map(|(name, value)| {
            format!(
                "{:<width$}  {}\n",
                format!("{name}:"),
                cell(value),
                width = width + 1
            )
        })
        .collect()
}
