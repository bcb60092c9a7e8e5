//! One module per command, each: parse arguments → call the libraries → print.

pub mod auth;
pub mod ballista;
pub mod init;
pub mod materialize;
pub mod online;
pub mod plan;
pub mod push;
pub mod quickstart;
pub mod registry;
pub mod retrieve;
pub mod sample;
pub mod serve;
pub mod time;
pub mod verify;
