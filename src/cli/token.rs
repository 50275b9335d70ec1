//! `dr-reactor token new|hash`: tokens for `api.users`, `api.admin_token`
//! and `api.read_tokens`, and the digest form config can hold instead of
//! the token itself.

use std::io::Read as _;
use std::process::ExitCode;

use dr_reactor::primitives::TokenDigest;

use super::Output;

/// Shorter than this is guessable: a digest protects only a random token.
const MIN_TOKEN_LEN: usize = 24;

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Print a new random token (64 hex digits, 244 random bits) and its
    /// digest.
    New,
    /// Read a token from standard input and print its digest
    /// (`sha256:…`), for config in place of the token.
    Hash,
}

pub fn run(cmd: TokenCommand, output: Output) -> ExitCode {
    let token = match cmd {
        // Two v4 UUIDs from the OS's random source: 244 random bits.
        TokenCommand::New => Some(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )),
        TokenCommand::Hash => None,
    };
    let shown = token.is_some();
    let token = match token {
        Some(t) => t,
        None => {
            let mut text = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                eprintln!("dr-reactor token hash: cannot read standard input: {e}");
                return ExitCode::FAILURE;
            }
            text.trim_end_matches(['\n', '\r']).to_owned()
        }
    };
    if token.len() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
        eprintln!(
            "dr-reactor token hash: a token is at least {MIN_TOKEN_LEN} characters with no \
             spaces (make one with `dr-reactor token new`)"
        );
        return ExitCode::FAILURE;
    }
    let digest = TokenDigest::of(&token).to_config();
    match (output, shown) {
        (Output::Json, true) => {
            println!("{}", serde_json::json!({"token": token, "digest": digest}))
        }
        (Output::Json, false) => println!("{}", serde_json::json!({"digest": digest})),
        (Output::Text, true) => println!("token:  {token}\ndigest: {digest}"),
        (Output::Text, false) => println!("{digest}"),
    }
    ExitCode::SUCCESS
}
