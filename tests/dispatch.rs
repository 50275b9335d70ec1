//! Dispatch against the fake AWS: the real SDK clients, signed with static
//! test credentials, sent to the fake's endpoint. Each test asserts what
//! the fake recorded, so "exactly once" means executions created, not
//! calls made.

mod support;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use dr_reactor::dispatch::{
    AwsConfig, DispatchError, Dispatcher, Progress, Rejection, RetryPolicy, Started, StepOutcome,
};
use dr_reactor::plan::{Action, Step, idempotency_key};
use dr_reactor::telemetry::Metrics;
use serde_json::json;
use support::fake_aws::{FakeAws, Op};

const SEOUL: &str = "ap-northeast-2";
const TOKYO: &str = "ap-northeast-1";

fn aws_config(endpoint: String) -> AwsConfig {
    AwsConfig {
        endpoint_url: Some(endpoint),
        retry: RetryPolicy {
            max_attempts: NonZeroU32::new(4).unwrap(),
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(40),
        },
        poll_interval: Duration::from_millis(10),
        call_timeout: Duration::from_secs(5),
        lambda_timeout: Duration::from_secs(5),
        ..AwsConfig::default()
    }
}

struct Harness {
    fake: FakeAws,
    dispatcher: Dispatcher,
    metrics: Metrics,
}

impl Harness {
    async fn start() -> Harness {
        let fake = FakeAws::start().await;
        let cfg = aws_config(fake.endpoint());
        Harness::with_config(fake, &cfg)
    }

    fn with_config(fake: FakeAws, cfg: &AwsConfig) -> Harness {
        let metrics = Metrics::new();
        let dispatcher = Dispatcher::with_sdk_config(fake.sdk_config(), cfg, metrics.clone());
        Harness {
            fake,
            dispatcher,
            metrics,
        }
    }

    fn aws_calls(&self, operation: &str, result: &str) -> u64 {
        let service = if operation == "Invoke" {
            "lambda"
        } else {
            "ssm"
        };
        self.metrics
            .aws_calls
            .with_label_values(&[service, operation, result])
            .get()
    }

    async fn start_execution(&self, step: &Step) -> String {
        match self.dispatcher.start(step).await {
            Ok(Started::Execution { id }) => id,
            other => panic!("expected an SSM execution, got {other:?}"),
        }
    }

