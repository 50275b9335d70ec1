//! A fake of the two AWS APIs dispatch calls, speaking what the real SDK
//! clients send: SSM's AWS JSON 1.1 (`POST /`, `X-Amz-Target:
//! AmazonSSM.<Operation>`) and Lambda's REST-JSON Invoke (`POST
//! /2015-03-31/functions/{FunctionName}/invocations`) and GetFunction
//! (`GET /2015-03-31/functions/{FunctionName}?Qualifier=`).
//!
//! Runbook readiness reads documents (DescribeDocument) and functions
//! (GetFunction) registered per region ([`registry`]); Start and Invoke
//! check registered ones as AWS would.
//!
//! All regions share one endpoint in tests, so the region of a call is read
//! from its SigV4 credential scope, checked to name the right service, and
//! recorded with the call. Every call is recorded (operation, region,
//! document or function, request, ClientToken, answer), and executions are
//! counted separately from calls, so a test can tell "called twice" from
//! "ran twice".
//!
//! Behaviour is programmed per test: throttle or fail the next N calls of an
//! operation, delay answers, end a document's executions Failed or keep
//! them InProgress for N polls, make a function fail, take a region down.
//! StopAutomationExecution ends an execution Cancelled.
//!
//! ClientToken follows SSM: per region, the same token with the same inputs
//! returns the first execution; with different inputs it is
//! IdempotentParameterMismatch.
//!
//! [`FakeAws::start_on`] serves on any listener, so the same fake can run
//! as a standalone process.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The static credentials the fake accepts.
pub const ACCESS_KEY_ID: &str = "AKIAFAKEAWS000000000";
pub const SECRET_ACCESS_KEY: &str = "fake-aws-secret-access-key";

const SSM_JSON: &str = "application/x-amz-json-1.1";

mod registry;
mod wire;
pub use registry::{Document, Function};
use wire::{Answer, signed_region};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    StartAutomationExecution,
    GetAutomationExecution,
    StopAutomationExecution,
    Invoke,
    DescribeDocument,
    GetFunction,
}

impl Op {
    fn service(self) -> &'static str {
        match self {
            Op::StartAutomationExecution
            | Op::GetAutomationExecution
            | Op::StopAutomationExecution
            | Op::DescribeDocument => "ssm",
            Op::Invoke | Op::GetFunction => "lambda",
        }
    }

    fn is_lambda(self) -> bool {
        self.service() == "lambda"
    }

    /// Readiness look-ups, which change nothing.
    fn is_lookup(self) -> bool {
        matches!(self, Op::DescribeDocument | Op::GetFunction)
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub op: Op,
    /// From the SigV4 credential scope.
    pub region: String,
    /// Document name (Start), execution id (Get) or function name (Invoke).
    pub target: String,
    pub client_token: Option<String>,
    /// The request body as JSON; for Invoke, the event the function gets.
    pub body: Value,
    pub invocation_type: Option<String>,
    /// The HTTP status the fake answered.
    pub status: u16,
}

/// One automation execution the fake started.
#[derive(Debug, Clone)]
pub struct Execution {
    pub id: String,
    pub region: String,
    pub document: String,
    pub document_version: Option<String>,
    pub parameters: Value,
    pub client_token: Option<String>,
    pub polls: u32,
    /// Set by StopAutomationExecution: from then on it answers Cancelled.
    pub stopped: bool,
}

#[derive(Debug, Clone, Default)]
struct DocumentProgram {
    in_progress_polls: u32,
    failure: Option<String>,
    outputs: Value,
}

#[derive(Debug, Clone)]
enum FunctionProgram {
    Returns(Value),
    Fails { error_type: String, message: String },
}

#[derive(Default)]
struct Fake {
    calls: Vec<Call>,
    executions: Vec<Execution>,
    throttle: HashMap<Op, u32>,
    server_errors: HashMap<Op, u32>,
    delays: HashMap<Op, (u32, Duration)>,
    documents: Option<HashSet<String>>,
    document_programs: HashMap<String, DocumentProgram>,
    functions: HashMap<String, FunctionProgram>,
    down_regions: HashSet<String>,
    /// (region, name) → document, for DescribeDocument and Start's checks.
    registered_documents: HashMap<(String, String), Document>,
    /// (region, name) → function, for GetFunction and Invoke's checks.
    registered_functions: HashMap<(String, String), Function>,
}

