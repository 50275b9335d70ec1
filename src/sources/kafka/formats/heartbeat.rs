use super::Event;
use crate::signal::{Signal, fingerprint_labels};

impl Event<'_> {
    /// Re-sends keep the same fingerprint (name + labels) so they refresh
    /// one live signal; `alertname` is set so rules written for
    /// Alertmanager's Watchdog match a Kafka heartbeat too.
    pub(super) fn heartbeat(&self) -> Result<Signal, String> {
        let name = self.required("name")?;
        let mut labels = self.labels_object()?;
        labels.insert("alertname".into(), name.into());
        let at = self.time("time")?;
        Ok(Signal {
            ends_at: None,
            ..self.signal(fingerprint_labels(&labels), name, labels, at)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::sources::kafka::formats::Format;
    use crate::sources::kafka::formats::tests::decode;

    #[test]
    fn heartbeat_refreshes_one_signal_named_like_the_watchdog() {
        let a = decode(
            &Format::Heartbeat,
            json!({"name": "Watchdog", "labels": {"region": "ap-northeast-2"}}),
        )
        .unwrap();
        let b = decode(&Format::Heartbeat, json!({"name": "Watchdog", "labels": {"region": "ap-northeast-2"}, "time": "2026-11-25T02:59:30Z"})).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.labels["alertname"], "Watchdog");
        assert_eq!(a.ends_at, None, "alive until it stops arriving");
    }
}
