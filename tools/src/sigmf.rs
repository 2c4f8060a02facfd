//! SigMF metadata (`.sigmf-meta`, SigMF 1.2.0) for one exported channel:
//! the global object (datatype from the channel table, sample rate,
//! version, recorder), one capture segment per contiguous run of samples
//! (with the host time of its first buffer), and one annotation per gap.

use serde_json::{json, Map, Value};

pub const SIGMF_VERSION: &str = "1.2.0";

#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub sample_start: u64,
    /// ISO 8601 UTC; None when unknown (zero filler before the first buffer).
    pub datetime: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub sample_start: u64,
    pub sample_count: u64,
    pub comment: String,
}

pub struct Meta {
    pub datatype: String,
    /// 0 when unknown (then omitted, as SigMF allows).
    pub sample_rate_hz: f64,
    pub description: String,
    pub captures: Vec<Capture>,
    pub annotations: Vec<Annotation>,
}

impl Meta {
    pub fn to_json(&self) -> Value {
        let mut global = Map::new();
        global.insert("core:datatype".into(), json!(self.datatype));
        if self.sample_rate_hz > 0.0 {
            global.insert("core:sample_rate".into(), json!(self.sample_rate_hz));
        }
        global.insert("core:version".into(), json!(SIGMF_VERSION));
        global.insert("core:num_channels".into(), json!(1));
        global.insert("core:recorder".into(), json!("dmarec"));
        global.insert("core:description".into(), json!(self.description));
        let captures: Vec<Value> = self
            .captures
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("core:sample_start".into(), json!(c.sample_start));
                if let Some(t) = &c.datetime {
                    m.insert("core:datetime".into(), json!(t));
                }
                Value::Object(m)
            })
            .collect();
        let annotations: Vec<Value> = self
            .annotations
            .iter()
            .map(|a| {
                json!({
                    "core:sample_start": a.sample_start,
                    "core:sample_count": a.sample_count,
                    "core:comment": a.comment,
                })
            })
            .collect();
        json!({ "global": global, "captures": captures, "annotations": annotations })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_fields_and_optional_rate() {
        let m = Meta {
            datatype: "ci16_le".into(),
            sample_rate_hz: 0.0,
            description: "d".into(),
            captures: vec![Capture {
                sample_start: 0,
                datetime: Some("2026-01-01T00:00:00.000000000Z".into()),
            }],
            annotations: vec![Annotation {
                sample_start: 5,
                sample_count: 0,
                comment: "gap".into(),
            }],
        };
        let v = m.to_json();
        assert_eq!(v["global"]["core:datatype"], "ci16_le");
        assert_eq!(v["global"]["core:version"], "1.2.0");
        assert_eq!(v["global"]["core:recorder"], "dmarec");
        assert!(v["global"].get("core:sample_rate").is_none());
        assert_eq!(v["captures"][0]["core:sample_start"], 0);
        assert_eq!(v["annotations"][0]["core:sample_start"], 5);
        assert_eq!(v["annotations"][0]["core:comment"], "gap");
    }
}
