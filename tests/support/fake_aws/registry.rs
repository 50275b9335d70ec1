//! Documents and functions registered per region, as AWS holds them:
//! DescribeDocument and GetFunction answer from here, and
//! StartAutomationExecution and Invoke check against here what AWS would
//! (type, version, declared and required parameters; state, qualifier).
//! A document or function not registered in a region answers as the fake
//! always has (programs shared by every region), so older tests are
//! unchanged.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::wire::Answer;
use super::{Call, Fake, Op, SSM_JSON, Shared};

/// An SSM document as registered in one region.
#[derive(Debug, Clone)]
pub struct Document {
    /// `Automation`, `Command`, …
    pub document_type: String,
    /// Version numbers, oldest first; the last is the latest and default.
    pub versions: Vec<String>,
    /// Declared parameters: name and default (none: required).
    pub parameters: Vec<(String, Option<String>)>,
}

impl Document {
    /// An Automation document, version 1, declaring `required` (no default)
    /// and `optional` (a default each).
    pub fn automation(required: &[&str], optional: &[&str]) -> Document {
        Document {
            document_type: "Automation".into(),
            versions: vec!["1".into()],
            parameters: required
                .iter()
                .map(|p| (p.to_string(), None))
                .chain(
                    optional
                        .iter()
                        .map(|p| (p.to_string(), Some(String::new()))),
                )
                .collect(),
        }
    }

    pub fn of_type(mut self, document_type: &str) -> Document {
        self.document_type = document_type.into();
        self
    }

    pub fn versions(mut self, versions: &[&str]) -> Document {
        self.versions = versions.iter().map(|v| v.to_string()).collect();
        self
    }
}

/// A Lambda function as registered in one region.
#[derive(Debug, Clone)]
pub struct Function {
    /// `Active`, `Pending`, `Inactive`, `Failed`.
    pub state: String,
    /// Published versions and aliases besides `$LATEST`.
    pub qualifiers: Vec<String>,
}

impl Function {
    pub fn active(qualifiers: &[&str]) -> Function {
        Function {
            state: "Active".into(),
            qualifiers: qualifiers.iter().map(|q| q.to_string()).collect(),
        }
    }

    pub fn in_state(state: &str) -> Function {
        Function {
            state: state.into(),
            qualifiers: Vec::new(),
        }
    }
}

const ACCOUNT: &str = "123456789012";

fn function_arn(region: &str, name: &str, qualifier: Option<&str>) -> String {
    let q = qualifier.map(|q| format!(":{q}")).unwrap_or_default();
    format!("arn:aws:lambda:{region}:{ACCOUNT}:function:{name}{q}")
}

/// `name`, `name:qualifier` or an ARN, as Lambda reads its FunctionName.
pub(super) fn split_function(function: &str) -> (&str, Option<&str>) {
    let name = function
        .strip_prefix("arn:aws:lambda:")
        .and_then(|rest| rest.splitn(4, ':').nth(3))
        .unwrap_or(function);
    match name.split_once(':') {
        Some((n, q)) => (n, Some(q)),
        None => (name, None),
    }
}

fn function_not_found(region: &str, name: &str, qualifier: Option<&str>) -> Answer {
    Answer::lambda_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!(
            "Function not found: {}",
            function_arn(region, name, qualifier)
        ),
    )
}

impl Fake {
    fn document(&self, region: &str, name: &str) -> Option<&Document> {
        self.registered_documents
            .get(&(region.to_owned(), name.to_owned()))
    }