type Shared = Arc<Mutex<Fake>>;

pub struct FakeAws {
    addr: SocketAddr,
    state: Shared,
    task: JoinHandle<()>,
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAws {
    /// Serves on 127.0.0.1 on a free port.
    pub async fn start() -> FakeAws {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        FakeAws::start_on(listener)
    }

    pub fn start_on(listener: TcpListener) -> FakeAws {
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let state = Shared::default();
        let app = Router::new()
            .route("/", post(ssm))
            .route("/2015-03-31/functions/{name}/invocations", post(lambda))
            .route("/2015-03-31/functions/{name}", get(registry::get_function))
            .fallback(unknown_route)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake AWS serves");
        });
        FakeAws { addr, state, task }
    }

    /// The `endpoint_url` to give the SDK.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An SDK config with the credentials the fake accepts. Its region is
    /// only a default: dispatch gives every client the step's region.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        FakeAws::sdk_config_static()
    }

    /// The same, without a fake running (other stand-ins take any key).
    pub fn sdk_config_static() -> aws_config::SdkConfig {
        use aws_sdk_ssm::config::{Credentials, SharedCredentialsProvider};
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "fake-aws",
            )))
            .build()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Fake) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// The calls dispatch makes to act on a plan (Start, Get, Stop,
    /// Invoke), in order. Readiness look-ups are apart: [`FakeAws::lookups`].
    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| {
            s.calls
                .iter()
                .filter(|c| !c.op.is_lookup())
                .cloned()
                .collect()
        })
    }

    /// DescribeDocument and GetFunction calls, in order.
    pub fn lookups(&self) -> Vec<Call> {
        self.with(|s| {
            s.calls
                .iter()
                .filter(|c| c.op.is_lookup())
                .cloned()
                .collect()
        })
    }

    pub fn calls_of(&self, op: Op) -> Vec<Call> {
        self.with(|s| s.calls.iter().filter(|c| c.op == op).cloned().collect())
    }

    /// Executions created by StartAutomationExecution (not calls: a repeat
    /// with the same ClientToken creates none).
    pub fn executions_started(&self) -> Vec<Execution> {
        self.with(|s| s.executions.clone())
    }

    /// The next `n` calls of `op` are throttled (SSM: 400
    /// ThrottlingException; Lambda: 429 TooManyRequestsException).
    pub fn throttle(&self, op: Op, n: u32) {
        self.with(|s| s.throttle.insert(op, n));
    }

    /// The next `n` calls of `op` get a 500.
    pub fn server_errors(&self, op: Op, n: u32) {
        self.with(|s| s.server_errors.insert(op, n));
    }

    /// The next `n` answers to `op` are held back for `delay`, after the
    /// request took effect (as when AWS is slow to answer, not to act).
    pub fn delay(&self, op: Op, n: u32, delay: Duration) {
        self.with(|s| s.delays.insert(op, (n, delay)));
    }

    /// From now on, documents not in `names` are
    /// AutomationDefinitionNotFoundException.
    pub fn register_documents(&self, names: &[&str]) {
        self.with(|s| s.documents = Some(names.iter().map(|n| n.to_string()).collect()));
    }

    /// Executions of `document` end Success with these Outputs
    /// (`{"Step.Output": ["value"]}`).
    pub fn document_outputs(&self, document: &str, outputs: Value) {
        self.with(|s| {
            s.document_programs
                .entry(document.into())
                .or_default()
                .outputs = outputs;
        });
    }

    /// Executions of `document` end Failed with this FailureMessage.
    pub fn document_fails(&self, document: &str, failure_message: &str) {
        self.with(|s| {
            s.document_programs
                .entry(document.into())
                .or_default()
                .failure = Some(failure_message.into());
        });
    }

    /// Executions of `document` end Success again (the cause of a failure
    /// was fixed, before a retry).
    pub fn document_succeeds(&self, document: &str) {
        self.with(|s| {
            if let Some(p) = s.document_programs.get_mut(document) {
                p.failure = None;
            }
        });
    }

    /// Executions of `document` answer InProgress to their first `polls`
    /// polls.
    pub fn document_runs_for(&self, document: &str, polls: u32) {
        self.with(|s| {
            s.document_programs
                .entry(document.into())
                .or_default()
                .in_progress_polls = polls;
        });
    }

    /// `function` exists and returns `value`.
    pub fn function_returns(&self, function: &str, value: Value) {
        self.with(|s| {
            s.functions
                .insert(function.into(), FunctionProgram::Returns(value))
        });
    }

    /// `function` exists and fails (`X-Amz-Function-Error: Unhandled`).
    pub fn function_fails(&self, function: &str, error_type: &str, message: &str) {
        self.with(|s| {
            s.functions.insert(
                function.into(),
                FunctionProgram::Fails {
                    error_type: error_type.into(),
                    message: message.into(),
                },
            )
        });
    }

    /// `name` exists in `region` as `doc` (DescribeDocument answers it;
    /// StartAutomationExecution checks type, version and parameters).
    pub fn register_document(&self, region: &str, name: &str, doc: Document) {
        self.with(|s| {
            s.registered_documents
                .insert((region.into(), name.into()), doc)
        });
    }

    /// `name` exists in `region` as `function` (GetFunction answers it;
    /// Invoke checks state and qualifier).
    pub fn register_function(&self, region: &str, name: &str, function: Function) {
        self.with(|s| {
            s.registered_functions
                .insert((region.into(), name.into()), function)
        });
    }

    /// Every call signed for `region` gets 503, as in a regional outage.
    pub fn region_down(&self, region: &str) {
        self.with(|s| s.down_regions.insert(region.into()));
    }
}

