use super::{Event, point_fingerprint};
use crate::signal::Signal;

/// The signal name deploy events get; rules tell a deploy from a failure
/// by it (`signals.exists(s, s.name == "Deploy")`).
pub const DEPLOY_NAME: &str = "Deploy";

impl Event<'_> {
    pub(super) fn deploy(&self) -> Result<Signal, String> {
        let service = self.required("service")?;
        let version = self.required("version")?;
        let sent = self.sent_at("time")?;
        let at = sent.unwrap_or(self.now);
        let mut labels = self.labels_object()?;
        labels.insert("service".into(), service.into());
        labels.insert("version".into(), version.into());
        for key in ["previous_version", "region", "zone", "environment"] {
            if let Some(v) = self.str(key) {
                labels.insert(key.into(), v.into());
            }
        }
        let fingerprint = match self.str("id") {
            Some(id) => id.to_owned(),
            None => point_fingerprint(&labels, sent),
        };
        Ok(self.signal(fingerprint, DEPLOY_NAME, labels, at))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::DEPLOY_NAME;
    use crate::sources::kafka::formats::Format;
    use crate::sources::kafka::formats::tests::{decode, now};

    #[test]
    fn deploy_event_is_point_in_time_and_stable_without_id() {
        let ev = json!({"service": "order", "version": "1.4.2", "previous_version": "1.4.1",
                        "time": "2026-11-25T02:55:00Z", "region": "ap-northeast-2", "labels": {"team": "orders"}});
        let a = decode(&Format::Deploy, ev.clone()).unwrap();
        let b = decode(&Format::Deploy, ev).unwrap();
        assert_eq!(a.name, DEPLOY_NAME);
        assert_eq!(
            a.fingerprint, b.fingerprint,
            "a re-delivery is the same signal"
        );
        assert_eq!(a.labels["previous_version"], "1.4.1");
        assert_eq!(a.labels["team"], "orders");
        assert_eq!(a.ends_at, Some(a.starts_at));
        let other = decode(
            &Format::Deploy,
            json!({"service": "order", "version": "1.4.3", "time": "2026-11-25T02:56:00Z"}),
        )
        .unwrap();
        assert_ne!(other.fingerprint, a.fingerprint);
        let err = decode(&Format::Deploy, json!({"version": "1"})).unwrap_err();
        assert!(err.to_string().contains("\"service\""), "{err}");
    }

    /// The kafka fuzz targets check this (redelivery): without an id or a time the
    /// fingerprint was taken over the receipt time, so a redelivery an hour
    /// later counted as a second deploy.
    #[test]
    fn redelivery_without_id_or_time_is_the_same_signal() {
        let payload = br#"{"service": "order", "version": "1.4.3"}"#;
        let at = |h: i64| now() + chrono::Duration::hours(h);
        let first = Format::Deploy
            .decode(Some(payload), 1 << 20, at(0))
            .unwrap();
        let again = Format::Deploy
            .decode(Some(payload), 1 << 20, at(1))
            .unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        assert_eq!(again.starts_at, at(1), "still stamped when it arrived");
        let timed = br#"{"service": "order", "version": "1.4.3", "time": "2026-11-25T02:56:00Z"}"#;
        let other = Format::Deploy.decode(Some(timed), 1 << 20, at(0)).unwrap();
        assert_ne!(
            other.fingerprint, first.fingerprint,
            "its own time is part of it"
        );
    }
}