    /// Polls until the execution is done, at most `max_polls` times.
    async fn poll_until_done(
        &self,
        step: &Step,
        id: &str,
        max_polls: usize,
    ) -> (StepOutcome, Vec<String>) {
        let mut seen = Vec::new();
        for _ in 0..max_polls {
            match self.dispatcher.poll(step, id).await.unwrap() {
                Progress::Done(outcome) => return (outcome, seen),
                Progress::Running { status } => seen.push(status),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("execution {id} not done after {max_polls} polls (saw {seen:?})");
    }
}

fn ssm_step(document: &str, region: &str, parameters: &[(&str, &[&str])], key: String) -> Step {
    Step {
        name: format!("run {document}"),
        service: Some("order".into()),
        action: Action::Ssm {
            document: document.into(),
            document_version: None,
            region: region.into(),
            parameters: parameters
                .iter()
                .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
                .collect::<BTreeMap<_, _>>(),
        },
        idempotency_key: key,
        timeout_secs: None,
        record: false,
        failback: None,
    }
}

fn lambda_step(function: &str, region: &str, key: String) -> Step {
    Step {
        name: format!("invoke {function}"),
        service: None,
        action: Action::Lambda {
            function: function.into(),
            region: region.into(),
            payload: json!({"cluster": "orders-db", "replicas": ["a", "b"]}),
        },
        idempotency_key: key,
        timeout_secs: None,
        record: false,
        failback: None,
    }
}

fn key(index: usize) -> String {
    idempotency_key("inc-1", index)
}

#[tokio::test]
async fn ssm_start_then_poll_to_success_with_outputs() {
    let h = Harness::start().await;
    h.fake.document_outputs(
        "DR-PromoteReplica",
        json!({"promote.Endpoint": ["db.tokyo"]}),
    );
    let mut step = ssm_step(
        "DR-PromoteReplica",
        TOKYO,
        &[("DBInstance", &["orders-replica"]), ("Zones", &["a", "c"])],
        key(0),
    );
    if let Action::Ssm {
        document_version, ..
    } = &mut step.action
    {
        *document_version = Some("3".into());
    }

    let id = h.start_execution(&step).await;
    let (outcome, _) = h.poll_until_done(&step, &id, 5).await;

    assert_eq!(
        outcome,
        StepOutcome {
            success: true,
            execution_id: Some(id.clone()),
            status: "Success".into(),
            outputs: json!({"promote.Endpoint": ["db.tokyo"]}),
            failure: None,
        }
    );
    let start = &h.fake.calls_of(Op::StartAutomationExecution)[0];
    assert_eq!(start.region, TOKYO);
    assert_eq!(start.client_token.as_deref(), Some(key(0).as_str()));
    assert_eq!(start.body["DocumentName"], "DR-PromoteReplica");
    assert_eq!(start.body["DocumentVersion"], "3");
    assert_eq!(
        start.body["Parameters"],
        json!({"DBInstance": ["orders-replica"], "Zones": ["a", "c"]})
    );
    let get = &h.fake.calls_of(Op::GetAutomationExecution)[0];
    assert_eq!(
        (get.region.as_str(), get.target.as_str()),
        (TOKYO, id.as_str())
    );
    assert_eq!(h.aws_calls("StartAutomationExecution", "ok"), 1);
}

#[tokio::test]
async fn starting_the_same_step_twice_starts_one_execution() {
    let h = Harness::start().await;
    let step = ssm_step("DR-CordonZone", SEOUL, &[("Zone", &["apne2-az1"])], key(0));

    let first = h.start_execution(&step).await;
    let second = h.start_execution(&step).await;

    assert_eq!(first, second);
    assert_eq!(h.fake.calls_of(Op::StartAutomationExecution).len(), 2);
    let executions = h.fake.executions_started();
    assert_eq!(executions.len(), 1, "{executions:?}");
    assert_eq!(executions[0].client_token.as_deref(), Some(key(0).as_str()));
}

#[tokio::test]
async fn reusing_a_key_with_other_parameters_is_refused_not_retried() {
    let h = Harness::start().await;
    h.start_execution(&ssm_step(
        "DR-CordonZone",
        SEOUL,
        &[("Zone", &["apne2-az1"])],
        key(0),
    ))
    .await;

    let changed = ssm_step("DR-CordonZone", SEOUL, &[("Zone", &["apne2-az3"])], key(0));
    let err = h.dispatcher.start(&changed).await.unwrap_err();

    assert!(
        matches!(
            err,
            DispatchError::Rejected {
                reason: Rejection::IdempotencyMismatch,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(h.fake.calls_of(Op::StartAutomationExecution).len(), 2);
    assert_eq!(h.fake.executions_started().len(), 1);
}

#[tokio::test]
async fn throttled_calls_are_retried_until_they_succeed() {
    let h = Harness::start().await;
    h.fake.throttle(Op::StartAutomationExecution, 3);
    let step = ssm_step("DR-CordonZone", SEOUL, &[], key(0));

    h.start_execution(&step).await;

    let statuses: Vec<u16> = h
        .fake
        .calls_of(Op::StartAutomationExecution)
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [400, 400, 400, 200]);
    assert_eq!(h.fake.executions_started().len(), 1);
    assert_eq!(h.aws_calls("StartAutomationExecution", "throttled"), 3);
    assert_eq!(h.aws_calls("StartAutomationExecution", "ok"), 1);
}

#[tokio::test]
async fn throttling_beyond_the_attempts_returns_a_retryable_error() {
    let h = Harness::start().await;
    h.fake.throttle(Op::StartAutomationExecution, 10);
    let step = ssm_step("DR-CordonZone", SEOUL, &[], key(0));

    let err = h.dispatcher.start(&step).await.unwrap_err();

    assert!(matches!(err, DispatchError::Throttled { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        "ssm:StartAutomationExecution in ap-northeast-2 for document DR-CordonZone (attempt 4): \
         throttled by AWS (ThrottlingException): Rate exceeded"
    );
    assert_eq!(h.fake.calls().len(), 4);
    assert!(h.fake.executions_started().is_empty());
}

#[tokio::test]
async fn server_errors_while_polling_are_retried() {
    let h = Harness::start().await;
    let step = ssm_step("DR-CordonZone", SEOUL, &[], key(0));
    let id = h.start_execution(&step).await;
    h.fake.server_errors(Op::GetAutomationExecution, 2);

    let (outcome, _) = h.poll_until_done(&step, &id, 1).await;

    assert!(outcome.success);
    assert_eq!(h.aws_calls("GetAutomationExecution", "unavailable"), 2);
    assert_eq!(h.fake.calls_of(Op::GetAutomationExecution).len(), 3);
}

#[tokio::test]
async fn a_failed_automation_is_a_failed_step_with_its_failure_message() {
    let h = Harness::start().await;
    h.fake.document_fails(
        "DR-PromoteReplica",
        "Step fails when it is Executing. Fail to promote: replica lag too high",
    );
    let step = ssm_step("DR-PromoteReplica", TOKYO, &[], key(0));
    let id = h.start_execution(&step).await;

    let (outcome, _) = h.poll_until_done(&step, &id, 5).await;

    assert!(!outcome.success);
    assert_eq!(outcome.status, "Failed");
    assert_eq!(
        outcome.failure.as_deref(),
        Some("Step fails when it is Executing. Fail to promote: replica lag too high")
    );
    assert_eq!(outcome.execution_id, Some(id));
}

#[tokio::test]
async fn a_slow_execution_is_running_until_it_is_done() {
    let h = Harness::start().await;
    h.fake.document_runs_for("DR-RestoreSnapshot", 3);
    let step = ssm_step("DR-RestoreSnapshot", TOKYO, &[], key(0));
    let id = h.start_execution(&step).await;

    let (outcome, running) = h.poll_until_done(&step, &id, 10).await;

    assert_eq!(running, ["InProgress", "InProgress", "InProgress"]);
    assert!(outcome.success);
    assert_eq!(h.fake.executions_started()[0].polls, 4);
}

#[tokio::test]
async fn a_response_lost_to_a_timeout_does_not_start_a_second_execution() {
    let fake = FakeAws::start().await;
    let mut cfg = aws_config(fake.endpoint());
    cfg.call_timeout = Duration::from_secs(1);
    let h = Harness::with_config(fake, &cfg);
    // SSM starts the execution but its answer arrives after the timeout.
    h.fake
        .delay(Op::StartAutomationExecution, 1, Duration::from_secs(30));
    let step = ssm_step("DR-CordonZone", SEOUL, &[], key(0));

    let id = h.start_execution(&step).await;

    assert_eq!(h.aws_calls("StartAutomationExecution", "timeout"), 1);
    assert_eq!(h.fake.calls_of(Op::StartAutomationExecution).len(), 2);
    let executions = h.fake.executions_started();
    assert_eq!(executions.len(), 1);
    assert_eq!(executions[0].id, id);
}

#[tokio::test]
async fn lambda_success_returns_the_function_result() {
    let h = Harness::start().await;
    h.fake.function_returns(
        "dr-verify-failover",
        json!({"writer": "db.tokyo", "lag_s": 0}),
    );
    let step = lambda_step("dr-verify-failover", TOKYO, key(1));

    let Started::Finished(outcome) = h.dispatcher.start(&step).await.unwrap() else {
        panic!("a Lambda step finishes in start");
    };

    assert!(outcome.success);
    assert_eq!(outcome.status, "Success");
    assert_eq!(outcome.outputs, json!({"writer": "db.tokyo", "lag_s": 0}));
    assert!(outcome.execution_id.is_some_and(|id| !id.is_empty()));
    let calls = h.fake.calls_of(Op::Invoke);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].region, TOKYO);
    assert_eq!(calls[0].target, "dr-verify-failover");
    assert_eq!(calls[0].invocation_type.as_deref(), Some("RequestResponse"));
    assert_eq!(
        calls[0].body,
        json!({
            "idempotency_key": key(1),
            "step": "invoke dr-verify-failover",
            "payload": {"cluster": "orders-db", "replicas": ["a", "b"]},
        })
    );
}

#[tokio::test]
async fn lambda_function_error_is_a_failed_step() {
    let h = Harness::start().await;
    h.fake
        .function_fails("dr-verify-failover", "LagError", "replica lag 40s > 5s");
    let step = lambda_step("dr-verify-failover", TOKYO, key(1));

    let Started::Finished(outcome) = h.dispatcher.start(&step).await.unwrap() else {
        panic!("a Lambda step finishes in start");
    };

    assert!(!outcome.success);
    assert_eq!(outcome.status, "Failed");
    assert_eq!(outcome.failure.as_deref(), Some("replica lag 40s > 5s"));
    assert_eq!(outcome.outputs["errorType"], "LagError");
    assert_eq!(
        h.fake.calls_of(Op::Invoke).len(),
        1,
        "a function error is not retried"
    );
}

#[tokio::test]
async fn lambda_throttling_is_retried_and_the_function_runs_once() {
    let h = Harness::start().await;
    h.fake.function_returns("dr-flip-dns", json!("flipped"));
    h.fake.throttle(Op::Invoke, 2);
    let step = lambda_step("dr-flip-dns", "us-east-1", key(2));

    let Started::Finished(outcome) = h.dispatcher.start(&step).await.unwrap() else {
        panic!("a Lambda step finishes in start");
    };

    assert!(outcome.success);
    assert_eq!(outcome.outputs, "flipped");
    let statuses: Vec<u16> = h.fake.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
    assert_eq!(h.aws_calls("Invoke", "throttled"), 2);
}

#[tokio::test]
async fn steps_go_to_their_own_region_and_never_to_the_failed_one() {
    let h = Harness::start().await;
    h.fake.region_down(SEOUL);
    h.fake.function_returns("dr-flip-dns", json!({"ok": true}));
    let promote = ssm_step("DR-PromoteReplica", TOKYO, &[], key(0));
    let flip = lambda_step("dr-flip-dns", "us-east-1", key(1));

    let id = h.start_execution(&promote).await;
    let (promoted, _) = h.poll_until_done(&promote, &id, 5).await;
    let Started::Finished(flipped) = h.dispatcher.start(&flip).await.unwrap() else {
        panic!("a Lambda step finishes in start");
    };

    assert!(promoted.success && flipped.success);
    let regions: Vec<(Op, String)> = h
        .fake
        .calls()
        .into_iter()
        .map(|c| (c.op, c.region))
        .collect();
    assert_eq!(
        regions,
        [
            (Op::StartAutomationExecution, TOKYO.to_owned()),
            (Op::GetAutomationExecution, TOKYO.to_owned()),
            (Op::Invoke, "us-east-1".to_owned()),
        ]
    );

    // A step that does name the failed region is sent there, and only
    // there, and fails as retryable once the attempts are used up.
    let stuck = ssm_step("DR-CordonZone", SEOUL, &[], key(2));
    let err = h.dispatcher.start(&stuck).await.unwrap_err();
    assert!(
        matches!(err, DispatchError::Unavailable { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let seoul: Vec<_> = h
        .fake
        .calls()
        .into_iter()
        .skip(3)
        .map(|c| c.region)
        .collect();
    assert_eq!(seoul, [SEOUL; 4]);
}

#[tokio::test]
async fn an_execution_is_polled_in_the_region_that_runs_it() {
    let h = Harness::start().await;
    let step = ssm_step("DR-CordonZone", TOKYO, &[], key(0));
    let id = h.start_execution(&step).await;

    let elsewhere = ssm_step("DR-CordonZone", SEOUL, &[], key(0));
    let err = h.dispatcher.poll(&elsewhere, &id).await.unwrap_err();

    assert!(
        matches!(
            err,
            DispatchError::Rejected {
                reason: Rejection::NotFound,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!(
        "ssm:GetAutomationExecution in ap-northeast-2 for execution {id} of document DR-CordonZone"
    )));
}

#[tokio::test]
async fn permanent_errors_are_not_retried_and_name_the_call() {
    let h = Harness::start().await;
    h.fake.register_documents(&["DR-CordonZone"]);

    let unknown = h
        .dispatcher
        .start(&ssm_step("DR-Unknown", TOKYO, &[], key(0)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            unknown,
            DispatchError::Rejected {
                reason: Rejection::NotFound,
                ..
            }
        ),
        "{unknown:?}"
    );
    assert!(!unknown.is_retryable());
    assert_eq!(
        unknown.to_string(),
        "ssm:StartAutomationExecution in ap-northeast-1 for document DR-Unknown (attempt 1): \
         not found (HTTP 400, AutomationDefinitionNotFoundException): Automation definition DR-Unknown not found"
    );

    let bad_token = h
        .dispatcher
        .start(&ssm_step("DR-CordonZone", TOKYO, &[], "not-a-uuid".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            bad_token,
            DispatchError::Rejected {
                reason: Rejection::Invalid,
                ..
            }
        ),
        "{bad_token:?}"
    );
    assert!(bad_token.to_string().contains("clientToken"), "{bad_token}");

    let no_document = h
        .dispatcher
        .start(&ssm_step("", TOKYO, &[], key(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            no_document,
            DispatchError::Rejected {
                reason: Rejection::Invalid,
                ..
            }
        ),
        "{no_document:?}"
    );

    let no_function = h
        .dispatcher
        .start(&lambda_step("dr-missing", TOKYO, key(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            no_function,
            DispatchError::Rejected {
                reason: Rejection::NotFound,
                status: 404,
                ..
            }
        ),
        "{no_function:?}"
    );
    assert!(no_function.to_string().contains("function dr-missing"));

    assert_eq!(h.fake.calls().len(), 4, "one attempt each");
    assert!(h.fake.executions_started().is_empty());
    assert_eq!(h.aws_calls("StartAutomationExecution", "rejected"), 3);
}

#[tokio::test]
async fn refusals_before_sending_make_no_call() {
    let h = Harness::start().await;

    let bad_region = h
        .dispatcher
        .start(&ssm_step(
            "DR-CordonZone",
            "{{ labels.region }}",
            &[],
            key(0),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(bad_region, DispatchError::Invalid { .. }),
        "{bad_region:?}"
    );

    let lambda = lambda_step("dr-verify-failover", TOKYO, key(1));
    let poll = h.dispatcher.poll(&lambda, "anything").await.unwrap_err();
    assert!(matches!(poll, DispatchError::Invalid { .. }), "{poll:?}");
    assert!(!poll.is_retryable());

    assert!(h.fake.calls().is_empty());
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_retryable_connection_error() {
    // A port that was free a moment ago: connecting to it is refused.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let fake = FakeAws::start().await;
    let h = Harness::with_config(fake, &aws_config(format!("http://{closed}")));

    let err = h
        .dispatcher
        .start(&ssm_step("DR-CordonZone", TOKYO, &[], key(0)))
        .await
        .unwrap_err();

    assert!(matches!(err, DispatchError::Connection { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("(attempt 4)"), "{err}");
    assert_eq!(h.aws_calls("StartAutomationExecution", "connection"), 4);
}

#[tokio::test]
async fn unknown_credentials_are_access_denied() {
    use aws_sdk_ssm::config::{Credentials, SharedCredentialsProvider};
    let fake = FakeAws::start().await;
    let stranger = fake
        .sdk_config()
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIASTRANGER00000000",
            "wrong",
            None,
            None,
            "test",
        )))
        .build();
    let metrics = Metrics::new();
    let dispatcher = Dispatcher::with_sdk_config(stranger, &aws_config(fake.endpoint()), metrics);

    let err = dispatcher
        .start(&ssm_step("DR-CordonZone", TOKYO, &[], key(0)))
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            DispatchError::Rejected {
                reason: Rejection::AccessDenied,
                status: 403,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(fake.calls().len(), 1);
}

/// The fake itself: what it refuses is what keeps the tests above honest.
#[tokio::test]
async fn the_fake_refuses_unsigned_and_wrongly_scoped_requests() {
    let fake = FakeAws::start().await;
    let client = reqwest::Client::new();
    let send = |auth: Option<String>| {
        let mut req = client
            .post(fake.endpoint())
            .header("x-amz-target", "AmazonSSM.StartAutomationExecution")
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-date", "20260101T000000Z")
            .body(r#"{"DocumentName":"DR-CordonZone"}"#);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap();
            (
                status,
                body["__type"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    let signed_for = |service: &str| {
        Some(format!(
            "AWS4-HMAC-SHA256 Credential={}/20260101/{TOKYO}/{service}/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={}",
            support::fake_aws::ACCESS_KEY_ID,
            "0".repeat(64)
        ))
    };

    assert_eq!(
        send(None).await,
        (403, "MissingAuthenticationTokenException".into())
    );
    assert_eq!(
        send(signed_for("lambda")).await,
        (403, "InvalidSignatureException".into())
    );
    assert_eq!(send(signed_for("ssm")).await, (200, String::new()));
    let regions: Vec<String> = fake.calls().into_iter().map(|c| c.region).collect();
    assert_eq!(regions, ["", "", TOKYO]);
    assert_eq!(fake.executions_started().len(), 1);
}

#[tokio::test]
async fn from_env_checks_the_configured_region() {
    // Only the region check: calls through the default credential chain
    // are not made here, since its last resort is the EC2 metadata address.
    let mut cfg = AwsConfig {
        default_region: Some(TOKYO.into()),
        ..AwsConfig::default()
    };
    assert!(Dispatcher::from_env(&cfg, Metrics::new()).await.is_ok());

    cfg.default_region = Some("tokyo".into());
    let err = Dispatcher::from_env(&cfg, Metrics::new())
        .await
        .err()
        .expect("a bad region is refused");
    assert_eq!(
        err.to_string(),
        "aws.default_region \"tokyo\" is not a region name"
    );
}
