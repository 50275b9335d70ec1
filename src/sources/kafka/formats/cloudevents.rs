use serde_json::Value;

use super::{Event, scalar, scalars_into};
use crate::signal::{Labels, Signal};

impl Event<'_> {
    /// CloudEvents 1.0: `source` + `id` identify the event (the spec makes
    /// the pair unique). Context attributes become `ce_*` labels, extension
    /// attributes and the top-level scalars of a JSON `data` become labels.
    pub(super) fn cloudevent(&self) -> Result<Signal, String> {
        let version = self.required("specversion")?;
        if version != "1.0" {
            return Err(format!("specversion {version:?} is not \"1.0\""));
        }
        let (id, source, kind) = (
            self.required("id")?,
            self.required("source")?,
            self.required("type")?,
        );
        let mut labels = Labels::new();
        if let Some(Value::Object(data)) = self.obj.get("data") {
            scalars_into(data, &mut labels);
        }
        const CONTEXT: [&str; 8] = [
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "data",
            "data_base64",
            "datacontenttype",
        ];
        let extensions = self
            .obj
            .iter()
            .filter(|(k, _)| !CONTEXT.contains(&k.as_str()) && k.as_str() != "dataschema");
        for (k, v) in extensions {
            if let Some(s) = scalar(v) {
                labels.insert(k.clone(), s);
            }
        }
        labels.insert("ce_source".into(), source.into());
        labels.insert("ce_type".into(), kind.into());
        let at = self.time("time")?;
        Ok(self.signal(format!("{source}/{id}"), kind, labels, at))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use crate::sources::kafka::formats::Format;
    use crate::sources::kafka::formats::tests::decode;

    #[test]
    fn cloudevent_maps_context_extensions_and_data() {
        let s = decode(
            &Format::Cloudevents,
            json!({"specversion": "1.0", "id": "e-1", "source": "/payments/api", "type": "com.example.payment.failed",
                   "time": "2026-11-25T02:59:00Z", "region": "ap-northeast-2", "datacontenttype": "application/json",
                   "data": {"service": "payment", "code": 503, "nested": {"x": 1}}}),
        )
        .unwrap();
        assert_eq!(s.fingerprint, "/payments/api/e-1");
        assert_eq!(s.name, "com.example.payment.failed");
        assert_eq!(s.labels["service"], "payment");
        assert_eq!(s.labels["code"], "503");
        assert_eq!(s.labels["region"], "ap-northeast-2");
        assert_eq!(s.labels["ce_source"], "/payments/api");
        assert!(!s.labels.contains_key("nested"));
        assert_eq!(
            s.starts_at,
            "2026-11-25T02:59:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(s.ends_at, Some(s.starts_at), "point-in-time");
        let err = decode(
            &Format::Cloudevents,
            json!({"specversion": "0.3", "id": "1"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("specversion \"0.3\""), "{err}");
        let err = decode(
            &Format::Cloudevents,
            json!({"specversion": "1.0", "id": "1", "type": "t"}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a cloudevents event: missing or empty string field \"source\""
        );
    }
}
