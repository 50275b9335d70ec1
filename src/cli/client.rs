//! Talking to a running dr-reactor: where it is, whose token, one request,
//! and what the CLI says of the answer.

use std::process::ExitCode;

use serde_json::Value;

use super::{EXIT_CONFIG, Output, runtime};

/// Where the API is and who calls it.
#[derive(clap::Args, Clone)]
pub struct ApiArgs {
    /// dr-reactor's base URL.
    #[arg(long, env = "DR_REACTOR_URL", default_value = "http://127.0.0.1:9099")]
    pub url: String,
    /// Your API token (api.users); without it, DR_REACTOR_ADMIN_TOKEN is
    /// used as break-glass. Commands that only read also take a read
    /// token, and fall back to DR_REACTOR_READ_TOKEN first.
    #[arg(long, env = "DR_REACTOR_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Which token a command needs, for the fallback when none is given.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// A person's own token, else the admin token.
    Operator,
    /// Any token that reads: also a read token.
    Read,
}

const NO_TOKEN: &str = "no token: pass --token or set DR_REACTOR_API_TOKEN to your own API token";

/// The answer of one request: its status and its JSON (null if none).
pub type Answer = Result<(u16, Value), String>;

impl ApiArgs {
    /// The token to send: the given one, else from the environment.
    fn token(&self, needs: Needs) -> Option<String> {
        let env = |name: &str| std::env::var(name).ok().filter(|t| !t.is_empty());
        self.token
            .clone()
            .or_else(|| {
                (needs == Needs::Read)
                    .then(|| env("DR_REACTOR_READ_TOKEN"))
                    .flatten()
            })
            .or_else(|| env("DR_REACTOR_ADMIN_TOKEN"))
    }

    /// One request to the API with the caller's token; `Err` with why when
    /// it could not be asked (exit status 2 for no token).
    pub fn call(
        &self,
        needs: Needs,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ExitCode> {
        Ok(self
            .call_text(needs, method, path, body)?
            .map(|(code, text)| (code, serde_json::from_str(&text).unwrap_or(Value::Null))))
    }

    /// As [`ApiArgs::call`], for an answer that is not JSON (a Markdown
    /// report): its status and text.
    pub fn call_text(
        &self,
        needs: Needs,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Result<(u16, String), String>, ExitCode> {
        let Some(token) = self.token(needs) else {
            eprintln!("dr-reactor: {NO_TOKEN}");
            return Err(ExitCode::from(EXIT_CONFIG));
        };
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        Ok(runtime().block_on(async {
            let mut req = reqwest::Client::new()
                .request(method, &url)
                .bearer_auth(token);
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
            let code = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
            Ok((code, text))
        }))
    }
}

/// What the CLI says of an API answer. On 2xx: with `--output json` the
/// server's JSON as it is, else what `done` prints. Otherwise the refusal
/// with the server's reason on stderr (and its JSON on stdout with
/// `--output json`, for tools), or the error that kept it from asking.
pub fn report(what: &str, answer: Answer, output: Output, done: impl Fn(&Value)) -> ExitCode {
    match answer {
        Ok((200..=299, body)) => {
            match output {
                Output::Json => print_json(&body),
                Output::Text => done(&body),
            }
            ExitCode::SUCCESS
        }
        Ok((code, body)) => {
            if output == Output::Json && !body.is_null() {
                print_json(&body);
            }
            eprintln!(
                "dr-reactor: {what} refused ({code}): {}",
                body["error"].as_str().unwrap_or("no detail")
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("dr-reactor: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn print_json(v: &impl serde::Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("dr-reactor: cannot print JSON: {e}"),
    }
}

/// A string field of an answer, or `?`.
pub fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("?")
}
