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
            let token = quiver_feature_server::auth::check_token(&token).map_err(UserError)?;
            println!("{}", quiver_feature_server::auth::hash_token(token));
            Ok(())
        }
    }
}
