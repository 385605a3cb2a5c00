//! The audit record of a change: what was asked, as the history shows it.
//!
//! The journal's `summary` column holds a JSON array, one object per change
//! of a batch (`action`, `name`, `type`, `ttl`, `records` in presentation
//! format), or one `import` object. The core writes it for every entry
//! point, so a change reads the same in the history whoever made it.

use ferrodns_proto::rdata::write_rdata;
use ferrodns_zone::edit::{Action, Change, ImportMode};
use serde_json::{json, Value};

/// The summary of a batch.
pub fn changes(changes: &[Change]) -> String {
    Value::Array(changes.iter().map(change).collect()).to_string()
}

/// The summary of an import of `records` records.
pub fn import(mode: ImportMode, records: usize) -> String {
    json!([{"action": "import", "mode": mode.as_str(), "records": records}]).to_string()
}

fn change(change: &Change) -> Value {
    let mut value = json!({
        "action": change.action.as_str(),
        "name": change.owner.to_string(),
        "type": change.rtype.to_string(),
    });
    if change.action != Action::Delete {
        value["ttl"] = change.ttl.into();
    }
    if !(change.action == Action::Delete && change.rdatas.is_empty()) {
        let records: Vec<String> = change
            .rdatas
            .iter()
            .map(|rdata| {
                let mut text = String::new();
                write_rdata(change.rtype, rdata, &mut text);
                text
            })
            .collect();
        value["records"] = records.into();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrodns_proto::{Name, RecordType};

    #[test]
    fn summaries_read_as_the_history_shows_them() {
        let owner = Name::parse("www.example.com.", None).unwrap();
        let batch = [
            Change {
                action: Action::Upsert,
                owner: owner.clone(),
                rtype: RecordType::A,
                ttl: Some(60),
                rdatas: vec![vec![192, 0, 2, 1]],
            },
            Change { action: Action::Delete, owner, rtype: RecordType::AAAA, ttl: None, rdatas: vec![] },
        ];
        assert_eq!(
            changes(&batch),
            r#"[{"action":"upsert","name":"www.example.com.","records":["192.0.2.1"],"ttl":60,"type":"A"},{"action":"delete","name":"www.example.com.","type":"AAAA"}]"#
        );
        assert_eq!(import(ImportMode::Merge, 3), r#"[{"action":"import","mode":"merge","records":3}]"#);
    }
}
