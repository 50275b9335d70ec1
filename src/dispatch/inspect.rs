//! Read-only look-ups of what a step would call, for runbook readiness:
//! SSM DescribeDocument and Lambda GetFunction. One attempt each; the
//! retry loop and the per-region clients are the dispatcher's, so an
//! `aws.endpoint_url` override applies to these as to the calls that act.

use serde::Serialize;

use super::error::{AwsCall, DispatchError};

/// What DescribeDocument says of one document version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentInfo {
    /// `Automation`, `Command`, … (absent only in a malformed answer).
    pub document_type: Option<String>,
    /// `Active`, `Creating`, `Failed`, …
    pub status: Option<String>,
    pub parameters: Vec<DeclaredParameter>,
}

/// A parameter the document declares. SSM has no "required" flag: a
/// parameter without a default must be given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeclaredParameter {
    pub name: String,
    pub has_default: bool,
}

/// What GetFunction says of one function (version or alias).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionInfo {
    /// `Active`, `Pending`, `Inactive`, `Failed`.
    pub state: Option<String>,
    pub state_reason: Option<String>,
}

/// One attempt of DescribeDocument.
pub(super) async fn describe_document(
    client: &aws_sdk_ssm::Client,
    call: AwsCall,
    document: &str,
    version: Option<&str>,
) -> Result<DocumentInfo, DispatchError> {
    let out = client
        .describe_document()
        .name(document)
        .set_document_version(version.map(str::to_owned))
        .send()
        .await
        .map_err(|e| DispatchError::from_sdk(call.clone(), e))?;
    let Some(doc) = out.document else {
        return Err(super::ssm::unreadable(call, "the response has no Document"));
    };
    Ok(DocumentInfo {
        document_type: doc.document_type.map(|t| t.as_str().to_owned()),
        status: doc.status.map(|s| s.as_str().to_owned()),
        parameters: doc
            .parameters
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                Some(DeclaredParameter {
                    has_default: p.default_value.is_some(),
                    name: p.name?,
                })
            })
            .collect(),
    })
}

/// One attempt of GetFunction.
pub(super) async fn get_function(
    client: &aws_sdk_lambda::Client,
    call: AwsCall,
    function: &str,
    qualifier: Option<&str>,
) -> Result<FunctionInfo, DispatchError> {
    let out = client
        .get_function()
        .function_name(function)
        .set_qualifier(qualifier.map(str::to_owned))
        .send()
        .await
        .map_err(|e| DispatchError::from_sdk(call.clone(), e))?;
    let Some(config) = out.configuration else {
        return Err(super::ssm::unreadable(
            call,
            "the response has no Configuration",
        ));
    };
    Ok(FunctionInfo {
        state: config.state.map(|s| s.as_str().to_owned()),
        state_reason: config.state_reason,
    })
}

/// `name:qualifier` or a function ARN ending in `:qualifier`, as Invoke
/// takes it, split into the name and the version or alias.
pub fn split_qualifier(function: &str) -> (&str, Option<&str>) {
    // arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
    let name_parts = if function.starts_with("arn:") { 7 } else { 1 };
    let mut parts = function.splitn(name_parts + 1, ':');
    let name_len: usize = parts.by_ref().take(name_parts).map(|p| p.len() + 1).sum();
    match parts.next() {
        Some(q) if !q.is_empty() => (&function[..name_len - 1], Some(q)),
        _ => (function, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifiers_split_off_names_and_arns() {
        assert_eq!(split_qualifier("fn"), ("fn", None));
        assert_eq!(split_qualifier("fn:live"), ("fn", Some("live")));
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:fn";
        assert_eq!(split_qualifier(arn), (arn, None));
        assert_eq!(
            split_qualifier("arn:aws:lambda:eu-west-1:123456789012:function:fn:7"),
            (arn, Some("7"))
        );
    }
}