    /// DescribeDocument: `Name`, optional `DocumentVersion`.
    pub(super) fn describe_document(&self, region: &str, req: &Value) -> Answer {
        let name = req["Name"].as_str().unwrap_or_default();
        if name.is_empty() {
            return Answer::ssm_error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null",
            );
        }
        let Some(doc) = self.document(region, name) else {
            return Answer::ssm_error(
                StatusCode::BAD_REQUEST,
                "InvalidDocument",
                "The specified document does not exist.",
            );
        };
        let latest = doc.versions.last().cloned().unwrap_or_else(|| "1".into());
        let version = match req["DocumentVersion"].as_str() {
            None | Some("$DEFAULT") | Some("$LATEST") => latest.clone(),
            Some(v) if doc.versions.iter().any(|x| x == v) => v.to_owned(),
            Some(_) => {
                return Answer::ssm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidDocumentVersion",
                    "The document version is not valid or does not exist.",
                );
            }
        };
        let parameters: Vec<Value> = doc
            .parameters
            .iter()
            .map(|(n, default)| {
                let mut p = json!({"Name": n, "Type": "String", "Description": ""});
                if let Some(d) = default {
                    p["DefaultValue"] = json!(d);
                }
                p
            })
            .collect();
        Answer::json(
            StatusCode::OK,
            SSM_JSON,
            &json!({"Document": {
                "Name": name,
                "DocumentType": doc.document_type,
                "DocumentFormat": "YAML",
                "SchemaVersion": "0.3",
                "Status": "Active",
                "DocumentVersion": version,
                "LatestVersion": latest,
                "DefaultVersion": latest,
                "Owner": ACCOUNT,
                "CreatedDate": 1.7e9,
                "Parameters": parameters,
                "PlatformTypes": ["Windows", "Linux", "MacOS"],
            }}),
        )
    }

    /// What StartAutomationExecution refuses of a registered document, as
    /// SSM does; `None` for a document registered nowhere in this region.
    pub(super) fn refuse_start(&self, region: &str, req: &Value) -> Option<Answer> {
        let name = req["DocumentName"].as_str().unwrap_or_default();
        let doc = self.document(region, name)?;
        let bad =
            |code: &str, msg: String| Some(Answer::ssm_error(StatusCode::BAD_REQUEST, code, &msg));
        if doc.document_type != "Automation" {
            return bad(
                "InvalidAutomationExecutionParametersException",
                format!(
                    "{name} is a {} document, not an Automation document",
                    doc.document_type
                ),
            );
        }
        if let Some(v) = req["DocumentVersion"].as_str()
            && !doc.versions.iter().any(|x| x == v)
        {
            return bad(
                "AutomationDefinitionVersionNotFoundException",
                format!("Automation definition {name}:{v} not found"),
            );
        }
        let passed = req["Parameters"].as_object();
        for key in passed.into_iter().flat_map(|p| p.keys()) {
            if !doc.parameters.iter().any(|(n, _)| n == key) {
                return bad(
                    "InvalidAutomationExecutionParametersException",
                    format!("Parameter \"{key}\" is not defined in the document"),
                );
            }
        }
        for (n, default) in &doc.parameters {
            if default.is_none() && !passed.is_some_and(|p| p.contains_key(n)) {
                return bad(
                    "InvalidAutomationExecutionParametersException",
                    format!("Parameter \"{n}\" is required but was not provided"),
                );
            }
        }
        None
    }

    /// GetFunction: `FunctionName` (with a qualifier or not) and an
    /// optional `Qualifier` query parameter.
    pub(super) fn get_function(
        &self,
        region: &str,
        function: &str,
        qualifier: Option<&str>,
    ) -> Answer {
        let (name, in_name) = split_function(function);
        let qualifier = qualifier.or(in_name);
        let (state, known) = match self
            .registered_functions
            .get(&(region.to_owned(), name.to_owned()))
        {
            Some(f) => (
                f.state.clone(),
                qualifier.is_none_or(|q| q == "$LATEST" || f.qualifiers.iter().any(|x| x == q)),
            ),
            // Programmed for Invoke only: an active function in every
            // region, under the exact name it was programmed with.
            None if self.functions.contains_key(function) => ("Active".into(), true),
            None => (String::new(), false),
        };
        if !known {
            return function_not_found(region, name, qualifier);
        }
        let mut config = json!({
            "FunctionName": name,
            "FunctionArn": function_arn(region, name, qualifier),
            "Runtime": "python3.12",
            "Role": format!("arn:aws:iam::{ACCOUNT}:role/dr-runbook"),
            "Handler": "index.handler",
            "State": state,
            "LastUpdateStatus": "Successful",
            "Version": qualifier.unwrap_or("$LATEST"),
            "PackageType": "Zip",
        });
        if state != "Active" {
            config["StateReason"] = json!(format!("The function is {state}"));
        }
        Answer::json(
            StatusCode::OK,
            "application/json",
            &json!({
                "Configuration": config,
                "Code": {"RepositoryType": "S3", "Location": "https://awslambda.example/snapshot"},
            }),
        )
    }

    /// What Invoke refuses of a registered function, as Lambda does:
    /// an unknown qualifier, a function that is not Active.
    pub(super) fn refuse_invoke(&self, region: &str, function: &str) -> Option<Answer> {
        let (name, qualifier) = split_function(function);
        let f = self
            .registered_functions
            .get(&(region.to_owned(), name.to_owned()))?;
        if let Some(q) = qualifier
            && q != "$LATEST"
            && !f.qualifiers.iter().any(|x| x == q)
        {
            return Some(function_not_found(region, name, qualifier));
        }
        if f.state != "Active" {
            return Some(Answer::lambda_error(
                StatusCode::CONFLICT,
                "ResourceConflictException",
                &format!(
                    "The operation cannot be performed at this time. The function is currently in the following state: {}",
                    f.state
                ),
            ));
        }
        None
    }
}

pub(super) async fn get_function(
    State(state): State<Shared>,
    Path(function): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let op = Op::GetFunction;
    let qualifier = query.get("Qualifier").cloned();
    let call = Call {
        op,
        region: String::new(),
        target: match &qualifier {
            Some(q) => format!("{function}:{q}"),
            None => function.clone(),
        },
        client_token: None,
        body: Value::Null,
        invocation_type: None,
        status: 0,
    };
    super::answer(&state, &headers, call, |fake, region| {
        fake.get_function(region, &function, qualifier.as_deref())
    })
    .await
}
