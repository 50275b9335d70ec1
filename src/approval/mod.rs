//! Approval: who may approve an incident's plan, and when it is approved.
//!
//! Votes come from Slack or, when Slack is down, from the operator API and
//! CLI; both go through [`crate::incident::Incidents::vote`], which records
//! every vote (and every refused one) in the incident's event log.

pub mod commands;
pub mod evidence;
pub mod messages;
pub mod mrkdwn;
pub mod slack;
pub mod votes;