impl Fake {
    /// Outage, throttling and server errors come before the operation, as
    /// they do at AWS's front door.
    fn front_door(&mut self, op: Op, region: &str) -> Option<Answer> {
        if self.down_regions.contains(region) {
            return Some(Answer::error(
                op,
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!("{region} is unavailable"),
            ));
        }
        if take(&mut self.throttle, op) {
            return Some(match op {
                _ if op.is_lambda() => Answer::lambda_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    "Rate Exceeded.",
                ),
                _ => Answer::ssm_error(
                    StatusCode::BAD_REQUEST,
                    "ThrottlingException",
                    "Rate exceeded",
                ),
            });
        }
        if take(&mut self.server_errors, op) {
            let kind = match op {
                _ if op.is_lambda() => "ServiceException",
                _ => "InternalServerError",
            };
            return Some(Answer::error(
                op,
                StatusCode::INTERNAL_SERVER_ERROR,
                kind,
                "internal error",
            ));
        }
        None
    }

    fn start_automation(&mut self, region: &str, req: &Value) -> Answer {
        let document = req["DocumentName"].as_str().unwrap_or_default();
        if document.is_empty() {
            return Answer::ssm_error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "1 validation error detected: Value null at 'documentName' failed to satisfy constraint: Member must not be null",
            );
        }
        let token = req["ClientToken"].as_str();
        if let Some(t) = token
            && !(t.len() == 36 && uuid::Uuid::parse_str(t).is_ok())
        {
            return Answer::ssm_error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                &format!(
                    "1 validation error detected: Value '{t}' at 'clientToken' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-fA-F0-9]{{8}}-[a-fA-F0-9]{{4}}-[a-fA-F0-9]{{4}}-[a-fA-F0-9]{{4}}-[a-fA-F0-9]{{12}}"
                ),
            );
        }
        if let Some(refused) = self.refuse_start(region, req) {
            return refused;
        }
        if self
            .documents
            .as_ref()
            .is_some_and(|known| !known.contains(document))
        {
            return Answer::ssm_error(
                StatusCode::BAD_REQUEST,
                "AutomationDefinitionNotFoundException",
                &format!("Automation definition {document} not found"),
            );
        }
        let version = req["DocumentVersion"].as_str().map(str::to_owned);
        let parameters = req.get("Parameters").cloned().unwrap_or(Value::Null);
        if let Some(t) = token
            && let Some(first) = self
                .executions
                .iter()
                .find(|e| e.region == region && e.client_token.as_deref() == Some(t))
        {
            if first.document != document
                || first.document_version != version
                || first.parameters != parameters
            {
                return Answer::ssm_error(
                    StatusCode::BAD_REQUEST,
                    "IdempotentParameterMismatch",
                    &format!("ClientToken {t} was used with different parameters"),
                );
            }
            return Answer::json(
                StatusCode::OK,
                SSM_JSON,
                &json!({"AutomationExecutionId": first.id}),
            );
        }
        let id = uuid::Uuid::now_v7().to_string();
        self.executions.push(Execution {
            id: id.clone(),
            region: region.into(),
            document: document.into(),
            document_version: version,
            parameters,
            client_token: token.map(str::to_owned),
            polls: 0,
            stopped: false,
        });
        Answer::json(
            StatusCode::OK,
            SSM_JSON,
            &json!({"AutomationExecutionId": id}),
        )
    }

    /// Executions are regional: asking the wrong region finds nothing.
    fn execution(&mut self, region: &str, id: &str) -> Result<&mut Execution, Answer> {
        self.executions
            .iter_mut()
            .find(|e| e.id == id && e.region == region)
            .ok_or_else(|| {
                Answer::ssm_error(
                    StatusCode::BAD_REQUEST,
                    "AutomationExecutionNotFoundException",
                    &format!("Automation execution {id} not found in {region}"),
                )
            })
    }

    fn get_automation(&mut self, region: &str, id: &str) -> Answer {
        let programs = self.document_programs.clone();
        let e = match self.execution(region, id) {
            Ok(e) => e,
            Err(not_found) => return not_found,
        };
        e.polls += 1;
        let program = programs.get(&e.document).cloned().unwrap_or_default();
        let mut execution = json!({
            "AutomationExecutionId": e.id,
            "DocumentName": e.document,
            "DocumentVersion": e.document_version.clone().unwrap_or_else(|| "1".into()),
            "Parameters": e.parameters,
            "ExecutionStartTime": 1.7e9,
        });
        let status = if e.stopped {
            "Cancelled"
        } else if e.polls <= program.in_progress_polls {
            "InProgress"
        } else if let Some(msg) = &program.failure {
            execution["FailureMessage"] = json!(msg);
            "Failed"
        } else {
            if program.outputs.is_object() {
                execution["Outputs"] = program.outputs.clone();
            }
            "Success"
        };
        execution["AutomationExecutionStatus"] = json!(status);
        Answer::json(
            StatusCode::OK,
            SSM_JSON,
            &json!({"AutomationExecution": execution}),
        )
    }

    /// StopAutomationExecution: the execution ends Cancelled. Like SSM,
    /// stopping one that has already ended is accepted and changes nothing.
    fn stop_automation(&mut self, region: &str, id: &str) -> Answer {
        match self.execution(region, id) {
            Ok(e) => {
                e.stopped = true;
                Answer::json(StatusCode::OK, SSM_JSON, &json!({}))
            }
            Err(not_found) => not_found,
        }
    }

    fn invoke(&mut self, region: &str, function: &str, invocation_type: Option<&str>) -> Answer {
        if invocation_type.is_some_and(|t| t != "RequestResponse") {
            return Answer::lambda_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "the fake answers RequestResponse invocations only",
            );
        }
        if let Some(refused) = self.refuse_invoke(region, function) {
            return refused;
        }
        let (name, _) = registry::split_function(function);
        let registered = self
            .registered_functions
            .contains_key(&(region.to_owned(), name.to_owned()));
        let default = FunctionProgram::Returns(json!({}));
        let Some(program) = self
            .functions
            .get(function)
            .or_else(|| self.functions.get(name))
            .or(registered.then_some(&default))
        else {
            return Answer::lambda_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                &format!(
                    "Function not found: arn:aws:lambda:{region}:123456789012:function:{function}"
                ),
            );
        };
        let (body, function_error) = match program {
            FunctionProgram::Returns(v) => (v.clone(), None),
            FunctionProgram::Fails {
                error_type,
                message,
            } => (
                json!({"errorMessage": message, "errorType": error_type, "stackTrace": []}),
                Some("Unhandled"),
            ),
        };
        let mut a = Answer::json(StatusCode::OK, "application/json", &body);
        a.headers.push(("x-amz-executed-version", "$LATEST".into()));
        if let Some(kind) = function_error {
            a.headers.push(("x-amz-function-error", kind.into()));
        }
        a
    }

    /// Records the call, and holds the answer back if a delay is programmed.
    fn finish(&mut self, mut call: Call, mut answer: Answer) -> Answer {
        call.status = answer.status.as_u16();
        answer.delay = take_delay(&mut self.delays, call.op);
        self.calls.push(call);
        answer
    }
}

