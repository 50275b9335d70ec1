use std::collections::BTreeMap;

use serde_json::Value;

use super::Event;
use crate::signal::{Labels, Signal, Status};

/// The signal with its `zone` label named as the account names it, where
/// `ids` maps the zone ID it carries (AWS Health may say `apne2-az1`); the
/// ID stays as `zone_id`. Any other signal is returned as it is.
pub fn name_zone(mut signal: Signal, ids: &BTreeMap<String, String>) -> Signal {
    if let Some(name) = signal.labels.get("zone").and_then(|z| ids.get(z)).cloned()
        && let Some(id) = signal.labels.insert("zone".into(), name)
    {
        signal.labels.insert("zone_id".into(), id);
    }
    signal
}

impl Event<'_> {
    /// An AWS Health event keeps its `eventArn` across updates, so an
    /// update refreshes the same signal and `statusCode: closed` ends it.
    pub(super) fn aws_health(&self) -> Result<Signal, String> {
        if self.str("source") != Some("aws.health") {
            return Err("\"source\" is not \"aws.health\"".into());
        }
        let detail = match self.obj.get("detail") {
            Some(Value::Object(d)) => Event {
                obj: d,
                root: self.root,
                now: self.now,
            },
            _ => return Err("missing object field \"detail\"".into()),
        };
        let arn = detail.required("eventArn")?;
        let code = detail.required("eventTypeCode")?;
        let mut labels = Labels::new();
        labels.insert("aws_service".into(), detail.required("service")?.into());
        labels.insert("event_type_code".into(), code.into());
        for (label, key) in [
            ("event_type_category", "eventTypeCategory"),
            ("event_scope", "eventScopeCode"),
            ("zone", "availabilityZone"),
            ("account", "affectedAccount"),
        ] {
            if let Some(v) = detail.str(key) {
                labels.insert(label.into(), v.into());
            }
        }
        // detail.eventRegion is the affected region; the envelope's region
        // is only where the event was delivered.
        let region = detail
            .str("eventRegion")
            .or_else(|| self.str("region"))
            .ok_or("no detail.eventRegion or region")?;
        labels.insert("region".into(), region.into());
        let status = match detail.required("statusCode")? {
            "open" | "upcoming" => Status::Firing,
            "closed" => Status::Resolved,
            other => return Err(format!("unknown detail.statusCode {other:?}")),
        };
        let mut annotations = Labels::new();
        if let Some(Value::Array(descs)) = detail.obj.get("eventDescription")
            && let Some(text) = descs
                .iter()
                .find_map(|d| d.get("latestDescription").and_then(Value::as_str))
        {
            annotations.insert("description".into(), text.into());
        }
        let starts_at = detail.time("startTime")?;
        let ends_at = match status {
            Status::Resolved => Some(match detail.obj.get("endTime") {
                Some(Value::String(_)) => detail.time("endTime")?,
                _ => self.now,
            }),
            Status::Firing => None,
        };
        Ok(Signal {
            annotations,
            status,
            starts_at,
            ends_at,
            ..self.signal(arn.to_owned(), code, labels, starts_at)
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::{Value, json};

    use crate::signal::Status;
    use crate::sources::kafka::formats::Format;
    use crate::sources::kafka::formats::tests::decode;

    fn health(status: &str) -> Value {
        json!({
            "version": "0", "id": format!("delivery-{status}"), "detail-type": "AWS Health Event", "source": "aws.health",
            "account": "123456789012", "time": "2026-11-25T02:58:00Z", "region": "us-east-1", "resources": [],
            "detail": {
                "eventArn": "arn:aws:health:ap-northeast-2::event/EC2/AWS_EC2_OPERATIONAL_ISSUE/AWS_EC2_OPERATIONAL_ISSUE_abc",
                "service": "EC2", "eventTypeCode": "AWS_EC2_OPERATIONAL_ISSUE", "eventTypeCategory": "issue",
                "eventScopeCode": "PUBLIC", "startTime": "Wed, 25 Nov 2026 02:50:00 GMT",
                "endTime": "Wed, 25 Nov 2026 03:40:00 GMT",
                "statusCode": status, "eventRegion": "ap-northeast-2", "availabilityZone": "ap-northeast-2a",
                "eventDescription": [{"language": "en_US", "latestDescription": "Increased API error rates"}]
            }
        })
    }

    #[test]
    fn aws_health_event_is_keyed_by_arn_with_region_zone_and_status() {
        let open = decode(&Format::AwsHealth, health("open")).unwrap();
        assert_eq!(open.name, "AWS_EC2_OPERATIONAL_ISSUE");
        assert_eq!(
            open.labels["region"], "ap-northeast-2",
            "eventRegion, not the delivery region"
        );
        assert_eq!(open.labels["zone"], "ap-northeast-2a");
        assert_eq!(open.labels["aws_service"], "EC2");
        assert_eq!(open.status, Status::Firing);
        assert_eq!(open.ends_at, None);
        assert_eq!(
            open.starts_at,
            "2026-11-25T02:50:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(open.annotations["description"], "Increased API error rates");
        let closed = decode(&Format::AwsHealth, health("closed")).unwrap();
        assert_eq!(
            closed.fingerprint, open.fingerprint,
            "updates of one event are one signal"
        );
        assert_eq!(closed.status, Status::Resolved);
        assert_eq!(
            closed.ends_at,
            Some("2026-11-25T03:40:00Z".parse().unwrap())
        );
        let err = decode(
            &Format::AwsHealth,
            json!({"source": "aws.ec2", "detail": {}}),
        )
        .unwrap_err();
        assert_eq!(err.reason(), "unmappable");
    }

    #[test]
    fn a_zone_id_is_named_as_the_account_names_it() {
        let open = decode(&Format::AwsHealth, health("open")).unwrap();
        let ids = std::collections::BTreeMap::from([(
            open.labels["zone"].clone(),
            "ap-northeast-2c".to_owned(),
        )]);
        let named = super::name_zone(open.clone(), &ids);
        assert_eq!(named.labels["zone"], "ap-northeast-2c");
        assert_eq!(named.labels["zone_id"], open.labels["zone"]);
        let unmapped = super::name_zone(open.clone(), &Default::default());
        assert_eq!(unmapped.labels, open.labels, "no mapping: as it came");
    }
}
