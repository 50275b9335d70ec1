//! A Slack interaction body, through `parse_interaction` (what the
//! interactions endpoint runs once the signature checked out). What it
//! reads back out of a body is exactly what a body written from it says.
#![no_main]

use dr_reactor::approval::slack::{ABORT, APPROVE, Click, DENY, RETRY, parse_interaction};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(i) = parse_interaction(data) else {
        return;
    };
    let action = match i.click {
        Click::Approve => APPROVE,
        Click::Deny => DENY,
        Click::Abort => ABORT,
        Click::Retry => RETRY,
    };
    let value = match &i.plan_digest {
        Some(d) => format!("{} {d}", i.incident_id),
        None => i.incident_id.clone(),
    };
    let payload = serde_json::json!({
        "type": "block_actions",
        "user": {"id": i.user_id, "username": i.user_name},
        "actions": [{"action_id": action, "value": value}],
    });
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    assert_eq!(parse_interaction(body.as_bytes()).as_ref(), Ok(&i));
});