/// Takes one from `op`'s counter if it is above zero.
fn take(counters: &mut HashMap<Op, u32>, op: Op) -> bool {
    match counters.get_mut(&op) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

fn take_delay(delays: &mut HashMap<Op, (u32, Duration)>, op: Op) -> Option<Duration> {
    match delays.get_mut(&op) {
        Some((n, d)) if *n > 0 => {
            *n -= 1;
            Some(*d)
        }
        _ => None,
    }
}

async fn ssm(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let op = match target {
        "AmazonSSM.StartAutomationExecution" => Op::StartAutomationExecution,
        "AmazonSSM.GetAutomationExecution" => Op::GetAutomationExecution,
        "AmazonSSM.StopAutomationExecution" => Op::StopAutomationExecution,
        "AmazonSSM.DescribeDocument" => Op::DescribeDocument,
        other => {
            return Answer::ssm_error(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                &format!("the fake does not implement {other:?}"),
            )
            .send()
            .await;
        }
    };
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let target = match op {
        Op::GetAutomationExecution | Op::StopAutomationExecution => {
            req["AutomationExecutionId"].as_str()
        }
        Op::DescribeDocument => req["Name"].as_str(),
        _ => req["DocumentName"].as_str(),
    }
    .unwrap_or_default()
    .to_owned();
    let call = Call {
        op,
        region: String::new(),
        target: target.clone(),
        client_token: req["ClientToken"].as_str().map(str::to_owned),
        body: req.clone(),
        invocation_type: None,
        status: 0,
    };
    answer(&state, &headers, call, |fake, region| match op {
        Op::StartAutomationExecution => fake.start_automation(region, &req),
        Op::StopAutomationExecution => fake.stop_automation(region, &target),
        Op::DescribeDocument => fake.describe_document(region, &req),
        _ => fake.get_automation(region, &target),
    })
    .await
}

async fn lambda(
    State(state): State<Shared>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = Op::Invoke;
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let event = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let call = Call {
        op,
        region: String::new(),
        target: function.clone(),
        client_token: None,
        body: event,
        invocation_type: invocation_type.clone(),
        status: 0,
    };
    answer(&state, &headers, call, |fake, region| {
        fake.invoke(region, &function, invocation_type.as_deref())
    })
    .await
}

/// Records `call` and answers it: a bad signature is refused, then the
/// front door (outage, throttling, server errors) may answer, and only
/// then `act`, with the region the call was signed for.
async fn answer(
    state: &Shared,
    headers: &HeaderMap,
    mut call: Call,
    act: impl FnOnce(&mut Fake, &str) -> Answer,
) -> Response {
    let region = signed_region(headers, call.op);
    let answer = {
        let mut fake = state.lock().unwrap();
        call.region = region.as_ref().map(String::clone).unwrap_or_default();
        let answer = match region {
            Err(denied) => denied,
            Ok(region) => fake
                .front_door(call.op, &region)
                .unwrap_or_else(|| act(&mut fake, &region)),
        };
        fake.finish(call, answer)
    };
    answer.send().await
}

async fn unknown_route(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("the fake AWS has no route for {uri}"),
    )
        .into_response()
}
