//! `quiver auth hash-token`: the SHA-256 a token is configured by (`serving.auth.tokens[].sha256`).

use std::io::Read;

use anyhow::Result;

use crate::exit::UserError;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Read a token on stdin (so it stays out of shell history) and print its SHA-256.
    HashToken,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::HashToken => {
            let mut token = String::new();
            std::io::stdin().read_to_string(&mut token)?;
            let token = token.trim();
            if token.len() < 16 {
                return Err(UserError(
                    "the token is shorter than 16 characters: use a long random one, e.g. `openssl rand -hex 32`".into(),
                )
                .into());
            }
            println!("{}", quiver_feature_server::auth::hash_token(token));
            Ok(())
        }
    }
}
