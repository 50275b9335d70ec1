//! Slack slash commands: the operator controls that have no message to hang
//! a button on. `/dr declare region_outage region=ap-northeast-2 -- why`
//! declares an incident; `/dr silence 2h zone="ap-northeast-2a" -- why`
//! creates a silence. Both act as the Slack user who typed them.

use crate::signal::Labels;

/// What `/dr help` (and any command it does not know) answers.
pub const USAGE: &str = "Usage:\n\
• `/dr declare SCENARIO label=value … [rule=RULE] -- reason`: declare an incident; it is planned, held and approved like a detected one\n\
• `/dr silence DURATION matcher … -- comment`: open nothing for matching incidents for DURATION (e.g. `2h`); matchers as in Alertmanager: `zone=\"ap-northeast-2a\"`, `service=~\"pay.*\"`\n\
• `/dr kill-switch on [abort-running] -- reason`: no plan step starts anywhere until `/dr kill-switch off -- reason`; running steps finish unless `abort-running`\n\
• `/dr help`: this text";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Declare {
        scenario: String,
        rule: Option<String>,
        labels: Labels,
        reason: String,
    },
    Silence {
        duration: String,
        matchers: Vec<String>,
        comment: String,
    },
    KillSwitch {
        engaged: bool,
        abort_running: bool,
        reason: String,
    },
    Help,
}

/// A slash command as Slack posts it (form-encoded), with who typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlashCommand {
    pub user_id: String,
    pub command: Command,
}

/// Parses the form Slack posts for a slash command. The error is for the
/// user who typed it: it says what was wrong and shows the usage.
pub fn parse_command(body: &[u8]) -> Result<SlashCommand, String> {
    let mut user_id = None;
    let mut text = String::new();
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "user_id" => user_id = Some(v.into_owned()),
            "text" => text = v.into_owned(),
            _ => {}
        }
    }
    let user_id = user_id
        .filter(|u| !u.is_empty())
        .ok_or("the command has no user_id")?;
    Ok(SlashCommand {
        user_id,
        command: parse_text(&text)?,
    })
}

fn parse_text(text: &str) -> Result<Command, String> {
    // Slack's clients turn typed quotes into typographic ones.
    let text: String = text
        .chars()
        .map(|c| match c {
            '\u{201C}' | '\u{201D}' => '"',
            c => c,
        })
        .collect();
    let (args, note) = match text.split_once(" -- ") {
        Some((args, note)) => (args.to_owned(), note.trim().to_owned()),
        None => match text.strip_suffix(" --") {
            Some(args) => (args.to_owned(), String::new()),
            None => (text.clone(), String::new()),
        },
    };
    let words = split_words(&args)?;
    let Some((verb, rest)) = words.split_first() else {
        return Ok(Command::Help);
    };
    match verb.as_str() {
        "declare" => declare(rest, note),
        "silence" => silence(rest, note),
        "kill-switch" => kill_switch(rest, note),
        "help" => Ok(Command::Help),
        other => Err(format!("unknown command {other:?}.\n{USAGE}")),
    }
}

fn declare(args: &[String], reason: String) -> Result<Command, String> {
    let Some((scenario, pairs)) = args.split_first() else {
        return Err(format!("declare needs a scenario.\n{USAGE}"));
    };
    let mut labels = Labels::new();
    let mut rule = None;
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("{pair:?} is not label=value.\n{USAGE}"))?;
        let v = v.trim_matches('"').to_owned();
        if k == "rule" {
            rule = Some(v);
        } else {
            labels.insert(k.to_owned(), v);
        }
    }
    if reason.is_empty() {
        return Err("declare needs a reason after ` -- `: it goes into the incident's log".into());
    }
    Ok(Command::Declare {
        scenario: scenario.clone(),
        rule,
        labels,
        reason,
    })
}

fn silence(args: &[String], comment: String) -> Result<Command, String> {
    let Some((duration, matchers)) = args.split_first() else {
        return Err(format!("silence needs a duration and matchers.\n{USAGE}"));
    };
    if matchers.is_empty() {
        return Err(format!("silence needs at least one matcher.\n{USAGE}"));
    }
    Ok(Command::Silence {
        duration: duration.clone(),
        matchers: matchers.to_vec(),
        comment,
    })
}

fn kill_switch(args: &[String], reason: String) -> Result<Command, String> {
    let usage = || format!("kill-switch takes `on [abort-running]` or `off`.\n{USAGE}");
    let (engaged, abort_running) = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["on"] => (true, false),
        ["on", "abort-running"] => (true, true),
        ["off"] => (false, false),
        _ => return Err(usage()),
    };
    if reason.is_empty() {
        return Err("kill-switch needs a reason after ` -- `: every page shows it".into());
    }
    Ok(Command::KillSwitch {
        engaged,
        abort_running,
        reason,
    })
}

/// Splits on spaces outside double quotes, so `zone="a b"` is one word.
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        match c {
            _ if escaped => {
                word.push(c);
                escaped = false;
            }
            '\\' if quoted => {
                word.push(c);
                escaped = true;
            }
            '"' => {
                word.push(c);
                quoted = !quoted;
            }
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if quoted {
        return Err(format!("unbalanced quote in {text:?}"));
    }
    if !word.is_empty() {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(user: &str, text: &str) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("command", "/dr")
            .append_pair("user_id", user)
            .append_pair("text", text)
            .finish()
            .into_bytes()
    }

    #[test]
    fn declare_takes_labels_a_rule_and_a_reason() {
        let c = parse_command(&form(
            "U1",
            "declare region_outage region=ap-northeast-2 rule=\"region-outage-zones\" -- Seoul is dark",
        ))
        .unwrap();
        assert_eq!(c.user_id, "U1");
        assert_eq!(
            c.command,
            Command::Declare {
                scenario: "region_outage".into(),
                rule: Some("region-outage-zones".into()),
                labels: [("region".to_owned(), "ap-northeast-2".to_owned())].into(),
                reason: "Seoul is dark".into(),
            }
        );
    }

    #[test]
    fn silence_keeps_quoted_matchers_whole_and_fixes_typographic_quotes() {
        let c = parse_command(&form(
            "U1",
            "silence 2h zone=\u{201C}ap northeast\u{201D} service=~\"pay.*\" -- planned work",
        ))
        .unwrap();
        assert_eq!(
            c.command,
            Command::Silence {
                duration: "2h".into(),
                matchers: vec!["zone=\"ap northeast\"".into(), "service=~\"pay.*\"".into()],
                comment: "planned work".into(),
            }
        );
    }

    #[test]
    fn mistakes_say_what_was_wrong() {
        let err = |text: &str| parse_command(&form("U1", text)).unwrap_err();
        assert!(err("declare").contains("needs a scenario"));
        assert!(err("declare az_failure zone -- x").contains("\"zone\" is not label=value"));
        assert!(err("declare az_failure zone=a").contains("needs a reason"));
        assert!(err("silence 2h").contains("at least one matcher"));
        assert!(err("silence 2h zone=\"a -- x").contains("unbalanced quote"));
        assert!(err("reboot everything").contains("unknown command \"reboot\""));
        assert!(parse_command(b"text=help").unwrap_err().contains("user_id"));
        assert_eq!(
            parse_command(&form("U1", "")).unwrap().command,
            Command::Help
        );
    }
}
